#!/usr/bin/env bash
# Creates a virtualenv for one example's pinned requirements, once:
#
#   examples/bootstrap-venv.sh .venv-airflow examples/airflow/requirements.txt
#
# Re-runs are a no-op while the requirements file is unchanged (its sha256 is
# the stamp in <venv>/.requirements.sha256), like scripts/bootstrap-python.sh.
# One `pip install` per creation; a failed install leaves no stamp, so the
# next run starts over.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 <venv-folder> <requirements.txt>" >&2
  exit 2
fi
venv=$1
req=$2
stamp=$venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
