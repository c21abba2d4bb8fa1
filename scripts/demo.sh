#!/usr/bin/env bash
# The main job on the embedded default model: installs what is missing, builds archreg and its
# plugins, generates a small qwen3moe-shaped GGUF model, then inspect -> validate -> fuse ->
# validate -> unfuse, and checks that the round trip gives back the original bytes.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

scripts/bootstrap.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "${ARCHREG_JOBS:-$(nproc)}" --target archreg archreg_plugins archreg-example-model
archreg=build/release/core/archreg
dir=build/release/demo
model=$dir/tiny-moe.gguf
mkdir -p "$dir"
rm -f "$dir"/*.gguf
build/release/tests/tools/archreg-example-model "$model"

run() {
  printf '\n$ archreg %s\n' "$*"
  "$archreg" "$@"
}
run inspect "$model"
run validate "$model"
run list
run fuse "$model" "$dir/tiny-moe.fused.gguf"
run validate "$dir/tiny-moe.fused.gguf"
run unfuse "$dir/tiny-moe.fused.gguf" "$dir/tiny-moe.roundtrip.gguf"
if cmp -s "$model" "$dir/tiny-moe.roundtrip.gguf"; then
  echo "round trip: unfuse(fuse(model)) is byte-identical to the model"
else
  echo "round trip: unfuse(fuse(model)) differs from the model" >&2
  exit 1
fi
