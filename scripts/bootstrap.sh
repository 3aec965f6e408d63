#!/usr/bin/env bash
# Creates the project's virtual environment .venv (if missing) and installs sidflow with its pinned
# dependencies. Idempotent and quick when nothing changed: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.sidflow-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ]; then
  echo "sidflow: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

# uv resolves and installs the ~2 GB stack in seconds where pip takes minutes.
uv_version=$(grep '^uv==' constraints.txt | cut -d= -f3)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$uv_version"

# torch: a plain `torch==2.13.0` from PyPI is a CUDA build with several GB of nvidia wheels. Where a local
# wheel directory holds the CPU build (SIDFLOW_WHEELS, default /opt/wheels), uv takes it from there.
# Users with a GPU install their CUDA build of torch first; the pin is then already satisfied.
extra=()
wheels=${SIDFLOW_WHEELS:-/opt/wheels}
if [ -d "$wheels" ]; then extra+=(--find-links "$wheels"); fi

echo "sidflow: installing dependencies into $VENV"
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --index-strategy unsafe-best-match \
  "${extra[@]}" -c constraints.txt -e ".[dev,text-model]"
echo "$want" > "$STAMP"
