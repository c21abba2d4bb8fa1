"""Hostile specs, manifests and special files through the command line (issue 12).

Each red-team case must end quickly (a hang is a failure: every run has a short timeout),
without a crash (a negative return code is a signal), with the documented exit status, and
with valid JSON whenever --json was asked for. Unit tests of the same limits:
tests/unit/hostile_files_test.cpp.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARCH_SPECS = REPO / "arch-specs"
TOY_SPECS = REPO / "tests" / "fixtures" / "toy-specs"
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_fixtures  # noqa: E402
from binaries import archreg, test_plugins  # noqa: E402

ESC = "\x1b"
# "Quickly": what a refusal that reads nothing takes, with room for an ASan build on a loaded
# 2-core machine (1.03 s was seen there); a hang (a FIFO opened for reading, a symlink loop
# followed) would run into run()'s timeout instead.
QUICK = 3.0


def run(*args: str | Path, timeout: float = 10, cwd: Path | None = None) -> subprocess.CompletedProcess:
    start = time.monotonic()
    result = subprocess.run([archreg(), *map(str, args)], capture_output=True, timeout=timeout, cwd=cwd)
    result.seconds = time.monotonic() - start  # type: ignore[attr-defined]
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {result.stderr[-2000:]!r}"
    assert result.returncode in (0, 1, 2), result
    return result


def run_json(*args: str | Path) -> tuple[subprocess.CompletedProcess, object]:
    result = run(*args)
    return result, json.loads(result.stdout.decode("utf-8"))  # strict: valid UTF-8 and valid JSON


def gguf_with_arch(path: Path, arch: bytes) -> Path:
    """A header-only GGUF whose general.architecture is `arch`, raw bytes."""
    key = b"general.architecture"
    data = struct.pack("<IIQQ", 0x46554747, 3, 0, 1) + struct.pack("<Q", len(key)) + key
    data += struct.pack("<iQ", 8, len(arch)) + arch
    path.write_bytes(data)
    return path


def spec_text(arch: str = "hostile", extra_hparams: str = "", extra: str = "") -> str:
    return (f"schema_version: 1\narch: {arch}\nhparams:\n  n_embd: {{ key: \"{{arch}}.embedding_length\" }}\n"
            f"  n_layer: {{ key: \"{{arch}}.block_count\" }}\n{extra_hparams}layers: n_layer\n"
            f"tensors:\n  token_embd: [n_embd]\n{extra}")


DEEP = {
    "parentheses": "(" * 10000 + "n_embd" + ")" * 10000,
    "unary-minus": "-" * 100000 + "n_embd",
    "min": "min(" * 3000 + "n_embd" + ")" * 3000,
    "conditional": "n_embd ? " * 3000 + "1" + " : 0" * 3000,
}


@pytest.mark.parametrize("case", sorted(DEEP))
def test_deep_expressions_are_spec_problems_not_crashes(case: str, tmp_path: Path):
    spec = tmp_path / "hostile.yaml"
    spec.write_text(spec_text(extra_hparams=f"  deep: {{ value: \"{DEEP[case]}\" }}\n"))
    result = run("spec", "check", spec)
    assert result.returncode == 1 and result.seconds < QUICK
    assert b"nested deeper than 64 levels" in result.stderr or b"at most 4096" in result.stderr
    # validate --spec-dir reaches the same spec through the registry: exit 2, and JSON on request.
    model = gguf_with_arch(tmp_path / "m.gguf", b"hostile")
    result, doc = run_json("validate", model, "--json", "--spec-dir", tmp_path)
    assert result.returncode == 2 and doc["findings"][0]["code"] == "invalid_spec"


def test_a_long_value_chain_is_refused(tmp_path: Path):
    chain = "  h0: { key: a }\n" + "".join(f"  h{i}: {{ value: h{i - 1} + 1 }}\n" for i in range(1, 100000))
    spec = tmp_path / "hostile.yaml"
    spec.write_text(spec_text(extra_hparams=chain))  # about 3 MB: refused for its size
    result = run("spec", "check", spec)
    assert result.returncode == 1 and b"at most 262144 are read" in result.stderr
    spec.write_text(spec_text(extra_hparams="".join(chain.splitlines(keepends=True)[:200])))
    result = run("spec", "check", spec)
    assert result.returncode == 1 and b"starts a chain of" in result.stderr and result.seconds < QUICK


def test_a_50_mb_spec_is_refused_in_bounded_memory_and_time(tmp_path: Path):
    spec = tmp_path / "hostile.yaml"
    with spec.open("w") as out:
        out.write(spec_text(extra="layer:\n"))
        line = "  t{}: [n_embd, n_embd, n_embd]\n"
        written = 0
        i = 0
        while written < 50_000_000:
            written += out.write(line.format(i))
            i += 1
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = run("spec", "check", spec)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert result.returncode == 1 and b"at most 262144 are read" in result.stderr
    assert result.seconds < QUICK
    assert max(before, peak_kib) < 256 * 1024


def test_special_files_are_refused_quickly(tmp_path: Path):
    fifo = tmp_path / "fifo.gguf"
    os.mkfifo(fifo)
    for command in (["inspect", fifo], ["validate", fifo], ["fuse", fifo, tmp_path / "out.gguf"]):
        result = run(*command, timeout=5)
        assert result.returncode == 2 and result.seconds < QUICK, command
        assert b"named pipe (FIFO), not a regular file" in result.stderr
        assert b"Success" not in result.stderr
    result, doc = run_json("validate", fifo, "--json")
    assert result.returncode == 2 and doc["findings"][0]["code"] == "malformed_gguf"
    result = run("inspect", tmp_path)
    assert result.returncode == 2 and b"is a directory" in result.stderr and b"Success" not in result.stderr


def test_fifos_and_devices_in_search_directories_hang_nothing(tmp_path: Path):
    specs, plugins = tmp_path / "specs", tmp_path / "plugins"
    specs.mkdir()
    plugins.mkdir()
    os.mkfifo(specs / "fifoarch.yaml")
    os.mkfifo(plugins / "fifo.archs")
    (plugins / "zero.archs").symlink_to("/dev/zero")
    (plugins / "loop.archs").write_text("looparch\n")
    (plugins / "loop.so").symlink_to(plugins / "loop.so")
    (specs / "looparch.yaml").write_text(spec_text("looparch"))
    result, rows = run_json("list", "--json", "--spec-dir", specs, "--plugin-dir", plugins)
    assert result.returncode == 1 and result.seconds < QUICK
    by_arch = {row["arch"]: row for row in rows}
    assert "named pipe" in by_arch["fifo.archs"]["problems"][0]
    assert "character device" in by_arch["zero.archs"]["problems"][0]
    assert by_arch["looparch"]["state"] == "broken"
    assert any("loop.so" in p and "Too many levels of symbolic links" in p for p in by_arch["looparch"]["problems"])
    result = run("list", "--spec-dir", specs, "--plugin-dir", plugins)
    assert result.returncode == 1 and b"loop.so" in result.stdout
    model = gguf_with_arch(tmp_path / "m.gguf", b"fifoarch")
    result, doc = run_json("validate", model, "--json", "--spec-dir", specs, "--plugin-dir", plugins)
    assert result.returncode == 2 and "named pipe" in doc["findings"][0]["message"]


def test_list_json_is_valid_with_invalid_utf8_everywhere(tmp_path: Path):
    specs, plugins = tmp_path / "specs", tmp_path / "plugins"
    specs.mkdir()
    plugins.mkdir()
    (plugins / "bad.archs").write_bytes(b"caf\xe9\n\xff\xfe\x1b[31m\n")
    (specs / os.fsdecode(b"odd\xff.yaml")).write_text(spec_text("odd"))
    # A group name with invalid UTF-8 and ESC, quoted in a problem: the toy plugin runs
    # ffn_gate_up_exps fused, which this copy of its spec renames.
    toy = (TOY_SPECS / "toymoe.yaml").read_bytes().replace(b"ffn_gate_up_exps:", b"\"gate\xff\x1bup\":")
    (specs / "toymoe.yaml").write_bytes(toy)
    result, rows = run_json("list", "--json", "--spec-dir", specs, "--plugin-dir", plugins, "--plugin-dir", test_plugins() / "toy")
    assert result.returncode == 1
    by_arch = {row["arch"]: row for row in rows}
    assert {"caf\\xe9", "\\xff\\xfe\x1b[31m", "odd\\xff"} <= set(by_arch)
    assert by_arch["toymoe"]["state"] == "broken"
    assert any("gate\\xff\x1bup" in p for p in by_arch["toymoe"]["problems"]), by_arch["toymoe"]
    text = run("list", "--spec-dir", specs, "--plugin-dir", plugins, "--plugin-dir", test_plugins() / "toy")
    assert b"\x1b" not in text.stdout and b"\xff" not in text.stdout and b"gate\\xff\\x1bup" in text.stdout


def test_spec_directories_are_deduplicated_and_user_specs_override_the_builtin_ones(tmp_path: Path):
    rows = {row["arch"]: row for row in run_json("list", "--json", "--spec-dir", ARCH_SPECS)[1]}
    assert rows["llama"]["state"] != "broken" and rows["llama"]["shadowed_specs"] == []
    link = tmp_path / "link"
    link.symlink_to(ARCH_SPECS)
    rows = {row["arch"]: row for row in run_json("list", "--json", "--spec-dir", link, "--spec-dir", str(ARCH_SPECS) + "/.")[1]}
    assert all("claimed by" not in p for row in rows.values() for p in row["problems"])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "llama.yaml").write_text((ARCH_SPECS / "llama.yaml").read_text())
    rows = {row["arch"]: row for row in run_json("list", "--json", "--spec-dir", mine)[1]}
    assert rows["llama"]["spec"] == str(mine / "llama.yaml")
    assert [Path(p).resolve() for p in rows["llama"]["shadowed_specs"]] == [(ARCH_SPECS / "llama.yaml").resolve()]
    text = run("list", "--spec-dir", mine).stdout.decode()
    assert f"shadows {ARCH_SPECS / 'llama.yaml'}" in text or "shadows " in text


@pytest.mark.parametrize("arch", [b"x\x1b[2J\x1b[31mred", b"nul\x00byte", b"new\nline", b"del\x7f", b"bad\xff\xfe", b"rtl\xe2\x80\xaeevil"])
def test_validate_escapes_strings_from_the_file(arch: bytes, tmp_path: Path):
    model = gguf_with_arch(tmp_path / "m.gguf", arch)
    text = run("validate", model)
    assert text.returncode == 1
    for raw in (b"\x1b", b"\x00", b"\x7f", b"\xff", b"\xe2\x80\xae"):
        assert raw not in text.stdout and raw not in text.stderr
    assert text.stdout.count(b"\n") == 2  # the summary and the one unknown_arch finding
    result, doc = run_json("validate", model, "--json")
    assert result.returncode == 1 and doc["findings"][0]["code"] == "unknown_arch"
    inspected = run("inspect", model)
    assert b"\x1b" not in inspected.stdout and b"\xff" not in inspected.stdout and b"\x7f" not in inspected.stdout


def test_validate_json_is_printed_when_the_plugin_is_broken(tmp_path: Path):
    make_fixtures.write_valid(tmp_path)
    result, doc = run_json("validate", tmp_path / "toymoe.gguf", "--json", "--spec-dir", TOY_SPECS,
                           "--plugin-dir", test_plugins() / "wrong-abi")
    assert result.returncode == 2 and doc["valid"] is False and doc["findings"][0]["code"] == "registry_error"
    assert "archreg-wrong-abi.so" in doc["findings"][0]["message"]


def test_fuse_to_an_empty_name_fails_before_any_work(tmp_path: Path):
    make_fixtures.write_valid(tmp_path)
    result = run("fuse", tmp_path / "toymoe.gguf", "", "--spec-dir", TOY_SPECS, "--plugin-dir", test_plugins() / "toy")
    assert result.returncode == 2 and b"OUT is empty" in result.stderr and result.seconds < QUICK


def test_example_model_help_writes_no_file(tmp_path: Path):
    example = os.environ.get("ARCHREG_EXAMPLE_MODEL")
    if not example:
        pytest.fail("ARCHREG_EXAMPLE_MODEL is not set (ctest sets it)")
    result = subprocess.run([example, "--help"], capture_output=True, text=True, timeout=10, cwd=tmp_path)
    assert result.returncode == 0 and "usage" in result.stdout
    result = subprocess.run([example, "--bogus"], capture_output=True, text=True, timeout=10, cwd=tmp_path)
    assert result.returncode == 1
    assert list(tmp_path.iterdir()) == []
