"""Loads a GGUF in llama.cpp (through llama-cpp-python) and prints the logits of a fixed 4-token
prompt as JSON. Run as a separate process: a file llama.cpp rejects may abort the process."""

import json
import sys

import llama_cpp
import numpy as np

model = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=32, n_batch=8, n_threads=1, verbose=False, logits_all=True)
model.eval([1, 5, 6, 7])
print(json.dumps(np.asarray(model.scores[:4], dtype=np.float32).tolist()))
