#!/usr/bin/env bash
# Puts Debian's prometheus (prometheus and promtool) under .tools/prometheus
# without installing it system-wide or starting a service: the package is
# downloaded by name through apt and unpacked. A no-op once done.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools/prometheus
if [ -x "$dest/usr/bin/promtool" ] && [ -x "$dest/usr/bin/prometheus" ]; then
  exit 0
fi
mkdir -p .tools/debs
cd .tools/debs
if ! apt-get download prometheus >/dev/null 2>&1; then
  # A fresh machine has no package lists yet.
  apt-get update -qq >/dev/null
  apt-get download prometheus >/dev/null
fi
cd ../..
rm -rf "$dest"
mkdir -p "$dest"
dpkg -x .tools/debs/prometheus_*.deb "$dest"
"$dest/usr/bin/promtool" --version | head -n 1
