"""Where the interop tests find what the build made. ctest sets ARCHREG_CLI, ARCHREG_TESTTOOL,
ARCHREG_EXAMPLE_MODEL and ARCHREG_TEST_PLUGINS (tests/interop/CMakeLists.txt); run by hand,
the archreg binary falls back to build/dev, and the test plugins are found beside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def archreg() -> str:
    """The archreg binary under test."""
    for var in ("ARCHREG_CLI", "ARCHREG_BIN"):
        if os.environ.get(var):
            return os.environ[var]
    fallback = REPO / "build" / "dev" / "core" / "archreg"
    if fallback.exists():
        return str(fallback)
    pytest.fail("no archreg binary: set ARCHREG_CLI (ctest does) or build build/dev/core/archreg")


def test_plugins() -> Path:
    """<build>/tests/plugins: $ARCHREG_TEST_PLUGINS, else derived from the binary (<build>/core/archreg)."""
    if os.environ.get("ARCHREG_TEST_PLUGINS"):
        return Path(os.environ["ARCHREG_TEST_PLUGINS"])
    path = Path(archreg()).resolve().parents[1] / "tests" / "plugins"
    if not (path / "toy").is_dir():
        pytest.fail(f"no test plugins at {path}: set ARCHREG_TEST_PLUGINS or build the archreg_test_plugins target")
    return path


test_plugins.__test__ = False  # a helper, not a test


# llama.cpp, the reference loader: tests/interop/llama_probe.py run in its own process.
LLAMA_PROBE = Path(__file__).with_name("llama_probe.py")


def require_llama_cpp() -> str:
    """llama-cpp-python's version; fails (never skips) when it is missing: it is a required peer."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.__version__)"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail("llama-cpp-python is not importable in this Python; it is the reference loader these tests "
                    f"compare against: run scripts/bootstrap.sh --llama\n{proc.stderr[-1500:]}")
    return proc.stdout.strip()
