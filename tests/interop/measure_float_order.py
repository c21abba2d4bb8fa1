#!/usr/bin/env python3
"""How far llama.cpp's logits move when only the order of floating-point operations changes:
the measurement behind TOLERANCE in test_run_logits.py (docs/numerics.md).

    measure_float_order.py [WORKDIR]      (run with the test venv's Python)

For every tiny runtime model (make_runtime_models.py) it computes llama.cpp's prompt logits three
ways that differ only in arithmetic order and kernel choice, never in what is computed:
    ref      the test's reference: 2 threads, the prompt as one batch (matrix-matrix kernels)
    tok1     1 thread, one token per decode (matrix-vector kernels, attention over the cache)
    batch4   2 threads, batches of 4 tokens
Activations are quantized (Q8_0/Q8_1/Q8_K, F16, BF16) the same way in all three, so the spread
is what a correct runtime that quantizes like llama.cpp, but sums in another order, can show:
float rounding, amplified where a value lands on the other side of a quantization step.
Prints, per file and per storage plan, max |delta| / (range of the reference logits).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "fixtures"))
import make_runtime_models as rtm  # noqa: E402
from test_run_logits import CTX, PROMPT, llama_reference  # noqa: E402

VARIANTS = {"ref": dict(n_threads=2, n_batch=None), "tok1": dict(n_threads=1, n_batch=1), "batch4": dict(n_threads=2, n_batch=4)}


def main() -> int:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="float-order-"))
    models = work / "models"
    rtm.main([str(models)])
    jobs = []
    for m, t in rtm.all_files():
        for v, opts in VARIANTS.items():
            jobs.append({"model": str(models / f"{m}.{t}.gguf"), "tokens": PROMPT, "out": str(work / f"{m}.{t}.{v}.npy"),
                         "kv": "f32", "n_ctx": CTX, "n_threads": opts["n_threads"], "n_batch": opts["n_batch"]})
    results, errors = llama_reference(jobs, work)
    for out, err in errors.items():
        print(f"FAILED {Path(out).name}: {err[-500:]}")
    worst: dict[str, float] = defaultdict(float)
    rows = []
    for m, t in rtm.all_files():
        ref = np.load(work / f"{m}.{t}.ref.npy").astype(np.float64)
        spread = float(np.ptp(ref))
        rel = {}
        for v in VARIANTS:
            if v == "ref":
                continue
            other = np.load(work / f"{m}.{t}.{v}.npy").astype(np.float64)
            rel[v] = float(np.max(np.abs(other - ref))) / spread
            worst[t] = max(worst[t], rel[v])
        rows.append({"file": f"{m}.{t}", "range": spread, **rel})
        print(f"{m + '.' + t:24s} range {spread:7.3f}  " + "  ".join(f"{v} {r:.2e}" for v, r in rel.items()))
    print(json.dumps({"worst_by_plan": worst}, indent=1))
    (work / "float_order.json").write_text(json.dumps({"rows": rows, "worst_by_plan": worst}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
