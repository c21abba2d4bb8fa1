#!/usr/bin/env bash
# The main job on the embedded default model: installs what is missing, builds archreg,
# generates a small qwen3moe-shaped GGUF model, inspects it and validates it against its spec.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

scripts/bootstrap.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "${ARCHREG_JOBS:-$(nproc)}" --target archreg archreg-example-model
model=build/release/demo/tiny-moe.gguf
mkdir -p "$(dirname "$model")"
rm -f "$model"
build/release/tests/tools/archreg-example-model "$model"
echo "\$ archreg inspect $model"
build/release/core/archreg inspect "$model"
echo
echo "\$ archreg validate $model"
build/release/core/archreg validate "$model"
