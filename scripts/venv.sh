#!/usr/bin/env bash
# Makes <link> a virtualenv with a requirements file's pinned packages:
#
#   scripts/venv.sh .venv-airflow examples/airflow/requirements.txt
#
# The venv itself lives in a cache outside the work tree,
# ${SWITCHYARD_CACHE:-~/.cache/switchyard}/venvs/<name>-<sha256 prefix>, and
# <link> is a symlink to it: a fresh clone (CI's, say) on the same machine
# reuses it instead of installing again, and a changed requirements file gets
# a venv of its own. One `pip install` per creation; a stamp written last
# marks it complete, so an interrupted install starts over. A lock keeps two
# runs from building the same venv at once. (Venvs can't be moved once made:
# their scripts name their own path, hence the fixed cache path.)
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 <venv-link> <requirements.txt>" >&2
  exit 2
fi
link=$1
req=$2
cache=${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}/venvs
want=$(sha256sum "$req" | cut -d' ' -f1)
name=$(basename "$link")
dir=$cache/${name#.}-${want:0:16}
mkdir -p "$cache"
exec 9>"$dir.lock"
flock 9
if [ ! -f "$dir/.requirements.sha256" ] || [ "$(cat "$dir/.requirements.sha256")" != "$want" ]; then
  echo "creating $dir from $req (once)" >&2
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$dir/.requirements.sha256"
fi
if [ "$(readlink "$link" 2>/dev/null || true)" != "$dir" ]; then
  rm -rf "$link"
  ln -s "$dir" "$link"
fi
