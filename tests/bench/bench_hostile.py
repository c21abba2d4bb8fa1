#!/usr/bin/env python3
"""The red-team cases of issue 12 and variants, each run as an `archreg` process under GNU time.

For every case it records the exit status (a negative one is a signal: a crash), the wall time,
the peak resident memory (`/usr/bin/time -v`, "Maximum resident set size") and, with --json,
whether stdout is one valid JSON document. The issue's bar: no crash, each case under 1 s,
under 256 MiB (the 50 MB spec included), valid JSON whenever --json is given. As a yardstick in
the same run, `archreg --version` (process start) is timed too.

Usage: tests/bench/bench_hostile.py [--archreg build/release/core/archreg] [--json OUT.json]
Exits 1 if any case misses the bar.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def spec_text(arch: str = "hostile", hparams: str = "", extra: str = "") -> str:
    return (f"schema_version: 1\narch: {arch}\nhparams:\n  n_embd: {{ key: \"{{arch}}.embedding_length\" }}\n"
            f"  n_layer: {{ key: \"{{arch}}.block_count\" }}\n{hparams}layers: n_layer\ntensors:\n  token_embd: [n_embd]\n{extra}")


def gguf_with_arch(path: Path, arch: bytes) -> Path:
    key = b"general.architecture"
    path.write_bytes(struct.pack("<IIQQ", 0x46554747, 3, 0, 1) + struct.pack("<Q", len(key)) + key
                     + struct.pack("<iQ", 8, len(arch)) + arch)
    return path


def make_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    """(name, archreg arguments) for every case; writes the inputs under tmp."""
    cases: list[tuple[str, list[str]]] = []
    deep = {
        "10k nested parentheses": "(" * 10000 + "n_embd" + ")" * 10000,
        "100k unary minus": "-" * 100000 + "n_embd",
        "3k nested min(": "min(" * 3000 + "n_embd" + ")" * 3000,
        "3k nested ?:": "n_embd ? " * 3000 + "1" + " : 0" * 3000,
        "1k-term a + a + ...": "n_embd" + " + n_embd" * 1000,
    }
    for name, expr in deep.items():
        d = tmp / re.sub(r"\W+", "_", name)
        d.mkdir()
        (d / "hostile.yaml").write_text(spec_text(hparams=f"  deep: {{ value: \"{expr}\" }}\n"))
        cases.append((f"spec check: {name}", ["spec", "check", str(d / "hostile.yaml")]))
        cases.append((f"validate --spec-dir: {name}", ["validate", str(gguf_with_arch(d / "m.gguf", b"hostile")), "--json", "--spec-dir", str(d)]))
    chain = "  h0: { key: a }\n" + "".join(f"  h{i}: {{ value: h{i - 1} + 1 }}\n" for i in range(1, 100000))
    (tmp / "chain.yaml").write_text(spec_text(hparams=chain))
    cases.append(("spec check: 100k-hparam value chain (3 MB)", ["spec", "check", str(tmp / "chain.yaml")]))
    (tmp / "chain300.yaml").write_text(spec_text(hparams="".join(chain.splitlines(keepends=True)[:300])))
    cases.append(("spec check: 300-hparam value chain", ["spec", "check", str(tmp / "chain300.yaml")]))
    tensors = "".join(f"  t{i}: [n_embd, n_embd]\n" for i in range(4096 - 1))
    (tmp / "tensors4k.yaml").write_text(spec_text(extra="layer:\n" + tensors))
    cases.append(("spec check: 4095 tensors (the limit)", ["spec", "check", str(tmp / "tensors4k.yaml")]))
    tensors = "".join(f"  t{i}: [n_embd, n_embd]\n" for i in range(100000))
    (tmp / "tensors100k.yaml").write_text(spec_text(extra="layer:\n" + tensors))
    cases.append(("spec check: 100k tensors (2.6 MB)", ["spec", "check", str(tmp / "tensors100k.yaml")]))
    with (tmp / "big.yaml").open("w") as out:
        out.write(spec_text(extra="layer:\n"))
        i = 0
        while out.tell() < 50_000_000:
            out.write(f"  t{i}: [n_embd, n_embd, n_embd]\n")
            i += 1
    cases.append(("spec check: 50 MB spec", ["spec", "check", str(tmp / "big.yaml")]))
    near = tmp / "near-limit"
    near.mkdir()
    (near / "hostile.yaml").write_text(spec_text(extra="checks:\n" + "".join(
        f"  - {{ expr: \"min(n_embd, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1) > 0\", message: m{i} }}\n" for i in range(256)))
        + "description: \"" + "x" * 230_000 + "\"\n")
    cases.append(("spec check: 255 KiB spec of 256 checks", ["spec", "check", str(near / "hostile.yaml")]))
    flow = tmp / "flow"
    flow.mkdir()
    (flow / "hostile.yaml").write_text("[" + "1," * 500_000 + "1]\n")
    cases.append(("spec check: 1 MB flow list of 500k scalars", ["spec", "check", str(flow / "hostile.yaml")]))
    (flow / "small.yaml").write_text("[" + "1," * 130_000 + "1]\n")
    cases.append(("spec check: 255 KiB flow list of 130k scalars", ["spec", "check", str(flow / "small.yaml")]))
    (flow / "limit.yaml").write_text("[" + "1," * 65_000 + "1]\n")
    cases.append(("spec check: 65k-scalar flow list (the node limit)", ["spec", "check", str(flow / "limit.yaml")]))
    (flow / "nested.yaml").write_text("[" * 130_000 + "]" * 130_000)
    cases.append(("spec check: 130k nested YAML lists", ["spec", "check", str(flow / "nested.yaml")]))
    (flow / "anchors.yaml").write_text("a: &a [" + ", ".join(["x"] * 1000) + "]\n" + "".join(f"b{i}: *a\n" for i in range(10000)))
    cases.append(("spec check: 10k aliases of a 1k list", ["spec", "check", str(flow / "anchors.yaml")]))

    fifo = tmp / "fifo.gguf"
    os.mkfifo(fifo)
    cases += [("inspect FIFO", ["inspect", str(fifo)]), ("validate --json FIFO", ["validate", "--json", str(fifo)]),
              ("fuse FIFO", ["fuse", str(fifo), str(tmp / "out.gguf")])]
    special = tmp / "special"
    (special / "specs").mkdir(parents=True)
    (special / "plugins").mkdir()
    os.mkfifo(special / "specs" / "fifoarch.yaml")
    os.mkfifo(special / "plugins" / "fifo.archs")
    (special / "plugins" / "zero.archs").symlink_to("/dev/zero")
    (special / "plugins" / "loop.archs").write_text("looparch\n")
    (special / "plugins" / "loop.so").symlink_to(special / "plugins" / "loop.so")
    (special / "specs" / "looparch.yaml").write_text(spec_text("looparch"))
    (special / "plugins" / "bad.archs").write_bytes(b"caf\xe9\n\xff\x1b[31m\n")
    dirs = ["--spec-dir", str(special / "specs"), "--plugin-dir", str(special / "plugins")]
    cases.append(("list --json: FIFO/dev-zero/loop/invalid-UTF-8 manifests", ["list", "--json", *dirs]))
    cases.append(("list: the same, text", ["list", *dirs]))
    cases.append(("validate --json: FIFO spec", ["validate", "--json", str(gguf_with_arch(tmp / "fifoarch.gguf", b"fifoarch")), *dirs]))
    cases.append(("list --json --spec-dir arch-specs (a default dir)", ["list", "--json", "--spec-dir", str(REPO / "arch-specs")]))
    for name, arch in (("ESC/CSI", b"x\x1b[2J\x1b[31m"), ("NUL+newline", b"a\x00b\nc"), ("invalid UTF-8", b"\xff\xfe")):
        model = gguf_with_arch(tmp / f"arch-{len(cases)}.gguf", arch)
        cases.append((f"validate: arch with {name}", ["validate", str(model)]))
        cases.append((f"validate --json: arch with {name}", ["validate", "--json", str(model)]))
        cases.append((f"inspect --json: arch with {name}", ["inspect", "--json", str(model)]))
    return cases


def measure(archreg: str, args: list[str]) -> dict:
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.monotonic()
        try:
            proc = subprocess.run(["/usr/bin/time", "-v", "-o", report.name, archreg, *args], capture_output=True, timeout=20)
        except subprocess.TimeoutExpired:
            return {"status": "hang", "seconds": 20.0, "max_rss_mib": None, "stdout": b""}
        seconds = time.monotonic() - start
        text = report.read()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    signal = re.search(r"Command terminated by signal (\d+)", text)
    status = f"signal {signal.group(1)}" if signal else proc.returncode
    return {"status": status, "seconds": seconds, "max_rss_mib": int(rss.group(1)) / 1024 if rss else None, "stdout": proc.stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archreg", default=str(REPO / "build" / "release" / "core" / "archreg"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        baseline = measure(args.archreg, ["--version"])
        for name, argv in make_cases(Path(tmp)):
            result = measure(args.archreg, argv)
            valid_json = None
            if "--json" in argv:
                try:
                    json.loads(result["stdout"].decode("utf-8"))
                    valid_json = True
                except (UnicodeDecodeError, ValueError):
                    valid_json = False
            ok = result["status"] in (0, 1, 2) and result["seconds"] < 1 and (result["max_rss_mib"] or 0) < 256 and valid_json is not False
            failed |= not ok
            rows.append({"case": name, "exit": result["status"], "seconds": round(result["seconds"], 3),
                         "max_rss_mib": round(result["max_rss_mib"] or 0, 1), "valid_json": valid_json, "ok": ok})
    print(f"{'case':<58} {'exit':>6} {'s':>6} {'MiB':>6} json")
    print(f"{'archreg --version (process start)':<58} {baseline['status']:>6} {baseline['seconds']:>6.3f} {baseline['max_rss_mib']:>6.1f}")
    for r in rows:
        print(f"{r['case']:<58} {str(r['exit']):>6} {r['seconds']:>6.3f} {r['max_rss_mib']:>6.1f} "
              f"{'-' if r['valid_json'] is None else r['valid_json']}{'' if r['ok'] else '  FAIL'}")
    print(f"{len(rows)} cases, {sum(not r['ok'] for r in rows)} failing; slowest {max(r['seconds'] for r in rows):.3f} s, "
          f"largest {max(r['max_rss_mib'] for r in rows):.1f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"baseline": {k: v for k, v in baseline.items() if k != "stdout"}, "cases": rows}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
