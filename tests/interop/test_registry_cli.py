"""`archreg list` and the plugin directories, end to end through the command line.

The toy MoE architecture exists only as tests/fixtures/toy-specs/toymoe.yaml and the plugin
built from tests/plugins/toymoe.cpp into <build>/tests/plugins/toy: given on the command line,
they make a new runnable architecture without any change to archreg itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOY_SPECS = REPO / "tests" / "fixtures" / "toy-specs"
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_fixtures  # noqa: E402
import make_runtime_models  # noqa: E402
from binaries import archreg, test_plugins  # noqa: E402


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([archreg(), *map(str, args)], capture_output=True, text=True, timeout=60)


def listing(*args: str | Path) -> dict[str, dict]:
    result = run("list", "--json", *args)
    assert result.returncode in (0, 1), result.stderr
    return {row["arch"]: row for row in json.loads(result.stdout)}


def _with_bases(spec: Path) -> str:
    """A spec's text followed by the texts of the bases it extends (docs/spec-format.md)."""
    text = spec.read_text()
    found = re.search(r"^extends:\s*(\S+)", text, re.MULTILINE)
    return text + (_with_bases(spec.parent / found.group(1)) if found else "")


def test_builtin_architectures_are_runnable():
    """Every spec in arch-specs/ is listed with a plugin; those with a runtime test model
    (make_runtime_models.MODELS) run, the others are validate-only."""
    rows = listing()
    archs = sorted(p.stem for p in (REPO / "arch-specs").glob("*.yaml"))
    runnable = {arch for arch, _, _ in make_runtime_models.MODELS.values()}
    assert runnable <= set(archs)
    for arch in archs:
        assert rows[arch]["state"] == ("runnable" if arch in runnable else "validate-only"), rows[arch]
        assert rows[arch]["spec"].endswith(f"arch-specs/{arch}.yaml")
        assert rows[arch]["plugin"].endswith(".so")
        # an arch with gated experts runs them fused (every plugin here does)
        spec_text = _with_bases(REPO / "arch-specs" / f"{arch}.yaml")
        declares_gate_exps = re.search(r"^\s+ffn_gate_exps:\s*(?!~)", spec_text, re.MULTILINE) is not None
        assert ("ffn_gate_up_exps" in rows[arch]["fused"]) == declares_gate_exps, rows[arch]
    assert rows["qwen2moe"]["plugin"] == rows["qwen3moe"]["plugin"]  # one plugin, two archs
    assert rows["granite"]["plugin"] == rows["granitemoe"]["plugin"]
    assert rows["deepseek2"]["fused"] == ["ffn_gate_up_exps"]  # MLA: no attn_qkv


def test_toy_arch_is_validate_only_with_a_spec_and_runnable_with_its_plugin():
    assert "toymoe" not in listing()
    assert listing("--spec-dir", TOY_SPECS)["toymoe"]["state"] == "validate-only"
    row = listing("--spec-dir", TOY_SPECS, "--plugin-dir", test_plugins() / "toy")["toymoe"]
    assert row["state"] == "runnable"
    assert row["fused"] == ["ffn_gate_up_exps"]
    assert Path(row["plugin"]).name == "archreg-toymoe.so"
    text = run("list", "--spec-dir", TOY_SPECS, "--plugin-dir", test_plugins() / "toy")
    assert text.returncode == 0
    assert any(line.split()[:2] == ["toymoe", "runnable"] for line in text.stdout.splitlines())


@pytest.mark.parametrize(
    "case, message",
    [
        ("wrong-abi", "plugin ABI version 999, but this archreg speaks version 2"),
        ("no-entry", "exports no 'archreg_plugin' entry point"),
        ("throwing", "threw while registering: registration exploded"),
        ("mismatch", "serves [otherarch]"),
        ("garbage", "cannot open the plugin"),
    ],
)
def test_broken_plugins_are_listed_as_broken_naming_the_file(case: str, message: str):
    result = run("list", "--json", "--spec-dir", TOY_SPECS, "--plugin-dir", test_plugins() / case)
    assert result.returncode == 1
    row = {r["arch"]: r for r in json.loads(result.stdout)}["toymoe"]
    assert row["state"] == "broken"
    assert any(message in p and f"archreg-{case}.so" in p for p in row["problems"]), row["problems"]


def test_plugin_without_spec_and_duplicate_plugins_are_broken(tmp_path: Path):
    rows = listing("--plugin-dir", test_plugins() / "ghost")
    assert rows["ghostarch"]["state"] == "broken"
    assert "no spec describes it" in rows["ghostarch"]["problems"][0]
    # Two plugins for one arch in one directory are ambiguous ...
    for plugin_dir in (test_plugins() / "toy", test_plugins() / "duplicate"):
        for file in plugin_dir.glob("archreg-*"):
            (tmp_path / file.name).symlink_to(file)
    rows = listing("--spec-dir", TOY_SPECS, "--plugin-dir", tmp_path)
    assert rows["toymoe"]["state"] == "broken"
    assert "claimed by 2 plugins" in rows["toymoe"]["problems"][0]
    # ... in two directories the first one wins, and the listing names the one it shadows.
    rows = listing("--spec-dir", TOY_SPECS, "--plugin-dir", test_plugins() / "toy", "--plugin-dir", test_plugins() / "duplicate")
    assert rows["toymoe"]["state"] != "broken"
    assert Path(rows["toymoe"]["plugin"]).name == "archreg-toymoe.so"
    assert [Path(p).name for p in rows["toymoe"]["shadowed_plugins"]] == ["archreg-toymoe-again.so"]


def test_validate_uses_the_plugin_and_fails_loudly_when_it_is_broken(tmp_path: Path):
    make_fixtures.write_valid(tmp_path)
    toy, fused = tmp_path / "toymoe.gguf", tmp_path / "toymoe.fused.gguf"
    assert run("validate", toy, "--spec-dir", TOY_SPECS, "--plugin-dir", test_plugins() / "toy").returncode == 0
    # The toy plugin runs gate+up fused but not Q/K/V: the fused file is refused for it.
    result = run("validate", fused, "--json", "--spec-dir", TOY_SPECS, "--plugin-dir", test_plugins() / "toy")
    assert result.returncode == 1
    assert [(f["code"], f["subject"]) for f in json.loads(result.stdout)["findings"]] == [("unsupported_fusion", "attn_qkv")]
    # Without a plugin the same file is a valid (validate-only) toymoe file.
    assert run("validate", fused, "--spec-dir", TOY_SPECS).returncode == 0
    # A plugin that cannot be opened is an environment error: exit 2, the file named, no verdict.
    result = run("validate", toy, "--spec-dir", TOY_SPECS, "--plugin-dir", test_plugins() / "wrong-abi")
    assert result.returncode == 2
    assert "archreg-wrong-abi.so" in result.stderr
