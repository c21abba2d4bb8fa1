#!/usr/bin/env python3
"""Benchmark: opening and indexing a GGUF header, ours against gguf-py and llama.cpp, in one run.

For two of the files written by make_sparse_gguf.py (a Qwen3-30B-A3B-shaped header and one with 100,000
tensors) it measures, page cache warm:
  ours          gguf::Reader::open in process (tests/bench/bench_open.cpp), and separately the
                cost of decoding every vocabulary string, which open() only indexes
  inspect       `archreg inspect FILE` as a whole process, output discarded
  gguf-py       gguf.GGUFReader(FILE) in this process
  llama.cpp     gguf_init_from_file(FILE, {no_alloc = true, ctx = NULL}) through ctypes, from the
                libggml-base.so inside llama-cpp-python (scripts/bootstrap.sh --llama)
and prints a table of milliseconds (min and median of the runs) with the ratios, and writes the
same as JSON.

Usage: tests/bench/bench_open.py [--build-dir build/release] [--repeat 20] [--json OUT.json]
Run it with the test venv's Python (scripts/bootstrap.sh --test prints it).
"""

import argparse
import ctypes
import importlib.metadata
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import gguf
import make_sparse_gguf

REPO = Path(__file__).resolve().parents[2]


def timings_ms(action: Callable[[], Any], repeat: int, release: Callable[[Any], None] = lambda _: None) -> dict:
    """min and median wall-clock milliseconds of `repeat` runs, after one untimed warm-up.
    What an action opened is released outside the timed region, as for our reader."""
    release(action())
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        opened = action()
        samples.append((time.perf_counter() - start) * 1000)
        release(opened)
    return {"min": min(samples), "median": statistics.median(samples)}


class GgufInitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]


class LlamaCpp:
    """llama.cpp's own GGUF reader, gguf_init_from_file, through ctypes."""

    def __init__(self, library_path: Path) -> None:
        self.library = ctypes.CDLL(str(library_path))
        self.library.gguf_init_from_file.argtypes = [ctypes.c_char_p, GgufInitParams]
        self.library.gguf_init_from_file.restype = ctypes.c_void_p
        self.library.gguf_free.argtypes = [ctypes.c_void_p]

    def open(self, path: Path) -> int:
        # no_alloc with no ggml context: parse the header only, as a loader does first.
        context = self.library.gguf_init_from_file(str(path).encode(), GgufInitParams(True, None))
        if not context:
            raise RuntimeError(f"llama.cpp's gguf_init_from_file rejected {path}")
        return context

    def close(self, context: int) -> None:
        self.library.gguf_free(context)


def find_llama_cpp() -> tuple[LlamaCpp | None, str]:
    """llama.cpp from the llama-cpp-python package and a description of it, or None and why not.
    Only its ggml library is loaded; the Python package itself is not imported."""
    package = importlib.util.find_spec("llama_cpp")
    if package is None or not package.submodule_search_locations:
        return None, "llama-cpp-python is not installed (scripts/bootstrap.sh --llama installs it)"
    lib_dir = Path(package.submodule_search_locations[0]) / "lib"
    library_path = next((lib_dir / name for name in ("libggml-base.so", "libggml.so") if (lib_dir / name).exists()),
                        None)
    if library_path is None:
        return None, f"no libggml-base.so or libggml.so in {lib_dir}"
    try:
        llama_cpp = LlamaCpp(library_path)
    except (OSError, AttributeError) as error:  # unloadable, or without the gguf API
        return None, f"{library_path}: {error}"
    return llama_cpp, f"llama-cpp-python {importlib.metadata.version('llama_cpp_python')}, {library_path.name}"


def measure(path: Path, build_dir: Path, repeat: int, llama_cpp: LlamaCpp | None) -> dict:
    bench = subprocess.run([str(build_dir / "tests/bench/bench_open"), str(path), "--repeat", str(repeat)],
                           check=True, capture_output=True, text=True)
    ours = json.loads(bench.stdout)
    archreg = str(build_dir / "core/archreg")
    return {
        "file": path.name,
        "file_size": ours["file_size"],
        "header_bytes": ours["header_bytes"],
        "n_tensors": ours["n_tensors"],
        "n_kv": ours["n_kv"],
        "ours_open_ms": ours["open_ms"],
        "ours_touch_strings_ms": ours["touch_strings_ms"],
        "inspect_process_ms": timings_ms(
            lambda: subprocess.run([archreg, "inspect", str(path)], check=True, stdout=subprocess.DEVNULL),
            repeat),
        "process_start_ms": timings_ms(
            lambda: subprocess.run([archreg, "--help"], check=True, stdout=subprocess.DEVNULL), repeat),
        "gguf_py_ms": timings_ms(lambda: gguf.GGUFReader(path), max(3, repeat // 5)),
        "llama_cpp_ms": timings_ms(lambda: llama_cpp.open(path), repeat, llama_cpp.close) if llama_cpp else None,
    }


def ratio(numerator: dict | None, *denominators: dict) -> str:
    """numerator / sum of denominators, on minimums."""
    return f"{numerator['min'] / sum(d['min'] for d in denominators):.1f}x" if numerator else "n/a"


def table(results: list[dict]) -> str:
    def cell(timing: dict | None) -> str:
        return f"{timing['min']:.2f} / {timing['median']:.2f}" if timing else "not available"

    lines = ["| file | header | ours: open | ours: decode all strings | archreg inspect (process) "
             "| process start | gguf-py | llama.cpp | gguf-py / ours | llama.cpp / ours "
             "| llama.cpp / ours incl. strings |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['file']} ({r['n_tensors']} tensors, {r['n_kv']} keys) | {r['header_bytes'] / 2**20:.1f} MiB "
            f"| {cell(r['ours_open_ms'])} | {cell(r['ours_touch_strings_ms'])} | {cell(r['inspect_process_ms'])} "
            f"| {cell(r['process_start_ms'])} | {cell(r['gguf_py_ms'])} | {cell(r['llama_cpp_ms'])} "
            f"| {ratio(r['gguf_py_ms'], r['ours_open_ms'])} | {ratio(r['llama_cpp_ms'], r['ours_open_ms'])} "
            f"| {ratio(r['llama_cpp_ms'], r['ours_open_ms'], r['ours_touch_strings_ms'])} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=REPO / "build/release",
                        help="a build with the bench_open and archreg targets (default: build/release)")
    parser.add_argument("--data-dir", type=Path, default=make_sparse_gguf.default_directory(),
                        help="where the sparse benchmark files are cached")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per measurement")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()

    llama_cpp, llama_cpp_source = find_llama_cpp()
    print(f"llama.cpp: {llama_cpp_source}" if llama_cpp else f"llama.cpp: not available ({llama_cpp_source})")
    results = [measure(path, args.build_dir, args.repeat, llama_cpp)
               for path in make_sparse_gguf.ensure_benchmark_files(
                   args.data_dir, [make_sparse_gguf.QWEN3_FILE, make_sparse_gguf.MANY_TENSORS_FILE])]

    print("milliseconds, min / median of the runs; ratios compare minimums with ours: open "
          "(and with ours: open + decode all strings, the work llama.cpp does when it opens a file)")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"llama_cpp": llama_cpp_source if llama_cpp else None,
                                         "repeat": args.repeat, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
