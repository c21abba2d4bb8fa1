#!/usr/bin/env bash
# Runs every test archreg has: installs what is missing, checks formatting, builds, then
#   0. every tracked C++ file is formatted as .clang-format says (Debian's clang-format 14);
#   1. the release build (warnings are errors) and its full test suite, interop tests included;
#      with the CUDA backend when nvcc is found (its GPU tests report themselves skipped without
#      a GPU; scripts/device-check.sh runs them on one);
#   2. the same tests under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. the GGUF reader fuzzer for ARCHREG_FUZZ_SECONDS (default 60), and the validation and
#      spec fuzzers for half as long each, under ASan + UBSan.
# Exits non-zero if anything fails. Idempotent; rebuilds incrementally.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

venv=$(scripts/bootstrap.sh --llama | tail -n 1)
export ARCHREG_PYTHON="$venv/bin/python"
jobs=${ARCHREG_JOBS:-$(nproc)}

step() { printf '\n=== %s ===\n' "$*"; }

step "formatting (clang-format $(clang-format --version | grep -o '[0-9][0-9.]*' | head -n 1))"
mapfile -t sources < <(git ls-files '*.cpp' '*.hpp' '*.h' '*.c' '*.cu' '*.cuh')
clang-format --dry-run --Werror "${sources[@]}"

step "release build + tests"
cmake --preset release -DARCHREG_PYTHON="$ARCHREG_PYTHON" >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

step "ASan + UBSan build + tests"
cmake --preset asan -DARCHREG_PYTHON="$ARCHREG_PYTHON" >/dev/null
cmake --build --preset asan -j "$jobs"
ctest --preset asan -j "$jobs"

fuzz_seconds=${ARCHREG_FUZZ_SECONDS:-60}
step "fuzzing the GGUF reader for ${fuzz_seconds} s, validation and specs for $((fuzz_seconds / 2)) s each"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$jobs"
tests/fuzz/run.sh build/fuzz "$fuzz_seconds" gguf_reader_fuzz
tests/fuzz/run.sh build/fuzz "$((fuzz_seconds / 2))" validate_fuzz
tests/fuzz/run.sh build/fuzz "$((fuzz_seconds / 2))" spec_fuzz

step "all tests passed"
