"""Interop: the CPU kernels (kernels/cpu/quants.hpp) against gguf-py's numpy implementation of
ggml's block formats (gguf.quants), which llama.cpp maintains alongside ggml's C code.

Dequantization of every weight type the kernels run must be bit-identical: both evaluate
ggml's formulas in float32 in the same order. Q8_0 quantization (the reference quantizer,
roundf) must produce the same bytes as gguf-py's Q8_0 quantizer.

Our side is driven through `kernels-testtool` (tests/tools/kernels_testtool.cpp); ctest sets
ARCHREG_KERNELS_TOOL (tests/interop/CMakeLists.txt).
"""

import os
import subprocess

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf import quants

WEIGHT_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
                T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.MXFP4]

# Byte offsets of the fp16 scale fields in each block (ggml-common.h layouts); they are set to
# finite values so that no block decodes to inf/NaN.
SCALE_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def tool(*args: object, data: bytes) -> bytes:
    path = os.environ.get("ARCHREG_KERNELS_TOOL")
    if not path:
        pytest.fail("ARCHREG_KERNELS_TOOL is not set; run these tests with ctest, which points it at the built kernels-testtool")
    proc = subprocess.run([path, *map(str, args)], input=data, capture_output=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"kernels-testtool {' '.join(map(str, args))} failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc.stdout


def random_halves(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Finite fp16 values of both signs over the whole range, subnormals included."""
    mag = np.exp2(rng.uniform(-24.0, 8.0, size=shape)).astype(np.float32)
    return (mag * rng.choice([-1.0, 1.0], size=shape)).astype(np.float16)


def random_row(qtype: T, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        return rng.standard_normal(n_blocks).astype(np.float32).view(np.uint8)
    if qtype == T.F16:
        return random_halves(rng, (n_blocks,)).view(np.uint8)
    if qtype == T.BF16:
        f = rng.standard_normal(n_blocks).astype(np.float32) * np.float32(1e3)
        return (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in SCALE_FIELDS.get(qtype, []):
        raw[:, off:off + 2] = random_halves(rng, (n_blocks,)).view(np.uint8).reshape(n_blocks, 2)
    if qtype == T.MXFP4:
        raw[:, 0] = rng.integers(0, 255, size=n_blocks)  # every E8M0 exponent but 255
    return raw.reshape(-1)


@pytest.mark.parametrize("qtype", WEIGHT_TYPES, ids=lambda t: t.name)
def test_dequantize_matches_gguf_py(qtype: T) -> None:
    rng = np.random.default_rng(int(qtype) + 1)
    block_size, _ = GGML_QUANT_SIZES[qtype]
    n_blocks = 256 if block_size == 1 else 64
    n = n_blocks * block_size
    row = random_row(qtype, n_blocks, rng)
    ours = np.frombuffer(tool("dequantize", int(qtype), n, data=row.tobytes()), dtype=np.float32)
    theirs = quants.dequantize(row, qtype).astype(np.float32).reshape(-1)
    assert ours.shape == theirs.shape
    mismatch = np.flatnonzero(ours.view(np.uint32) != theirs.view(np.uint32))
    assert mismatch.size == 0, (
        f"{mismatch.size} of {n} elements differ, first at {mismatch[0]}: "
        f"ours {ours[mismatch[0]]!r}, gguf-py {theirs[mismatch[0]]!r}")


def test_q8_0_quantize_matches_gguf_py() -> None:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(32 * 64) * np.exp2(rng.uniform(-8, 8, size=32 * 64))).astype(np.float32)
    x[64:96] = 0.0  # an all-zero block
    x[96] = 127.0
    x[97] = 2.5  # a tie: roundf rounds it away from zero, like gguf-py's np_roundf
    ours = np.frombuffer(tool("quantize", int(T.Q8_0), x.size, data=x.tobytes()), dtype=np.uint8)
    theirs = quants.quantize(x.reshape(1, -1), T.Q8_0).reshape(-1)
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("qtype", [T.Q4_0, T.Q4_K, T.Q6_K, T.MXFP4], ids=lambda t: t.name)
def test_vec_dot_close_to_gguf_py_dequantized_dot(qtype: T) -> None:
    """A dot of a weight row dequantized by gguf-py with our Q8 activation dequantized by gguf-py."""
    rng = np.random.default_rng(100 + int(qtype))
    block_size, _ = GGML_QUANT_SIZES[qtype]
    n = 1024
    w = random_row(qtype, n // block_size, rng)
    if qtype in SCALE_FIELDS:  # modest scales, so the float sums stay well inside float32
        fields = w.reshape(n // block_size, -1)
        for off in SCALE_FIELDS[qtype]:
            fields[:, off:off + 2] = (rng.uniform(0.001, 0.01, size=n // block_size)).astype(np.float16).view(np.uint8).reshape(-1, 2)
    else:
        w.reshape(n // block_size, -1)[:, 0] = rng.integers(118, 130, size=n // block_size)
    x = rng.standard_normal(n).astype(np.float32)
    act_type = T.Q8_K if block_size == 256 else T.Q8_0
    a = np.frombuffer(tool("quantize", int(act_type), n, data=x.tobytes()), dtype=np.uint8)
    ref, fast = map(float, tool("vec_dot", int(qtype), n, data=w.tobytes() + a.tobytes()).split())
    wf = quants.dequantize(w, qtype).astype(np.float64).reshape(-1)
    if act_type == T.Q8_0:
        af = quants.dequantize(a, T.Q8_0).astype(np.float64).reshape(-1)
    else:  # gguf-py has no Q8_K: float d, int8 qs[256], int16 bsums[16]
        blocks = a.reshape(-1, 292)
        d = blocks[:, :4].copy().view(np.float32).astype(np.float64)
        af = (d * blocks[:, 4:260].view(np.int8)).reshape(-1)
    expected = float(np.dot(wf, af))
    scale = float(np.abs(wf) @ np.abs(af))
    assert abs(ref - expected) <= 1e-4 * scale
    assert abs(fast - expected) <= 1e-4 * scale
