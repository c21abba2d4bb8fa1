#!/usr/bin/env python3
"""Writes the GGUF reader fuzzer's seed corpus to tests/fuzz/corpus/.

Seeds are small (at most 4 KiB each) so the fuzzer mutates them quickly: valid files of
various shapes (every value type, a tokenizer, quantized tensors, a tiny model, odd
alignments, version 2) named ok_*.gguf, and near-misses that break one rule each named
bad_*.gguf. The unit test GgufCorpus checks that every ok_ seed reads and every bad_ seed is
rejected, so the names are a contract. Only the struct module is used, so this runs anywhere
without gguf-py; the output is deterministic.

Usage: tests/fuzz/make_corpus.py [OUTPUT_DIR]
"""

import struct
import sys
from pathlib import Path

MAX_SEED_BYTES = 4096

# Metadata value type tags.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
SCALAR_FORMATS = {
    UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
    FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d",
}

# ggml types used by the seeds: id -> (block size, bytes per block).
GGML_TYPES = {
    "F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
    "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q4_K": (12, 256, 144),
    "Q6_K": (14, 256, 210), "IQ4_NL": (20, 32, 18), "I8": (24, 1, 1), "I16": (25, 1, 2),
    "I32": (26, 1, 4), "I64": (27, 1, 8), "F64": (28, 1, 8), "BF16": (30, 1, 2),
    "TQ2_0": (35, 256, 66), "MXFP4": (39, 32, 17), "NVFP4": (40, 64, 36), "Q1_0": (41, 128, 18),
    "Q2_0": (42, 64, 18),
}


def tensor_bytes(type_name, shape):
    _, block, size = GGML_TYPES[type_name]
    rows = 1
    for dim in shape[1:]:
        rows *= dim
    return shape[0] // block * size * rows


class Gguf:
    """Field-by-field GGUF assembly; like tests/unit/gguf_bytes.hpp it validates nothing."""

    def __init__(self):
        self.out = bytearray()

    def raw(self, data):
        self.out += data
        return self

    def pack(self, fmt, *values):
        self.out += struct.pack(fmt, *values)
        return self

    def u32(self, v):
        return self.pack("<I", v)

    def i32(self, v):
        return self.pack("<i", v)

    def u64(self, v):
        return self.pack("<Q", v)

    def string(self, text):
        data = text.encode() if isinstance(text, str) else text
        return self.u64(len(data)).raw(data)

    def header(self, n_tensors, n_kv, version=3, magic=b"GGUF"):
        return self.raw(magic).u32(version).u64(n_tensors).u64(n_kv)

    def value(self, value_type, value):
        if value_type == STRING:
            return self.string(value)
        if value_type == ARRAY:
            element_type, items = value
            self.i32(element_type).u64(len(items))
            for item in items:
                self.value(element_type, item)
            return self
        return self.pack(SCALAR_FORMATS[value_type], value)

    def kv(self, key, value_type, value):
        return self.string(key).i32(value_type).value(value_type, value)

    def tensor_info(self, name, shape, type_name, offset, type_id=None):
        self.string(name).u32(len(shape))
        for dim in shape:
            self.u64(dim)
        return self.i32(GGML_TYPES[type_name][0] if type_id is None else type_id).u64(offset)

    def align(self, alignment):
        return self.raw(bytes(-len(self.out) % alignment))

    def data(self, count, seed):
        return self.raw(bytes((seed + 7 * i) & 0xFF for i in range(count)))


def model(metadata, tensors, alignment=32, version=3):
    """A valid file: metadata [(key, type, value)], tensors [(name, shape, type)], laid out
    contiguously with each tensor padded to the alignment, as upstream requires."""
    if alignment != 32:
        metadata = metadata + [("general.alignment", UINT32, alignment)]
    g = Gguf().header(len(tensors), len(metadata), version=version)
    for key, value_type, value in metadata:
        g.kv(key, value_type, value)
    offset = 0
    for name, shape, type_name in tensors:
        g.tensor_info(name, shape, type_name, offset)
        offset += tensor_bytes(type_name, shape)
        offset += -offset % alignment
    g.align(alignment)
    for index, (_, shape, type_name) in enumerate(tensors):
        g.data(tensor_bytes(type_name, shape), index).align(alignment)
    return g.out


def nested(levels):
    value = (UINT8, [7])
    for _ in range(levels - 1):
        value = (ARRAY, [value])
    return [("nested", ARRAY, value)]


LLAMA_KEYS = [
    ("general.architecture", STRING, "llama"),
    ("general.name", STRING, "tiny"),
    ("llama.block_count", UINT32, 1),
    ("llama.context_length", UINT32, 128),
    ("llama.embedding_length", UINT32, 32),
    ("llama.feed_forward_length", UINT32, 64),
    ("llama.attention.head_count", UINT32, 4),
    ("llama.attention.head_count_kv", UINT32, 2),
    ("llama.attention.layer_norm_rms_epsilon", FLOAT32, 1e-5),
    ("llama.rope.freq_base", FLOAT32, 10000.0),
    ("tokenizer.ggml.model", STRING, "llama"),
    ("tokenizer.ggml.tokens", ARRAY, (STRING, ["<unk>", "<s>", "</s>", "a", "b"])),
    ("tokenizer.ggml.bos_token_id", UINT32, 1),
]

EVERY_TYPE = [
    ("t.u8", UINT8, 200), ("t.i8", INT8, -100), ("t.u16", UINT16, 60000), ("t.i16", INT16, -30000),
    ("t.u32", UINT32, 4000000000), ("t.i32", INT32, -2000000000), ("t.f32", FLOAT32, 1.5),
    ("t.bool", BOOL, True), ("t.string", STRING, "hello"), ("t.u64", UINT64, 1 << 40),
    ("t.i64", INT64, -(1 << 40)), ("t.f64", FLOAT64, 2.25),
    ("t.u32s", ARRAY, (UINT32, [1, 2, 3])), ("t.empty", ARRAY, (FLOAT32, [])),
    ("t.strings", ARRAY, (STRING, ["", "x", "yz"])),
    ("t.nested", ARRAY, (ARRAY, [(INT8, [1, -1]), (INT8, [])])),
]

QUANT_TYPES = [(f"q.{name.lower()}", [GGML_TYPES[name][1]], name) for name in GGML_TYPES]


def valid_seeds():
    vocab = [f"tok{i}" for i in range(60)]
    yield "ok_empty", model([], [])
    yield "ok_bare_header", Gguf().header(0, 0).out
    yield "ok_every_type", model(EVERY_TYPE, [])
    yield "ok_tokenizer", model([
        ("tokenizer.ggml.model", STRING, "gpt2"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, vocab)),
        ("tokenizer.ggml.scores", ARRAY, (FLOAT32, [float(-i) for i in range(60)])),
        ("tokenizer.ggml.token_type", ARRAY, (INT32, [1] * 60)),
    ], [])
    yield "ok_one_f32", model([], [("t", [8], "F32")])
    yield "ok_tiny_llama", model(LLAMA_KEYS, [
        ("token_embd.weight", [32, 5], "F16"),
        ("blk.0.attn_norm.weight", [32], "F32"),
        ("blk.0.attn_q.weight", [32, 32], "Q8_0"),
        ("blk.0.attn_k.weight", [32, 16], "Q4_0"),
        ("output_norm.weight", [32], "F32"),
    ])
    yield "ok_quant_types", model([], QUANT_TYPES)
    yield "ok_4d", model([], [("t4", [2, 3, 4, 5], "F32")])
    yield "ok_alignment_1", model([], [("a", [3], "F16"), ("b", [5], "I8"), ("c", [1], "F32")],
                                  alignment=1)
    yield "ok_alignment_64", model([], [("a", [3], "F16"), ("b", [32], "MXFP4")], alignment=64)
    yield "ok_v2", model([("general.architecture", STRING, "llama")], [("t", [8], "F32")],
                         version=2)
    yield "ok_moe_fused", model([
        ("general.architecture", STRING, "qwen3moe"),
        ("qwen3moe.expert_count", UINT32, 2),
        ("qwen3moe.expert_used_count", UINT32, 1),
        ("qwen3moe.expert_feed_forward_length", UINT32, 8),
    ], [
        ("blk.0.ffn_gate_inp.weight", [16, 2], "F32"),
        ("blk.0.ffn_gate_up_exps.weight", [16, 16, 2], "F16"),
        ("blk.0.ffn_down_exps.weight", [8, 16, 2], "F16"),
    ])
    yield "ok_name_63", model([], [("n" * 63, [8], "F32")])
    yield "ok_nested_8", model(nested(8), [])


def near_misses():
    one_tensor = model([], [("t", [8], "F32")])

    def patched(data, at, fmt, value):
        out = bytearray(data)
        struct.pack_into(fmt, out, at, value)
        return bytes(out)

    yield "bad_magic", patched(one_tensor, 0, "<4s", b"GGML")
    yield "bad_version_1", patched(one_tensor, 4, "<I", 1)
    yield "bad_big_endian", patched(one_tensor, 4, ">I", 3)
    yield "bad_n_kv_huge", patched(one_tensor, 16, "<Q", 1 << 63)
    # The key's length wraps position + length around to 16, inside the file.
    yield "bad_key_length_wraps", bytes(
        Gguf().header(0, 1).u64(2**64 - 16).raw(b"general.name").i32(UINT8).raw(b"\x01").align(32).out)
    yield "bad_alignment_int32", model([("general.alignment", INT32, 32)], [("t", [8], "F32")])
    yield "bad_alignment_3", bytes(
        Gguf().header(1, 1).kv("general.alignment", UINT32, 3).tensor_info("t", [8], "F32", 0)
        .align(32).data(32, 0).out)
    yield "bad_duplicate_key", model([("general.name", STRING, "a"), ("general.name", STRING, "b")], [])
    yield "bad_name_64", model([], [("n" * 64, [8], "F32")])
    yield "bad_n_dims_5", model([], [("t", [8, 1, 1, 1, 1], "F32")])
    # 2^16 four times is 2^64 elements, which wraps to 0.
    yield "bad_ne_wraps", bytes(
        Gguf().header(1, 0).tensor_info("t", [1 << 16] * 4, "F32", 0).align(32).data(32, 0).out)
    yield "bad_removed_type", bytes(
        Gguf().header(1, 0).tensor_info("t", [32], "Q4_0", 0, type_id=4).align(32).data(32, 0).out)
    yield "bad_block_size", bytes(
        Gguf().header(1, 0).tensor_info("t", [33], "Q4_0", 0).align(32).data(64, 0).out)
    yield "bad_offset_gap", bytes(
        Gguf().header(2, 0).tensor_info("a", [8], "F32", 0).tensor_info("b", [8], "F32", 64)
        .align(32).data(128, 0).out)
    yield "bad_truncated_data", model([], [("t", [64], "F32")])[:-1]
    yield "bad_nested_9", model(nested(9), [])


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "corpus"
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.gguf"):
        stale.unlink()
    count = 0
    for name, data in [*valid_seeds(), *near_misses()]:
        if len(data) > MAX_SEED_BYTES:
            raise SystemExit(f"seed {name} is {len(data)} bytes; seeds stay under {MAX_SEED_BYTES}")
        (out_dir / f"{name}.gguf").write_bytes(data)
        count += 1
    print(f"wrote {count} seeds to {out_dir}")


if __name__ == "__main__":
    main()
