#!/usr/bin/env python3
"""Benchmark: `archreg fuse` and `archreg unfuse` of a multi-GiB MoE model against `cp`, in one run.

Writes a synthetic Qwen3-30B-A3B-shaped qwen3moe model (2048-wide layers of 128 experts of 768
rows: Q4_K gate/up experts, Q6_K down experts, Q8_0 attention, F32 norms; ~390 MiB per layer,
6 layers by default: ~2.3 GiB) whose tensor data is real, incompressible bytes (nothing sparse),
then measures, in interleaved rounds (six by default, each in a rotated order so that every
command runs in every position; the best of each is kept):

  cp                `cp IN X` (coreutils; on ext4 an in-kernel copy_file_range, no fsync)
  cp + fsync        `cp IN X && sync X`: the same bytes made durable, as archreg does before it
                    publishes its output
  fuse              `archreg fuse IN X` (every group: attn_qkv and ffn_gate_up_exps)
  unfuse            `archreg unfuse F U` (F: IN fused once, untimed)
  fuse --no-sync    and unfuse --no-sync: without the durability wait, like cp

with wall time and the peak RSS of each process (GNU time's %M). Before every run `sync` flushes
what earlier runs left dirty (untimed), and the previous output is deleted; nothing is dropped
from the page cache, so the input is read warm (it was just written; the machine has the RAM to
hold it). Prints a table with the ratios to cp and to cp + fsync and writes the same as JSON.
At most four model-sized files exist at once (IN, F, X, U); all are removed at the end.

Usage: tests/bench/bench_fuse.py [--archreg build/release/core/archreg] [--layers 6] [--dir DIR]
                                 [--json OUT.json]
Run it with the test venv's Python (scripts/bootstrap.sh --test prints it): it needs gguf-py.
Targets (docs/performance.md): within 1.25x of the like-for-like copy (durable runs against
cp + fsync, --no-sync runs against cp), peak RSS within 64 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_fixtures as mf  # noqa: E402
import reference_models as rm  # noqa: E402

CHUNK = 16 << 20
TARGET_RATIO, TARGET_RSS_MIB = 1.25, 64


def write_model(path: Path, n_layer: int) -> dict:
    """A qwen3moe file with a gguf-py header and random tensor data. Returns a summary."""
    hp = dict(n_embd=2048, n_layer=n_layer, n_head=32, n_head_kv=4, key_length=128, value_length=128, n_ff=6144,
              n_expert=128, n_expert_used=8, n_ff_exp=768, n_vocab=4096)
    metadata, tensors = rm.qwen3moe(hp)
    writer = GGUFWriter(str(path), "qwen3moe")
    mf.add_metadata(writer, metadata)
    sizes = []
    expert_bytes = 0
    for name, shape in tensors:
        qtype = mf.q4_k_m_like(name, shape)
        block, size = GGML_QUANT_SIZES[qtype]
        n_bytes = shape[0] // block * size * int(np.prod(shape[1:], dtype=np.int64))
        writer.add_tensor_info(name, tuple(reversed(shape)), np.dtype(np.float32), n_bytes, raw_dtype=qtype)
        sizes.append(n_bytes)
        if "_exps" in name:
            expert_bytes += n_bytes
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    out = writer.fout[0]
    out.write(bytes(GGUFWriter.ggml_pad(out.tell(), writer.data_alignment) - out.tell()))
    # Incompressible bytes, different for every chunk position: a random pool read at a rotating
    # offset (generating 2+ GiB of fresh randomness would dominate the run).
    pool = os.urandom(2 * CHUNK)
    turn = 0
    for n_bytes in sizes:
        left = n_bytes
        while left:
            take = min(left, CHUNK)
            start = (turn * 7919 * 4096) % CHUNK
            out.write(memoryview(pool)[start:start + take])
            turn += 1
            left -= take
        out.write(bytes(GGUFWriter.ggml_pad(n_bytes, writer.data_alignment) - n_bytes))
    writer.close()
    return {"arch": "qwen3moe", "layers": n_layer, "experts": 128, "tensors": len(tensors), "file_bytes": path.stat().st_size,
            "expert_bytes": expert_bytes}


GNU_TIME = shutil.which("time", path="/usr/bin:/bin")


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one process; it must succeed. The RSS comes from GNU
    time, which forks the command from its own small process: a child forked from this Python
    would inherit Python's RSS as its high-water mark (ru_maxrss survives exec)."""
    with tempfile.NamedTemporaryFile("w+") as rss, tempfile.TemporaryFile() as err:
        wrapped = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd] if GNU_TIME else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed with exit {proc.returncode}:\n{err.read().decode(errors='replace')}")
        peak = int(rss.read().split()[-1]) if GNU_TIME else usage.ru_maxrss
    return seconds, peak


def run_once(cmds: list[list[str]]) -> dict:
    os.sync()  # what earlier runs left dirty is written back now, not during this run
    seconds, rss = 0.0, 0
    for cmd in cmds:
        s, r = timed(cmd)
        seconds += s
        rss = max(rss, r)
    return {"seconds": seconds, "peak_rss_kib": rss}


def summary(runs: list[dict]) -> dict:
    return {"runs": runs, "best_seconds": min(r["seconds"] for r in runs), "peak_rss_kib": max(r["peak_rss_kib"] for r in runs)}


def default_archreg() -> str:
    for var in ("ARCHREG_CLI", "ARCHREG_BIN"):
        if os.environ.get(var):
            return os.environ[var]
    return str(REPO / "build" / "release" / "core" / "archreg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archreg", default=default_archreg(), help="archreg binary (default: $ARCHREG_CLI, else build/release)")
    parser.add_argument("--layers", type=int, default=6, help="qwen3moe layers of 128 experts (~390 MiB each)")
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--dir", type=Path, default=None, help="where the model files go (default: a temporary directory)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    archreg = str(Path(args.archreg).resolve())
    if not Path(archreg).exists():
        raise SystemExit(f"no archreg binary at {archreg}: build it or pass --archreg")

    work = Path(tempfile.mkdtemp(prefix="bench-fuse-", dir=args.dir))
    try:
        src, copy, fused, unfused = (work / n for n in ("model.gguf", "copy.gguf", "fused.gguf", "unfused.gguf"))
        start = time.perf_counter()
        model = write_model(src, args.layers)
        print(f"wrote {src} ({model['file_bytes'] / 2**30:.2f} GiB, {model['expert_bytes'] / 2**30:.2f} GiB of experts) "
              f"in {time.perf_counter() - start:.1f} s", flush=True)
        # The fused input of the unfuse runs is made once, untimed.
        subprocess.run([archreg, "fuse", str(src), str(fused)], check=True, capture_output=True)
        # Interleaved rounds, each in a rotated order: on this shared disk a run is slower when
        # it follows a large write-back, so every command takes every position in turn.
        labels = {"cp": "cp", "cp_fsync": "cp + fsync", "fuse": "fuse", "unfuse": "unfuse",
                  "fuse_nosync": "fuse --no-sync", "unfuse_nosync": "unfuse --no-sync"}
        steps = [
            ("cp", [["cp", str(src), str(copy)]]),
            ("cp_fsync", [["cp", str(src), str(copy)], ["sync", str(copy)]]),
            ("fuse", [[archreg, "fuse", str(src), str(copy)]]),
            ("unfuse", [[archreg, "unfuse", str(fused), str(unfused)]]),
            ("fuse_nosync", [[archreg, "fuse", "--no-sync", str(src), str(copy)]]),
            ("unfuse_nosync", [[archreg, "unfuse", "--no-sync", str(fused), str(unfused)]]),
        ]
        runs: dict[str, list[dict]] = {name: [] for name in labels}
        for round_ in range(args.repeat):
            shift = round_ % len(steps)
            for name, cmds in steps[shift:] + steps[:shift]:
                copy.unlink(missing_ok=True)
                unfused.unlink(missing_ok=True)
                run = run_once(cmds)
                runs[name].append(run)
                print(f"  round {round_ + 1}  {labels[name]:<16} {run['seconds']:7.2f} s  peak RSS {run['peak_rss_kib'] / 1024:6.1f} MiB",
                      flush=True)
                if name.startswith("unfuse") and unfused.stat().st_size != src.stat().st_size:
                    # x's parts are not adjacent, so unfuse(fuse(x)) differs from x in order only
                    raise SystemExit("unfuse(fuse(x)) is not the size of x")
            copy.unlink(missing_ok=True)
            unfused.unlink(missing_ok=True)
        results = {name: summary(r) for name, r in runs.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cp, cp_fsync = results["cp"]["best_seconds"], results["cp_fsync"]["best_seconds"]
    gib = model["file_bytes"] / 2**30
    print()
    print(f"{'what':<17} {'best (s)':>9} {'GiB/s':>7} {'/ cp':>6} {'/ cp+fsync':>11} {'peak RSS (MiB)':>15}")
    for name, label in labels.items():
        r = results[name]
        r["ratio_to_cp"] = r["best_seconds"] / cp
        r["ratio_to_cp_fsync"] = r["best_seconds"] / cp_fsync
        print(f"{label:<17} {r['best_seconds']:9.2f} {gib / r['best_seconds']:7.2f} {r['ratio_to_cp']:6.2f} "
              f"{r['ratio_to_cp_fsync']:11.2f} {r['peak_rss_kib'] / 1024:15.1f}")
    # Like for like: the durable commands against cp + fsync, the --no-sync ones against cp.
    like_for_like = {"fuse": "ratio_to_cp_fsync", "unfuse": "ratio_to_cp_fsync",
                     "fuse_nosync": "ratio_to_cp", "unfuse_nosync": "ratio_to_cp"}
    ok = all(results[n][ratio] <= TARGET_RATIO and results[n]["peak_rss_kib"] <= TARGET_RSS_MIB * 1024
             for n, ratio in like_for_like.items())
    print(f"\ntargets (time <= {TARGET_RATIO}x the like-for-like copy, peak RSS <= {TARGET_RSS_MIB} MiB): {'met' if ok else 'NOT met'}")

    if args.json:
        document = {
            "model": model,
            "archreg": archreg,
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "loadavg_after": os.getloadavg()},
            "page_cache": "warm: the input was just written and is not dropped; sync before every run",
            "targets": {"ratio_to_cp": TARGET_RATIO, "peak_rss_mib": TARGET_RSS_MIB, "met": ok},
            "results": results,
        }
        args.json.write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
