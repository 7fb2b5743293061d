#!/usr/bin/env bash
# Makes .venv (ignored; a link into ~/.cache/switchyard/venvs, see
# scripts/venv.sh) with the pinned Python tooling, once per version of
# python/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/venv.sh .venv python/requirements.txt
