#!/usr/bin/env python3
"""Writes the GGUF files the header benchmark opens. Each has a real header and a data section
that is a hole (the file is truncated to its full length), so a 17 GB model costs a few MB of
disk while every offset and size in it is the real one.

  qwen3-30b-a3b-shaped: what a Qwen3-30B-A3B Q4_K_M file holds: 48 qwen3moe layers of 128
      experts, 579 tensors, and the full 151,936-token vocabulary with its 151,387 merges
      (about 8 MB of header).
  many-tensors: 100,000 small tensors and little metadata, to measure per-tensor cost.
  deepseek-v3-shaped: what a DeepSeek-V3 Q4_K_M file holds (deepseek2 arch): 61 MLA layers in
      the split attn_k_b/attn_v_b form, 3 dense then 58 MoE layers of 256 routed experts and a
      shared one, 1,086 tensors, the 129,280-token vocabulary with its 127,741 merges (about
      6.4 MB of header; 377 GiB apparent size, the size of a real one).

Usage: make_sparse_gguf.py [DIR]   (default ~/.cache/archreg/bench; existing files are kept)
Every file validates clean with `archreg validate` except many-tensors (arch "synthetic").
"""

import os
import random
import struct
import sys
from pathlib import Path
from typing import Iterable

# GGUF metadata value types and ggml tensor types (see docs in /work/shared/docs/GGUF-FACTS.md).
UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
F32, Q5_0, Q8_0, Q4_K, Q6_K = 0, 6, 8, 12, 14
# elements per block, bytes per block
BLOCK = {F32: (1, 4), Q5_0: (32, 22), Q8_0: (32, 34), Q4_K: (256, 144), Q6_K: (256, 210)}
ALIGNMENT = 32
# Bump when the generated content of an existing file changes, so cached files are regenerated
# (adding a new file needs no bump: files are written when absent).
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
    gguf.add_u32("qwen3moe.expert_used_count", min(8, n_expert))  # scaled-down copies have fewer
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


def use_more_bits(layer: int, n_layer: int) -> bool:
    """llama.cpp's choice (llama-quant.cpp) of the layers whose attn_v / ffn_down Q4_K_M raises
    to Q6_K: the first and last eighth, and every third layer in between."""
    return layer < n_layer // 8 or layer >= 7 * n_layer // 8 or (layer - n_layer // 8) % 3 == 2


def write_deepseek_v3_header(path: Path, n_layer: int = 61, n_expert: int = 256, n_vocab: int = 129280,
                             n_merges: int = 127741) -> None:
    """DeepSeek-V3 (deepseek2 arch) as a Q4_K_M file, in the current MLA form (attn_k_b and
    attn_v_b instead of the legacy attn_kv_b; attention.key_length/value_length then hold the
    absorbed sizes kv_lora_rank + rope dims = 576 and kv_lora_rank = 512, key_length_mla and
    value_length_mla the per-head 192 and 128). Q4_K matrices, Q6_K for output and the
    ffn_down(_exps) of llama.cpp's more-bits layers, Q5_0 for attn_k_b (its 128-wide rows do
    not fit Q4_K's 256-element blocks: llama.cpp's fallback), F32 norms, router and expert bias.
    No NextN (MTP) block, as in the usual DeepSeek-V3 GGUFs: block_count is the 61 decoder layers."""
    n_embd, n_head, n_dense_lead, n_ff, n_ff_exp, n_expert_shared = 7168, 128, 3, 18432, 2048, 1
    q_lora_rank, kv_lora_rank, n_rot, head_k_mla, head_v_mla = 1536, 512, 64, 192, 128
    qk_nope = head_k_mla - n_rot
    gguf = SparseGGUF()
    gguf.add_string("general.architecture", "deepseek2")
    gguf.add_string("general.type", "model")
    gguf.add_string("general.name", "DeepSeek V3 (header-only benchmark copy)")
    gguf.add_string("general.basename", "DeepSeek-V3")
    gguf.add_string("general.size_label", "256x20B")
    gguf.add_string("general.license", "mit")
    gguf.add_u32("deepseek2.block_count", n_layer)
    gguf.add_u32("deepseek2.context_length", 163840)
    gguf.add_u32("deepseek2.embedding_length", n_embd)
    gguf.add_u32("deepseek2.feed_forward_length", n_ff)
    gguf.add_u32("deepseek2.attention.head_count", n_head)
    gguf.add_u32("deepseek2.attention.head_count_kv", 1)
    gguf.add_f32("deepseek2.rope.freq_base", 10000.0)
    gguf.add_f32("deepseek2.attention.layer_norm_rms_epsilon", 1e-6)
    gguf.add_u32("deepseek2.expert_used_count", min(8, n_expert))
    gguf.add_u32("deepseek2.leading_dense_block_count", n_dense_lead)
    gguf.add_u32("deepseek2.vocab_size", n_vocab)
    gguf.add_u32("deepseek2.attention.q_lora_rank", q_lora_rank)
    gguf.add_u32("deepseek2.attention.kv_lora_rank", kv_lora_rank)
    gguf.add_u32("deepseek2.attention.key_length", kv_lora_rank + n_rot)
    gguf.add_u32("deepseek2.attention.value_length", kv_lora_rank)
    gguf.add_u32("deepseek2.attention.key_length_mla", head_k_mla)
    gguf.add_u32("deepseek2.attention.value_length_mla", head_v_mla)
    gguf.add_u32("deepseek2.expert_feed_forward_length", n_ff_exp)
    gguf.add_u32("deepseek2.expert_count", n_expert)
    gguf.add_u32("deepseek2.expert_shared_count", n_expert_shared)
    gguf.add_f32("deepseek2.expert_weights_scale", 2.5)
    gguf.add_bool("deepseek2.expert_weights_norm", True)
    gguf.add_u32("deepseek2.expert_gating_func", 2)  # sigmoid
    gguf.add_u32("deepseek2.rope.dimension_count", n_rot)
    gguf.add_string("deepseek2.rope.scaling.type", "yarn")
    gguf.add_f32("deepseek2.rope.scaling.factor", 40.0)
    gguf.add_u32("deepseek2.rope.scaling.original_context_length", 4096)
    gguf.add_f32("deepseek2.rope.scaling.yarn_log_multiplier", 0.1)
    tokens, token_types, merges = synthetic_vocabulary(n_vocab, n_merges)
    gguf.add_string("tokenizer.ggml.model", "gpt2")
    gguf.add_string("tokenizer.ggml.pre", "deepseek-v3")
    gguf.add_string_array("tokenizer.ggml.tokens", tokens)
    gguf.add_i32_array("tokenizer.ggml.token_type", token_types)
    gguf.add_string_array("tokenizer.ggml.merges", merges)
    gguf.add_u32("tokenizer.ggml.bos_token_id", n_vocab - 2)
    gguf.add_u32("tokenizer.ggml.eos_token_id", n_vocab - 1)
    gguf.add_u32("tokenizer.ggml.padding_token_id", n_vocab - 1)
    gguf.add_bool("tokenizer.ggml.add_bos_token", True)
    gguf.add_bool("tokenizer.ggml.add_eos_token", False)
    gguf.add_string("tokenizer.chat_template", CHAT_TEMPLATE)
    gguf.add_u32("general.quantization_version", 2)
    gguf.add_u32("general.file_type", 15)  # LLAMA_FTYPE_MOSTLY_Q4_K_M

    gguf.add_tensor("token_embd.weight", Q4_K, [n_embd, n_vocab])
    for layer in range(n_layer):
        more_bits = Q6_K if use_more_bits(layer, n_layer) else Q4_K
        tensors = [
            ("attn_norm.weight", F32, [n_embd]),
            ("attn_q_a_norm.weight", F32, [q_lora_rank]),
            ("attn_q_a.weight", Q4_K, [n_embd, q_lora_rank]),
            ("attn_q_b.weight", Q4_K, [q_lora_rank, n_head * head_k_mla]),
            ("attn_kv_a_mqa.weight", Q4_K, [n_embd, kv_lora_rank + n_rot]),
            ("attn_kv_a_norm.weight", F32, [kv_lora_rank]),
            ("attn_k_b.weight", Q5_0, [qk_nope, kv_lora_rank, n_head]),
            ("attn_v_b.weight", Q4_K, [kv_lora_rank, head_v_mla, n_head]),
            ("attn_output.weight", Q4_K, [n_head * head_v_mla, n_embd]),
            ("ffn_norm.weight", F32, [n_embd]),
        ]
        if layer < n_dense_lead:
            tensors += [
                ("ffn_gate.weight", Q4_K, [n_embd, n_ff]),
                ("ffn_up.weight", Q4_K, [n_embd, n_ff]),
                ("ffn_down.weight", more_bits, [n_ff, n_embd]),
            ]
        else:
            tensors += [
                ("ffn_gate_inp.weight", F32, [n_embd, n_expert]),
                ("exp_probs_b.bias", F32, [n_expert]),
                ("ffn_gate_exps.weight", Q4_K, [n_embd, n_ff_exp, n_expert]),
                ("ffn_up_exps.weight", Q4_K, [n_embd, n_ff_exp, n_expert]),
                ("ffn_down_exps.weight", more_bits, [n_ff_exp, n_embd, n_expert]),
                ("ffn_gate_shexp.weight", Q4_K, [n_embd, n_ff_exp * n_expert_shared]),
                ("ffn_up_shexp.weight", Q4_K, [n_embd, n_ff_exp * n_expert_shared]),
                ("ffn_down_shexp.weight", more_bits, [n_ff_exp * n_expert_shared, n_embd]),
            ]
        for name, ggml_type, shape in tensors:
            gguf.add_tensor(f"blk.{layer}.{name}", ggml_type, shape)
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


QWEN3_FILE = f"qwen3-30b-a3b-shaped-v{GENERATOR_VERSION}.gguf"
MANY_TENSORS_FILE = f"many-tensors-v{GENERATOR_VERSION}.gguf"
DEEPSEEK_V3_FILE = f"deepseek-v3-shaped-v{GENERATOR_VERSION}.gguf"
BENCHMARK_FILES = {
    QWEN3_FILE: write_qwen3_moe_header,
    MANY_TENSORS_FILE: write_many_tensors_header,
    DEEPSEEK_V3_FILE: write_deepseek_v3_header,
}


def default_directory() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "archreg" / "bench"


def ensure_benchmark_files(directory: Path, names: Iterable[str] | None = None) -> list[Path]:
    """The benchmark files `names` (default: all of BENCHMARK_FILES) in `directory`, written on
    first use."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in BENCHMARK_FILES if names is None else names:
        write = BENCHMARK_FILES[name]
        path = directory / name
        if not path.exists():
            print(f"writing {path}", file=sys.stderr)
            write(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in ensure_benchmark_files(Path(sys.argv[1]) if len(sys.argv) > 1 else default_directory()):
        print(written)
