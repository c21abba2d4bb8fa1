#!/usr/bin/env python3
"""Writes the GGUF files the header benchmark opens. Each has a real header and a data section
that is a hole (the file is truncated to its full length), so a 17 GB model costs a few MB of
disk while every offset and size in it is the real one.

  qwen3-30b-a3b-shaped: what a Qwen3-30B-A3B Q4_K_M file holds: 48 qwen3moe layers of 128
      experts, 579 tensors, and the full 151,936-token vocabulary with its 151,387 merges
      (about 8 MB of header).
  many-tensors: 100,000 small tensors and little metadata, to measure per-tensor cost.

Usage: make_sparse_gguf.py [DIR]   (default ~/.cache/archreg/bench; existing files are kept)
"""

import os
import random
import struct
import sys
from pathlib import Path

# GGUF metadata value types and ggml tensor types (see docs in /work/shared/docs/GGUF-FACTS.md).
UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
F32, Q4_K, Q6_K = 0, 12, 14
BLOCK = {F32: (1, 4), Q4_K: (256, 144), Q6_K: (256, 210)}  # elements per block, bytes per block
ALIGNMENT = 32
# Bump when the generated content changes, so cached files are regenerated.
GENERATOR_VERSION = 2


def gguf_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


class SparseGGUF:
    """Collects metadata and tensor infos, then writes the header and leaves the data a hole."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.tensor_infos: list[bytes] = []
        self.data_size = 0

    def add(self, key: str, value_type: int, value: bytes) -> None:
        self.entries.append(gguf_string(key) + struct.pack("<i", value_type) + value)

    def add_u32(self, key: str, value: int) -> None:
        self.add(key, UINT32, struct.pack("<I", value))

    def add_f32(self, key: str, value: float) -> None:
        self.add(key, FLOAT32, struct.pack("<f", value))

    def add_bool(self, key: str, value: bool) -> None:
        self.add(key, BOOL, struct.pack("<?", value))

    def add_string(self, key: str, value: str) -> None:
        self.add(key, STRING, gguf_string(value))

    def add_string_array(self, key: str, values: list[str]) -> None:
        self.add(key, ARRAY, struct.pack("<iQ", STRING, len(values)) + b"".join(map(gguf_string, values)))

    def add_i32_array(self, key: str, values: list[int]) -> None:
        self.add(key, ARRAY, struct.pack(f"<iQ{len(values)}i", INT32, len(values), *values))

    def add_tensor(self, name: str, ggml_type: int, shape: list[int]) -> None:
        """shape in ggml order (ne0 first)."""
        block_size, type_size = BLOCK[ggml_type]
        n_elements = 1
        for extent in shape:
            n_elements *= extent
        info = gguf_string(name) + struct.pack(f"<I{len(shape)}Q", len(shape), *shape)
        self.tensor_infos.append(info + struct.pack("<iQ", ggml_type, self.data_size))
        n_bytes = n_elements // block_size * type_size
        self.data_size += -(-n_bytes // ALIGNMENT) * ALIGNMENT

    def write(self, path: Path) -> None:
        header = b"".join([struct.pack("<4sIQQ", b"GGUF", 3, len(self.tensor_infos), len(self.entries)),
                           *self.entries, *self.tensor_infos])
        data_offset = -(-len(header) // ALIGNMENT) * ALIGNMENT
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as out:
            out.write(header)
            out.truncate(data_offset + self.data_size)  # the padding and the data: a hole
        partial.replace(path)


def synthetic_vocabulary(n_tokens: int, n_merges: int) -> tuple[list[str], list[int], list[str]]:
    """Distinct byte-level-BPE-looking tokens ("Ġ" marks a leading space), control tokens at the
    end, and merges that split tokens in two. In byte-level BPE every non-ASCII byte is a 2-byte
    character (a CJK character is six bytes of token text), which is why a third of the
    characters here are: the header comes out at the ~8 MB of a real Qwen3 file."""
    rng = random.Random(0)
    characters = "abcdefghijklmnopqrstuvwxyz"
    byte_level = "ÃÂĊĉ¤©¥¦ãåæçèéĪī"
    n_control = min(26, n_tokens)
    tokens: list[str] = []
    seen: set[str] = set()
    while len(tokens) < n_tokens - n_control:
        body = (rng.choice(characters) if rng.random() < 0.65 else rng.choice(byte_level)
                for _ in range(rng.randint(1, 18)))
        token = ("Ġ" if rng.random() < 0.6 else "") + "".join(body)
        if token not in seen:
            seen.add(token)
            tokens.append(token)
    tokens += [f"<|control_{i}|>" for i in range(n_control)]
    token_types = [1] * (n_tokens - n_control) + [3] * n_control
    merges = []
    while len(merges) < n_merges:
        token = tokens[rng.randrange(n_tokens - n_control)]
        if len(token) >= 2:
            cut = rng.randint(1, len(token) - 1)
            merges.append(f"{token[:cut]} {token[cut:]}")
    return tokens, token_types, merges


CHAT_TEMPLATE = ("{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content"
                 " + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}"
                 "{{- '<|im_start|>assistant\\n' }}{%- endif %}\n") * 16  # real templates run to ~4 KB


def write_qwen3_moe_header(path: Path, n_layer: int = 48, n_expert: int = 128, n_vocab: int = 151936,
                           n_merges: int = 151387) -> None:
    """Qwen3-30B-A3B as a Q4_K_M file: Q4_K matrices, Q6_K for attn_v, ffn_down_exps (every
    other layer) and output, F32 norms and router."""
    n_embd, n_head, n_head_kv, head_dim, n_ff_exp = 2048, 32, 4, 128, 768
    gguf = SparseGGUF()
    gguf.add_string("general.architecture", "qwen3moe")
    gguf.add_string("general.type", "model")
    gguf.add_string("general.name", "Qwen3 30B A3B (header-only benchmark copy)")
    gguf.add_string("general.basename", "Qwen3")
    gguf.add_string("general.size_label", "30B-A3B")
    gguf.add_string("general.license", "apache-2.0")
    gguf.add_u32("qwen3moe.block_count", n_layer)
    gguf.add_u32("qwen3moe.context_length", 40960)
    gguf.add_u32("qwen3moe.embedding_length", n_embd)
    gguf.add_u32("qwen3moe.feed_forward_length", 6144)
    gguf.add_u32("qwen3moe.attention.head_count", n_head)
    gguf.add_u32("qwen3moe.attention.head_count_kv", n_head_kv)
    gguf.add_f32("qwen3moe.rope.freq_base", 1000000.0)
    gguf.add_f32("qwen3moe.attention.layer_norm_rms_epsilon", 1e-6)
    gguf.add_u32("qwen3moe.expert_used_count", 8)
    gguf.add_u32("qwen3moe.attention.key_length", head_dim)
    gguf.add_u32("qwen3moe.attention.value_length", head_dim)
    gguf.add_u32("qwen3moe.expert_count", n_expert)
    gguf.add_u32("qwen3moe.expert_feed_forward_length", n_ff_exp)
    tokens, token_types, merges = synthetic_vocabulary(n_vocab, n_merges)
    gguf.add_string("tokenizer.ggml.model", "gpt2")
    gguf.add_string("tokenizer.ggml.pre", "qwen2")
    gguf.add_string_array("tokenizer.ggml.tokens", tokens)
    gguf.add_i32_array("tokenizer.ggml.token_type", token_types)
    gguf.add_string_array("tokenizer.ggml.merges", merges)
    gguf.add_u32("tokenizer.ggml.eos_token_id", n_vocab - 1)
    gguf.add_u32("tokenizer.ggml.padding_token_id", n_vocab - 2)
    gguf.add_u32("tokenizer.ggml.bos_token_id", n_vocab - 2)
    gguf.add_bool("tokenizer.ggml.add_bos_token", False)
    gguf.add_string("tokenizer.chat_template", CHAT_TEMPLATE)
    gguf.add_u32("general.quantization_version", 2)
    gguf.add_u32("general.file_type", 15)  # LLAMA_FTYPE_MOSTLY_Q4_K_M

    gguf.add_tensor("token_embd.weight", Q4_K, [n_embd, n_vocab])
    for layer in range(n_layer):
        more_bits = Q6_K if layer % 2 == 0 else Q4_K
        for name, ggml_type, shape in [
            ("attn_norm", F32, [n_embd]),
            ("attn_q", Q4_K, [n_embd, n_head * head_dim]),
            ("attn_k", Q4_K, [n_embd, n_head_kv * head_dim]),
            ("attn_v", more_bits, [n_embd, n_head_kv * head_dim]),
            ("attn_q_norm", F32, [head_dim]),
            ("attn_k_norm", F32, [head_dim]),
            ("attn_output", Q4_K, [n_head * head_dim, n_embd]),
            ("ffn_norm", F32, [n_embd]),
            ("ffn_gate_inp", F32, [n_embd, n_expert]),
            ("ffn_gate_exps", Q4_K, [n_embd, n_ff_exp, n_expert]),
            ("ffn_up_exps", Q4_K, [n_embd, n_ff_exp, n_expert]),
            ("ffn_down_exps", more_bits, [n_ff_exp, n_embd, n_expert]),
        ]:
            gguf.add_tensor(f"blk.{layer}.{name}.weight", ggml_type, shape)
    gguf.add_tensor("output_norm.weight", F32, [n_embd])
    gguf.add_tensor("output.weight", Q6_K, [n_embd, n_vocab])
    gguf.write(path)


def write_many_tensors_header(path: Path, n_tensors: int = 100_000) -> None:
    """Per-expert tensors in the old unmerged style, 100 experts a layer, each 16 x 4 F32."""
    gguf = SparseGGUF()
    gguf.add_string("general.architecture", "synthetic")
    gguf.add_string("general.name", "many small tensors (header-only benchmark file)")
    gguf.add_u32("synthetic.block_count", -(-n_tensors // 100))
    for i in range(n_tensors):
        gguf.add_tensor(f"blk.{i // 100}.ffn_gate.{i % 100}.weight", F32, [16, 4])
    gguf.write(path)


BENCHMARK_FILES = {
    f"qwen3-30b-a3b-shaped-v{GENERATOR_VERSION}.gguf": write_qwen3_moe_header,
    f"many-tensors-v{GENERATOR_VERSION}.gguf": write_many_tensors_header,
}


def default_directory() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "archreg" / "bench"


def ensure_benchmark_files(directory: Path) -> list[Path]:
    """The benchmark files in `directory`, written on first use."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, write in BENCHMARK_FILES.items():
        path = directory / name
        if not path.exists():
            print(f"writing {path}", file=sys.stderr)
            write(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in ensure_benchmark_files(Path(sys.argv[1]) if len(sys.argv) > 1 else default_directory()):
        print(written)
