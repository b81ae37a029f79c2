#!/usr/bin/env bash
# Create .venv and install StreetLens with the given extras (e.g. `scripts/setup.sh train,test`).
# Uses uv; a local wheel folder (/opt/pypi-more/files, or $STREETLENS_FIND_LINKS) is optional.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
links=()
for d in "${STREETLENS_FIND_LINKS:-}" /opt/pypi-more/files; do
  [ -n "$d" ] && [ -d "$d" ] && links+=(--find-links "$d")
done
[ -x .venv/bin/python ] || uv venv --quiet .venv --python "$(command -v python3)"
spec="."
[ -n "$extras" ] && spec=".[$extras]"
uv pip install --quiet --python .venv/bin/python "${links[@]}" -c requirements/constraints.txt -e "$spec"
# MTCNN face finding for the privacy blur (facenet-pytorch, MIT, weights in its wheel). It pins an
# old torch, so it goes in without its dependencies, beside the `train` extra's torch.
if [[ ",$extras," == *",train,"* ]]; then
  uv pip install --quiet --python .venv/bin/python "${links[@]}" --no-deps facenet-pytorch==2.6.0
fi
