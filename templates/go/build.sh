#!/usr/bin/env bash
# Builds {{name}}.wasm: stock Go (1.24 or later) compiles the plugin to a WASI preview 1
# reactor module, and `plexus componentize` makes it a component (the WASI adapter and the
# plexus:plugin/consumer world come from the plexus binary).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
# -checklinkname=0: witpkg/wit/runtime takes the WASI adapter's first memory from the Go
# runtime's own allocator, which Go links only when asked. -s -w: no debug information.
GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -ldflags="-s -w -checklinkname=0" \
  -o build/{{name}}.core.wasm .
"${PLEXUS:-plexus}" componentize build/{{name}}.core.wasm -o {{name}}.wasm >/dev/null
echo "built {{name}}.wasm ($(wc -c < "{{name}}.wasm") bytes)"
