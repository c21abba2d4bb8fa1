"""llama.cpp's tokenizer over a corpus, as JSON lines: run as its own process by
test_tokenizer.py. For each corpus line: {"ids": llama_tokenize(text, add_special, parse_special),
"decoded_hex": llama_detokenize(ids, remove_special=False, unparse_special)} (hex of the bytes).

    llama_tokenize.py MODEL CORPUS ADD_SPECIAL(0|1) PARSE_SPECIAL(0|1)
"""

import ctypes
import json
import sys

import llama_cpp

model_path, corpus, add_special, special = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
llm = llama_cpp.Llama(model_path=model_path, vocab_only=True, verbose=False)
vocab = llama_cpp.llama_model_get_vocab(llm.model)
out = []
for line in [line for line in open(corpus, encoding="utf-8", newline="").read().split("\n") if line]:
    record = json.loads(line)
    data = bytes.fromhex(record["hex"]) if "hex" in record else record["text"].encode("utf-8")
    ids = llm.tokenize(data, add_bos=add_special, special=special)
    array = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = len(data) * 4 + 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, array, len(ids), buf, size, False, special)
        if n >= 0:
            break
        size = -n + 16
    out.append(json.dumps({"ids": ids, "decoded_hex": buf.raw[:n].hex()}))
print("\n".join(out))
