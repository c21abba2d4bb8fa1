#!/usr/bin/env bash
# Fuzzes TARGET for SECONDS, starting from its committed seed corpus:
#   gguf_reader_fuzz (default)  the GGUF reader; seeds in tests/fuzz/corpus
#   validate_fuzz               validation against every spec; seeds in tests/fuzz/validate-corpus
#   spec_fuzz                   spec parsing and evaluation; seeds: arch-specs/, the toy spec and
#                               the hostile specs in tests/fuzz/spec-corpus
#
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET]   (BUILD_DIR from the fuzz preset: build/fuzz)
#
# The seeds are copied to a scratch directory under BUILD_DIR, so inputs the fuzzer finds
# never touch the committed corpus. Exits non-zero on any crash, sanitizer report, leak,
# timeout or out-of-memory (libFuzzer's own exit status), and prints a one-line summary; on
# failure the log's tail and the saved input come first.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS [gguf_reader_fuzz|validate_fuzz|spec_fuzz]" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build_dir=$(cd "$1" && pwd)
seconds=$2
target=${3:-gguf_reader_fuzz}
repo=$(cd "$here/../.." && pwd)
dict=$here/gguf.dict
case "$target" in
  gguf_reader_fuzz) seeds=("$here"/corpus/*.gguf) ;;
  validate_fuzz) seeds=("$here"/validate-corpus/*.gguf) ;;
  spec_fuzz)
    seeds=("$repo"/arch-specs/*.yaml "$repo"/tests/fixtures/toy-specs/*.yaml "$here"/spec-corpus/*.yaml)
    dict=$here/spec.dict ;;
  *) echo "$0: unknown target '$target'" >&2; exit 2 ;;
esac
fuzzer=$build_dir/tests/fuzz/$target
if [[ ! -x $fuzzer ]]; then
  echo "$0: no fuzzer at $fuzzer; build it with: cmake --preset fuzz && cmake --build --preset fuzz" >&2
  exit 2
fi

work=$build_dir/fuzz-run/$target
rm -rf "$work"
mkdir -p "$work/corpus" "$work/findings"
cp "${seeds[@]}" "$work/corpus/"
seeds=$(find "$work/corpus" -type f | wc -l)
log=$work/fuzz.log

# -timeout: a single input taking 10 s is a hang worth reporting (the reader is linear).
# -rss_limit_mb also caps single allocations, so an unbounded allocation is a finding.
status=0
"$fuzzer" "$work/corpus" \
  -dict="$dict" \
  -max_total_time="$seconds" \
  -max_len=65536 \
  -rss_limit_mb=2048 \
  -timeout=10 \
  -artifact_prefix="$work/findings/" \
  -print_final_stats=1 \
  >"$log" 2>&1 || status=$?

stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
runs=$(stat number_of_executed_units)
per_second=$(stat average_exec_per_sec)
coverage=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
corpus=$(find "$work/corpus" -type f | wc -l)

if [[ $status -ne 0 ]]; then
  tail -n 60 "$log" >&2
  finding=$(find "$work/findings" -type f -print -quit)
  echo "$target: FAILED (exit $status) after ${runs:-?} runs; input: ${finding:-none saved}; log: $log"
  exit "$status"
fi
echo "$target: ok: ${runs:-?} runs in ${seconds} s (${per_second:-?}/s), coverage ${coverage:-?} edges, corpus ${seeds} -> ${corpus} inputs, no crashes"
