"""Shared by every interop test: archreg runs on the CPU backend here.

The interop tests compare archreg with llama.cpp's CPU backend at tolerances derived for CPU
arithmetic (docs/numerics.md), so on a machine with a GPU, where `--backend auto` would pick CUDA,
they pin the CPU (a test that wants CUDA says `--backend cuda`). The CUDA backend is checked
against the CPU backend by tests/cuda.
"""

import os

os.environ["ARCHREG_BACKEND"] = "cpu"
