#!/usr/bin/env bash
# Creates a virtualenv for one example's pinned requirements, once:
#
#   examples/bootstrap-venv.sh .venv-airflow examples/airflow/requirements.txt
#
# The same as scripts/venv.sh (the venv is cached outside the work tree and
# <venv-folder> links to it); kept under this name for the examples' docs.
set -euo pipefail
exec "$(dirname "$0")/../scripts/venv.sh" "$@"
