#!/usr/bin/env bash
# Builds {{name}}.wasm, a WebAssembly component for Plexus (wasm32-wasip2), with the size-tuned
# release profile of Cargo.toml.
set -euo pipefail
cd "$(dirname "$0")"
target_dir=${CARGO_TARGET_DIR:-target}
if command -v rustup >/dev/null && { rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2; }; then
  cargo build --release --target wasm32-wasip2
else
  # Where rustup cannot add the target: Debian's rustc-web builds the standard library itself
  # (apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc).
  env PATH=/usr/bin:/bin RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="-C link-arg=--wasm-ld-path=/usr/lib/llvm-22/bin/wasm-ld -C link-self-contained=no -L native=/usr/lib/wasm32-wasi" \
    /usr/bin/cargo build -Zbuild-std=std,panic_abort --target wasm32-wasip2 --release
fi
cp "$target_dir/wasm32-wasip2/release/{{crate}}.wasm" "{{name}}.wasm"
echo "built {{name}}.wasm ($(wc -c < "{{name}}.wasm") bytes)"
