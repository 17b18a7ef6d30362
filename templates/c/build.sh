#!/usr/bin/env bash
# Builds {{name}}.wasm: clang compiles the plugin for WASI preview 1 as a reactor, against
# wasi-libc, and `plexus componentize` makes it a component (the WASI adapter comes from
# the plexus binary). On Debian: apt-get install clang-22 lld-22 libclang-rt-22-dev-wasm32
# wasi-libc. With wasi-sdk instead: CC=/path/to/wasi-sdk/bin/clang ./build.sh.
set -euo pipefail
cd "$(dirname "$0")"
cc=${CC:-clang-22}
mkdir -p build
"$cc" --target=wasm32-wasi -Wno-deprecated -mexec-model=reactor -O2 -Wall -Werror \
  -Wl,--strip-debug -Ibindings -o build/{{name}}.core.wasm \
  app.c bindings/consumer.c bindings/consumer_component_type.o
"${PLEXUS:-plexus}" componentize build/{{name}}.core.wasm -o {{name}}.wasm >/dev/null
echo "built {{name}}.wasm ($(wc -c < "{{name}}.wasm") bytes)"
