"""Text in, text out: `archreg run -p TEXT` on the embedded SmolLM2-135M-Instruct generates the same
greedy tokens as llama.cpp (default settings) from the same prompt, each tokenizing it from the file.

Greedy decoding amplifies float-order differences at near ties: llama.cpp's own F16-cache and
F32-cache runs part ways within 32 tokens on these prompts. So the tokens must be identical up to
the first step where llama.cpp's top-two logit gap is below NEAR_TIE (docs/numerics.md), and that
prefix must cover at least MIN_AGREED tokens."""
import subprocess

import numpy as np
import pytest

from binaries import archreg
from test_run_logits import smollm2_path

PROMPTS = [
    "The capital of France is",
    "Question: What is the chemical symbol for gold?\nAnswer:",
    "def fibonacci(n):",
]
N_GEN = 32
NEAR_TIE = 0.25
MIN_AGREED = 3


def llama_greedy(path, prompt: str):
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=2, verbose=False, logits_all=True)
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    llm.eval(tokens)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    out, gaps = [], []
    for _ in range(N_GEN):
        row = np.array(llm.scores[llm.n_tokens - 1])
        top2 = np.sort(row)[-2:]
        token = int(row.argmax())
        out.append(token)
        gaps.append(float(top2[1] - top2[0]))
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        llm.eval([token])
    return tokens, out, gaps, llm


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_text_matches_llama_cpp(prompt: str) -> None:
    path = smollm2_path()
    prompt_ids, expected, gaps, llm = llama_greedy(path, prompt)
    ids = subprocess.run([archreg(), "run", str(path), "--tokens", ",".join(map(str, prompt_ids)), "-n", str(N_GEN), "--threads", "2"],
                         capture_output=True, text=True, timeout=300)
    assert ids.returncode == 0, ids.stderr
    got = [int(t) for t in ids.stdout.split()]
    decided = next((i for i, gap in enumerate(gaps) if gap < NEAR_TIE), len(gaps))
    assert decided >= MIN_AGREED, f"llama.cpp itself is near a tie after {decided} tokens: pick another prompt"
    assert got[:decided] == expected[:decided], f"archreg {got} vs llama.cpp {expected} (decided up to {decided})"
    text = subprocess.run([archreg(), "run", str(path), "-p", prompt, "-n", str(N_GEN), "--threads", "2"],
                          capture_output=True, text=True, timeout=300)
    assert text.returncode == 0, text.stderr
    agreed = llm.detokenize(expected[:decided]).decode("utf-8", errors="ignore")
    assert text.stdout.startswith(agreed), f"archreg -p: {text.stdout!r}\nllama.cpp (first {decided} tokens): {agreed!r}"
    assert "prefill:" in text.stderr and "tokens/s" in text.stderr


def test_default_model_is_smollm2() -> None:
    proc = subprocess.run([archreg(), "run", "-p", "Hello", "-n", "4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "llama on cpu" in proc.stderr


def test_chat_two_turns_from_piped_input() -> None:
    """`archreg chat` renders the conversation with the model's template (SmolLM2: ChatML) and
    answers each turn; piped input ends at EOF."""
    proc = subprocess.run([archreg(), "chat", str(smollm2_path()), "-n", "12", "--threads", "2"],
                          input="What is the capital of France?\nAnd of Italy?\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "template chatml" in proc.stderr
    replies = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(replies) >= 2, proc.stdout
    assert "Paris" in proc.stdout, proc.stdout


def test_chat_refuses_an_unknown_template() -> None:
    proc = subprocess.run([archreg(), "chat", str(smollm2_path()), "--chat-template", "no-such-family"],
                          input="hi\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "chatml" in proc.stderr  # the error names the options
