#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-js (from npm, into node_modules the first time):
# a JavaScript engine and app.js (with plexus.js) in one WebAssembly component for Plexus.
# Web APIs that reach out (fetch, HTTP) are left out: a plugin has no network.
set -euo pipefail
cd "$(dirname "$0")"
tools=${PLEXUS_JS_TOOLS:-.}
if [ ! -x "$tools/node_modules/.bin/componentize-js" ]; then
  (cd "$tools" && npm install --silent --no-audit --no-fund)
fi
"$tools/node_modules/.bin/componentize-js" app.js --wit wit/plexus.wit --world-name consumer \
  --disable http fetch-event -o "{{name}}.wasm"
echo "built {{name}}.wasm ($(wc -c < "{{name}}.wasm") bytes)"
