#!/usr/bin/env bash
# Set everything up and run the main job: the demo city's photos in, enriched cases out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/streetlens demo "$@"
