#!/usr/bin/env python3
"""Benchmark: `archreg validate` end to end, process start included, against gguf-py and llama.cpp.

For the Qwen3-30B-A3B-shaped and the DeepSeek-V3-shaped files written by make_sparse_gguf.py
(real headers, full vocabularies, data sections that are holes: 17 and 377 GiB apparent size)
it measures, page cache warm:
  validate        `archreg validate FILE` as a whole process, output discarded (exit 0 required)
  validate --json `archreg validate --json FILE`, the same
  process start   `archreg --version`: starting the same binary and doing nothing, so the cost
                  specific to validating is visible (validate minus this)
  open            gguf::Reader::open in process (tests/bench/bench_open.cpp), the part of
                  validating that reads the header
  gguf-py         gguf.GGUFReader(FILE) in this process (a few runs: it takes seconds)
  llama.cpp       gguf_init_from_file(FILE, {no_alloc = true, ctx = NULL}) through ctypes: the
                  header parse a llama.cpp loader starts with
and prints a table of milliseconds (min and median of the runs) with the ratios, and writes the
same as JSON. The timing helpers and the llama.cpp binding are bench_open.py's.

Usage: tests/bench/bench_validate.py [--build-dir build/release] [--repeat 30] [--json OUT.json]
Run it with the test venv's Python (scripts/bootstrap.sh --test prints it; --llama for the
llama.cpp column).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import make_sparse_gguf
from bench_open import REPO, LlamaCpp, find_llama_cpp, ratio, timings_ms

FILES = [make_sparse_gguf.QWEN3_FILE, make_sparse_gguf.DEEPSEEK_V3_FILE]
TARGET_MS = 20.0


def process_timing(command: list[str], repeat: int) -> dict:
    """Wall-clock timing of running `command` to completion, output discarded."""
    return timings_ms(lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL), repeat)


def validation_summary(archreg: str, path: Path) -> dict:
    """What `archreg validate --json` says about the file; the benchmark needs it valid, or it
    would be timing an early exit."""
    done = subprocess.run([archreg, "validate", "--json", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{path} does not validate (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    report = json.loads(done.stdout)
    return {"arch": report["arch"], "n_findings": len(report["findings"]),
            "groups": {group["name"]: group["state"] for group in report["groups"]}}


def measure(path: Path, build_dir: Path, repeat: int, gguf_py_repeat: int, llama_cpp: LlamaCpp | None) -> dict:
    archreg = str(build_dir / "core/archreg")
    stat = path.stat()
    bench = subprocess.run([str(build_dir / "tests/bench/bench_open"), str(path), "--repeat", str(repeat)],
                           check=True, capture_output=True, text=True)
    ours = json.loads(bench.stdout)
    return {
        "file": path.name,
        "file_size": stat.st_size,
        "disk_bytes": stat.st_blocks * 512,
        "header_bytes": ours["header_bytes"],
        "n_tensors": ours["n_tensors"],
        "n_kv": ours["n_kv"],
        "validation": validation_summary(archreg, path),
        "validate_process_ms": process_timing([archreg, "validate", str(path)], repeat),
        "validate_json_process_ms": process_timing([archreg, "validate", "--json", str(path)], repeat),
        "process_start_ms": process_timing([archreg, "--version"], repeat),
        "ours_open_ms": ours["open_ms"],
        "gguf_py_ms": timings_ms(lambda: gguf.GGUFReader(path), gguf_py_repeat),
        "llama_cpp_ms": timings_ms(lambda: llama_cpp.open(path), repeat, llama_cpp.close) if llama_cpp else None,
    }


def table(results: list[dict]) -> str:
    """One column per file, one row per measurement, then the ratios and the verdict."""
    def cell(timing: dict | None) -> str:
        return f"{timing['min']:.2f} / {timing['median']:.2f}" if timing else "not available"

    def verdict(r: dict) -> str:
        slowest = max(r["validate_process_ms"]["min"], r["validate_json_process_ms"]["min"])
        return f"met ({slowest:.1f} ms)" if slowest < TARGET_MS else f"MISSED ({slowest:.1f} ms)"

    rows = [
        ("apparent size (on disk)",
         lambda r: f"{r['file_size'] / 2**30:.1f} GiB ({r['disk_bytes'] / 2**20:.1f} MiB)"),
        ("header, tensors, keys", lambda r: f"{r['header_bytes'] / 2**20:.1f} MiB, {r['n_tensors']}, {r['n_kv']}"),
        ("`archreg validate FILE` (whole process)", lambda r: cell(r["validate_process_ms"])),
        ("`archreg validate --json FILE` (whole process)", lambda r: cell(r["validate_json_process_ms"])),
        ("`archreg --version` (process start)", lambda r: cell(r["process_start_ms"])),
        ("validate minus process start (min)",
         lambda r: f"{r['validate_process_ms']['min'] - r['process_start_ms']['min']:.2f}"),
        ("of which `Reader::open` (in process)", lambda r: cell(r["ours_open_ms"])),
        ("llama.cpp `gguf_init_from_file` (no_alloc)", lambda r: cell(r["llama_cpp_ms"])),
        ("gguf-py `GGUFReader`", lambda r: cell(r["gguf_py_ms"])),
        ("llama.cpp / validate", lambda r: ratio(r["llama_cpp_ms"], r["validate_process_ms"])),
        ("gguf-py / validate", lambda r: ratio(r["gguf_py_ms"], r["validate_process_ms"])),
        (f"target: under {TARGET_MS:.0f} ms", verdict),
    ]
    lines = ["| what | " + " | ".join(r["file"] for r in results) + " |",
             "|---|" + "---|" * len(results)]
    lines += [f"| {label} | " + " | ".join(value(r) for r in results) + " |" for label, value in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=REPO / "build/release",
                        help="a build with the archreg and bench_open targets and the plugins (default: build/release)")
    parser.add_argument("--data-dir", type=Path, default=make_sparse_gguf.default_directory(),
                        help="where the sparse benchmark files are cached")
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per measurement")
    parser.add_argument("--gguf-py-repeat", type=int, default=5, help="timed runs of gguf-py (seconds each)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()

    llama_cpp, llama_cpp_source = find_llama_cpp()
    print(f"llama.cpp: {llama_cpp_source}" if llama_cpp else f"llama.cpp: not available ({llama_cpp_source})")
    results = [measure(path, args.build_dir, args.repeat, args.gguf_py_repeat, llama_cpp)
               for path in make_sparse_gguf.ensure_benchmark_files(args.data_dir, FILES)]

    print(f"milliseconds, min / median of {args.repeat} runs (gguf-py: {args.gguf_py_repeat}); ratios compare "
          f"minimums with `archreg validate` as a whole process; target: under {TARGET_MS:.0f} ms")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"llama_cpp": llama_cpp_source if llama_cpp else None,
                                         "repeat": args.repeat, "gguf_py_repeat": args.gguf_py_repeat,
                                         "target_ms": TARGET_MS, "load_average": os.getloadavg(),
                                         "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
