#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-py (from PyPI, into .venv the first time): CPython
# and app.py in one WebAssembly component for Plexus.
set -euo pipefail
cd "$(dirname "$0")"
venv=${PLEXUS_PY_VENV:-.venv}
if [ ! -x "$venv/bin/componentize-py" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "componentize-py==0.25.1"
fi
"$venv/bin/componentize-py" --wit-path wit/plexus.wit --world consumer componentize app -o "{{name}}.wasm"
echo "built {{name}}.wasm ($(wc -c < "{{name}}.wasm") bytes)"
