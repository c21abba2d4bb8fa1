"""Reference logits from llama.cpp (through llama-cpp-python), for tests/interop/test_run_logits.py.

    python llama_logits.py JOBS.json

JOBS.json: {"jobs": [{"model": PATH, "tokens": [ids] or "text": STR, "out": NPY_PATH,
"kv": "f32"|"default", "n_ctx": C, "n_threads": N, "n_batch": B, "generate": G}]}. For each job
the logits of every prompt position are saved as a float32 .npy [n_tokens, n_vocab]; "text" is
tokenised by llama.cpp first (with BOS, as llama.cpp's tools do); "generate" continues greedily
for G tokens (argmax, one token per decode) and reports the ids and each step's top-two gap. One
line of JSON per job goes to stdout as it completes. Run in
its own process: a model llama.cpp rejects may abort the process, and the caller then knows
which job it was (the last one without a line).

Settings, and why:
- logits_all=True: the logits of every position, as archreg run --dump-logits writes them;
- flash_attn=False (LLAMA_FLASH_ATTN_TYPE_DISABLED): the plain soft_max(KQ)V path, whose
  arithmetic (F32 softmax over F32 scores) is the one to compare a runtime against;
- kv "f32": type_k = type_v = GGML_TYPE_F32 (0), so the KV cache does not round K and V to F16;
  "default": llama.cpp's own default (F16 cache), as users run it;
- n_batch = n_ubatch = at least the prompt length, so the prompt is one batch (prefill), unless
  the job asks for a smaller batch (the float-order experiments of the tolerance derivation);
- n_gpu_layers=0, the model mapped (default), verbose=False.
"""

import json
import sys

import llama_cpp
import numpy as np

GGML_TYPE_F32 = 0


def run(job: dict) -> dict:
    if "text" in job:
        vocab = llama_cpp.Llama(model_path=job["model"], vocab_only=True, verbose=False)
        tokens = vocab.tokenize(job["text"].encode(), add_bos=True, special=False)
        vocab.close()
        tokens = tokens[: int(job.get("max_tokens") or len(tokens))]
    else:
        tokens = [int(t) for t in job["tokens"]]
    n_gen = int(job.get("generate") or 0)
    n_batch = int(job.get("n_batch") or max(len(tokens), 8))
    kwargs = dict(model_path=job["model"], n_ctx=int(job.get("n_ctx") or max(64, len(tokens) + n_gen)), n_batch=n_batch,
                  n_ubatch=n_batch, n_threads=int(job.get("n_threads", 2)), n_threads_batch=int(job.get("n_threads", 2)),
                  n_gpu_layers=0, logits_all=True, flash_attn=False, verbose=False)
    if job.get("kv", "f32") == "f32":
        kwargs.update(type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
    model = llama_cpp.Llama(**kwargs)
    model.eval(tokens)
    logits = np.array(model.scores[: len(tokens)], dtype=np.float32, copy=True)
    np.save(job["out"], logits)
    generated, gaps = [], []
    for step in range(n_gen):
        row = np.array(model.scores[model.n_tokens - 1], dtype=np.float32)
        top2 = np.sort(row)[-2:]
        generated.append(int(np.argmax(row)))
        gaps.append(float(top2[1] - top2[0]))
        if step + 1 < n_gen:
            model.eval([generated[-1]])
    n_vocab = model.n_vocab()
    model.close()
    return {"model": job["model"], "out": job["out"], "tokens": tokens, "shape": list(logits.shape),
            "n_vocab": n_vocab, "finite": bool(np.all(np.isfinite(logits))), "generated": generated, "gaps": gaps}


def main() -> int:
    with open(sys.argv[1]) as f:
        jobs = json.load(f)["jobs"]
    for job in jobs:
        print(json.dumps(run(job)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
