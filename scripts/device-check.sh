#!/usr/bin/env bash
# The CUDA checks for a GPU machine, in two halves (docs/performance.md, "CUDA backend"):
#
#   scripts/device-check.sh prepare   here, on the build machine: builds the release preset (sm_90a
#                                     code, PTX from sm_80; incremental after scripts/test.sh) and
#                                     gathers what the GPU machine lacks into build/device/bundle:
#                                     the binaries and plugins, the specs, the shared libraries
#                                     they need beyond the C runtime, gguf-py. Prints its size
#                                     (it must travel: 64 MiB at most).
#   scripts/device-check.sh run       there (no Debian package needed; Python 3 with numpy): writes
#                                     the runtime models and their fused copies, runs the CUDA
#                                     tests (every op against the CPU backend, every model's logits
#                                     against the CPU, fused against unfused), then the benchmarks
#                                     (one MoE layer against copy bandwidth and cuBLAS; whole models
#                                     with `archreg bench`), everything under $OUT (default
#                                     build/device/out). Exit status: the tests'.
#
# With the device tool: run(command="scripts/device-check.sh run", carry=["build/device/bundle"]).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bundle=build/device/bundle

prepare() {
  set -e
  local venv
  venv=$(scripts/bootstrap.sh --llama | tail -n 1)
  cmake --preset release -DARCHREG_PYTHON="$venv/bin/python" >/dev/null
  grep -q '^ARCHREG_HAVE_CUDA_BUILT:INTERNAL=ON' build/release/CMakeCache.txt || {
    echo "device-check: this build has no CUDA (no nvcc found): nothing to check on a GPU" >&2
    exit 1
  }
  cmake --build --preset release -j "${ARCHREG_JOBS:-$(nproc)}" --target archreg archreg_cuda_tests bench_cuda archreg_plugins
  rm -rf "$bundle"
  mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/plugins" "$bundle/python"
  cp build/release/core/archreg build/release/tests/archreg_cuda_tests build/release/tests/bench/bench_cuda "$bundle/bin/"
  cp build/release/plugins/*.so build/release/plugins/*.archs "$bundle/plugins/"
  cp -r arch-specs "$bundle/arch-specs"
  cp -r "$("$venv/bin/python" -c 'import gguf, os; print(os.path.dirname(gguf.__file__))')" "$bundle/python/gguf"
  find "$bundle/python" -name __pycache__ -prune -exec rm -rf {} +
  # Shared libraries beyond the C runtime and the driver (fmt, yaml-cpp, PCRE2, ...).
  find "$bundle/bin" "$bundle/plugins" -type f \( -perm -u+x -o -name '*.so' \) -print0 |
    xargs -0 ldd 2>/dev/null | awk '/=> \// { print $3 }' | sort -u |
    grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+|libcuda)\.so' |
    while read -r lib; do cp -L "$lib" "$bundle/lib/"; done
  strip --strip-unneeded "$bundle"/bin/* "$bundle"/lib/* 2>/dev/null || true
  du -sh "$bundle"
  local size
  size=$(du -sm "$bundle" | cut -f1)
  if [ "$size" -gt 60 ]; then
    echo "device-check: the bundle is ${size} MiB; it must stay under 64 MiB to travel" >&2
    exit 1
  fi
}

run() {
  local out=${OUT:-build/device/out}
  mkdir -p "$out"
  if [ ! -x "$bundle/bin/archreg" ]; then
    echo "device-check: no $bundle (run 'scripts/device-check.sh prepare' on the build machine and carry it)" >&2
    return 2
  fi
  export LD_LIBRARY_PATH="$here/$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export ARCHREG_PLUGIN_PATH="$here/$bundle/plugins" ARCHREG_SPEC_PATH="$here/$bundle/arch-specs"
  export PYTHONPATH="$here/$bundle/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  local bin="$here/$bundle/bin" work=${TMPDIR:-/tmp}/archreg-device status=0
  mkdir -p "$work"
  {
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true
  } 2>&1 | tee "$out/device.txt"

  echo "=== runtime models and their fused copies"
  rm -rf "$work/models" && mkdir -p "$work/models"
  python3 tests/fixtures/make_runtime_models.py "$work/models" || status=1
  for f in "$work"/models/*.gguf; do  # every group, else the experts alone (Q/K/V of mixed types cannot fuse)
    "$bin/archreg" fuse "$f" "${f%.gguf}.fused.gguf" >/dev/null 2>>"$out/fuse.log" ||
      "$bin/archreg" fuse "$f" "${f%.gguf}.fused.gguf" --group ffn_gate_up_exps >/dev/null 2>>"$out/fuse.log" || true
  done
  echo "$(ls "$work"/models/*.fused.gguf 2>/dev/null | wc -l) fused copies"

  echo "=== CUDA tests (ops against the CPU backend; models' logits, fused and unfused)"
  ARCHREG_CUDA_MODELS="$work/models" timeout 300 "$bin/archreg_cuda_tests" --gtest_output="xml:$out/cuda-tests.xml" \
    >"$out/cuda-tests.log" 2>&1 || status=1
  grep -E '^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|Failure|error' "$out/cuda-tests.log" || true
  if [ $status -ne 0 ]; then  # again, each node waited for, so that a fault names its node
    ARCHREG_CUDA_SYNC=1 ARCHREG_CUDA_MODELS="$work/models" timeout 120 "$bin/archreg_cuda_tests" --gtest_filter='Cuda*' \
      >"$out/cuda-tests-sync.log" 2>&1 || true
  fi

  echo "=== one MoE layer"
  local cublas
  cublas=$(python3 -c 'import nvidia, os, glob; d = os.path.dirname(nvidia.__path__[0]); print((sorted(glob.glob(d + "/nvidia/**/libcublas.so*", recursive=True)) or [""])[0])' 2>/dev/null)
  ARCHREG_CUBLAS="$cublas" timeout 240 "$bin/bench_cuda" 10 2>&1 | tee "$out/bench-moe-layer.md"

  echo "=== whole models (archreg bench)"
  if python3 tests/bench/make_bench_models.py "$work/bench-models" >/dev/null; then
    for f in "$work"/bench-models/*.gguf; do
      timeout 120 "$bin/archreg" bench "$f" --backend cuda -p 512 -n 128 -r 3 --fused both 2>&1
      case "$f" in *smollm2*) timeout 120 "$bin/archreg" bench "$f" --backend cpu -p 512 -n 128 -r 1 --fused off 2>&1 ;; esac
    done | tee "$out/bench-models.md"
  fi
  echo "device-check: tests $([ $status -eq 0 ] && echo passed || echo FAILED); results in $out"
  return $status
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *)
    echo "usage: scripts/device-check.sh prepare|run" >&2
    exit 2
    ;;
esac
