#!/usr/bin/env python3
"""Writes the seed corpus of validate_fuzz: the headers (everything before the data section) of
the gguf-py fixtures and mutants of tests/fixtures/make_fixtures.py, one file each.

Usage: make_validate_corpus.py [OUTDIR]   (default: tests/fuzz/validate-corpus)
Needs the test venv (gguf-py); the committed corpus was made with it.
"""

import sys
import tempfile
from pathlib import Path

import gguf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))
import make_fixtures  # noqa: E402


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "validate-corpus"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        make_fixtures.write_valid(Path(scratch))
        make_fixtures.write_mutants(Path(scratch))
        for path in sorted(Path(scratch).glob("*.gguf")):
            header = path.read_bytes()[: gguf.GGUFReader(str(path)).data_offset]
            (out / path.name).write_bytes(header)
    print(f"wrote {len(list(out.glob('*.gguf')))} headers to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
