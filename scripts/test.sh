#!/usr/bin/env bash
# Set everything up, start what the tests need, and run the whole suite (lint included).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh train,test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest -q "$@"
