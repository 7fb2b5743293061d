#!/usr/bin/env bash
# Creates .venv (ignored) with the pinned Python tooling, once. Re-runs are a
# no-op unless python/requirements.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.requirements.sha256
want=$(sha256sum python/requirements.txt | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r python/requirements.txt
echo "$want" > "$stamp"
