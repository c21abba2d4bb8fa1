"""`archreg validate` against fixtures written by gguf-py from an independent description of each
architecture (tests/fixtures/reference_models.py, written from llama.cpp's loaders).

- every architecture's unfused and fused fixture validates clean and every fusable group is
  reported in the expected state, with the expected layers;
- every mutant (tests/fixtures/make_fixtures.py) gives exactly its expected finding codes (and,
  where the subject is unambiguous, the expected subjects) and exit status 1;
- the toy architecture validates with --spec-dir tests/fixtures/toy-specs and is an unknown
  architecture without it: adding an architecture needs a spec file and nothing else;
- with llama-cpp-python installed (scripts/bootstrap.sh --llama), llama.cpp's own loader agrees:
  every unfused fixture loads, a fused one loads exactly where the spec names llama.cpp as a
  consumer of every fused group (and then gives the same logits as the unfused file), and each
  mutant is loaded or rejected as its manifest entry says (the few files llama.cpp loads but
  archreg rejects are deliberate and noted in make_fixtures.py).

The archreg binary comes from $ARCHREG_CLI (set by tests/interop/CMakeLists.txt; $ARCHREG_BIN is
accepted too), else build/dev/core/archreg.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES_SRC = REPO / "tests" / "fixtures"
TOY_SPECS = FIXTURES_SRC / "toy-specs"
ARCH_SPECS = REPO / "arch-specs"

sys.path.insert(0, str(FIXTURES_SRC))
import make_fixtures  # noqa: E402
from binaries import LLAMA_PROBE, archreg, require_llama_cpp  # noqa: E402
import reference_models as rm  # noqa: E402

EXIT_OK, EXIT_INVALID = 0, 1
FINDING_KEYS = {"code", "subject", "message", "expected", "found"}
GROUP_STATES = {"fused", "unfused", "mixed", "both", "absent"}

FAMILIES = list(rm.SMALL)
MUTANTS = [m.name for m in make_fixtures.mutants()]


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    """All fixtures and mutants, written once per session; manifest entries by file name."""
    out = tmp_path_factory.mktemp("archreg-fixtures")
    make_fixtures.main(["--all", str(out)])
    entries: dict[str, list[dict]] = {}
    for manifest in ("fixtures.json", "mutants.json"):
        for entry in json.loads((out / manifest).read_text()):
            entries.setdefault(entry["file"], []).append(entry)
    return out, entries


def _validate(path: Path, spec_dir: Path | None = None) -> tuple[int, dict, str]:
    cmd = [archreg(), "validate", str(path), "--json"]
    if spec_dir is not None:
        cmd += ["--spec-dir", str(spec_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    where = f"{' '.join(cmd)}\nexit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as error:
        pytest.fail(f"validate did not print JSON ({error}):\n{where}")
    return proc.returncode, report, where


def _check_schema(report: dict, path: Path, where: str) -> None:
    assert {"file", "arch", "valid", "findings", "groups"} <= set(report), where
    assert isinstance(report["valid"], bool), where
    assert Path(report["file"]).name == path.name, where
    for finding in report["findings"]:
        assert FINDING_KEYS <= set(finding), where
        assert isinstance(finding["code"], str) and finding["code"], where
        assert isinstance(finding["message"], str) and finding["message"], where
    for group in report["groups"]:
        assert group["state"] in GROUP_STATES, where
        assert {"fused", "unfused"} <= set(group["layers"]), where


def _check_expectation(entry: dict, path: Path, spec_dir: Path | None) -> None:
    rc, report, where = _validate(path, spec_dir)
    _check_schema(report, path, where)
    expect = entry["expect"]
    codes = sorted({f["code"] for f in report["findings"]})
    assert codes == expect["codes"], where
    assert report["valid"] is expect["valid"], where
    assert rc == (EXIT_OK if expect["valid"] else EXIT_INVALID), where
    if expect["subjects"] is not None:
        assert sorted({f["subject"] for f in report["findings"]}) == expect["subjects"], where
    if expect["valid"]:
        assert report["arch"] == entry["arch"], where
    if expect["groups"] is not None:
        got = {g["name"]: g for g in report["groups"]}
        assert set(got) == set(expect["groups"]), where
        for name, want in expect["groups"].items():
            assert got[name]["state"] == want["state"], f"group {name}\n{where}"
            assert sorted(got[name]["layers"]["fused"]) == want["fused"], f"group {name}\n{where}"
            assert sorted(got[name]["layers"]["unfused"]) == want["unfused"], f"group {name}\n{where}"
            assert sorted(got[name]["layers"].get("both", [])) == want["both"], f"group {name}\n{where}"


def _entry(entries: dict[str, list[dict]], file: str, *, spec_dir: str | None) -> dict:
    matches = [e for e in entries[file] if e["spec_dir"] == spec_dir]
    assert len(matches) == 1, (file, spec_dir)
    return matches[0]


def test_inspect_groups_tensors_by_their_spec_role(fixtures) -> None:
    """inspect names each tensor's role from the arch's spec (a fused tensor has its parts'
    role) and totals them per role; a tensor the spec lacks has none."""
    out, _ = fixtures
    doc = json.loads(subprocess.run([archreg(), "inspect", "--json", str(out / "qwen3moe-expert-sidecars.gguf")],
                                    capture_output=True, text=True, check=True, timeout=60).stdout)
    role = {t["name"]: t["role"] for t in doc["tensors"]}
    assert role["token_embd.weight"] == "embedding" and role["output_norm.weight"] == "norm"
    assert role["blk.0.attn_q.weight"] == role["blk.0.ffn_gate_inp.weight"] == "matrix"
    assert role["blk.0.ffn_up_exps.weight"] == "experts" and role["blk.0.ffn_up_exps.scale"] == "scale"
    totals = {t["role"]: t["count"] for t in doc["totals_by_role"]}
    assert sum(totals.values()) == len(doc["tensors"]) and totals["scale"] == 2, totals
    fused = json.loads(subprocess.run([archreg(), "inspect", "--json", str(out / "qwen3moe.fused.gguf")],
                                      capture_output=True, text=True, check=True, timeout=60).stdout)
    role = {t["name"]: t["role"] for t in fused["tensors"]}
    assert role["blk.1.attn_qkv.weight"] == "matrix" and role["blk.1.ffn_gate_up_exps.weight"] == "experts"
    extra = json.loads(subprocess.run([archreg(), "inspect", "--json", str(out / "qwen3moe-unexpected-tensor.gguf")],
                                      capture_output=True, text=True, check=True, timeout=60).stdout)
    assert {t["name"]: t["role"] for t in extra["tensors"]}["blk.0.attn_extra.weight"] is None
    assert {t["role"]: t["count"] for t in extra["totals_by_role"]}["unknown"] == 1


@pytest.mark.parametrize("file, refusal", [
    ("glm4moe-mtp-only.gguf", "needs layer 0 (attn_norm.weight), which the file leaves out"),
    ("deepseek2-nextn-mtp-only.gguf", "needs layer 0 (attn_norm.weight), which the file leaves out"),
    ("glm4moe-trunk-only.gguf", None),
])
def test_run_refuses_a_valid_file_only_where_it_cannot_compute_it(fixtures, file: str, refusal: str | None) -> None:
    """Files that validate but leave out layers the forward pass needs (MTP-only): `run` refuses
    them naming the layer, before any token (a trunk-only file, whose left-out NextN block the
    forward pass never reads, runs)."""
    out, _ = fixtures
    cmd = [archreg(), "run", str(out / file), "--tokens", "1,2,3", "-n", "1", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    where = f"{' '.join(cmd)}\nexit {proc.returncode}\nstderr:\n{proc.stderr}"
    if refusal is None:
        assert proc.returncode == EXIT_OK, where
    else:
        assert proc.returncode != EXIT_OK and refusal in proc.stderr and "forward pass cannot run this file" in proc.stderr, where
        assert "Traceback" not in proc.stderr and proc.returncode > 0, where


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("family", FAMILIES)
def test_fixture_validates_clean(fixtures, family: str, fused: bool) -> None:
    out, entries = fixtures
    file = f"{family}{'.fused' if fused else ''}.gguf"
    toy = rm.SMALL[family][0] == "toymoe"
    entry = _entry(entries, file, spec_dir="toy" if toy else None)
    assert entry["expect"]["valid"] and not entry["expect"]["codes"]
    states = {g["state"] for g in entry["expect"]["groups"].values()}
    assert states <= ({"fused", "absent"} if fused else {"unfused", "absent"})
    _check_expectation(entry, out / file, TOY_SPECS if toy else None)


@pytest.mark.parametrize("mutant", MUTANTS)
def test_mutant_findings(fixtures, mutant: str) -> None:
    out, entries = fixtures
    file = f"{mutant}.gguf"
    _check_expectation(_entry(entries, file, spec_dir=None), out / file, None)


def test_toy_arch_unknown_without_its_spec_dir(fixtures) -> None:
    out, entries = fixtures
    entry = _entry(entries, "toymoe.gguf", spec_dir=None)
    assert entry["expect"]["codes"] == ["unknown_arch"]
    _check_expectation(entry, out / "toymoe.gguf", None)
    # and with it, clean (also covered by test_fixture_validates_clean)
    rc, report, where = _validate(out / "toymoe.gguf", TOY_SPECS)
    assert rc == EXIT_OK and report["valid"] and report["arch"] == "toymoe", where


def test_shipped_specs_pass_spec_check() -> None:
    specs = sorted(ARCH_SPECS.glob("*.yaml")) + sorted(TOY_SPECS.glob("*.yaml"))
    assert {p.stem for p in ARCH_SPECS.glob("*.yaml")} >= set(rm.FUSABLE) - {"toymoe"}
    proc = subprocess.run([archreg(), "spec", "check", *map(str, specs)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_OK, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


# --- checks of the fixtures themselves (gguf-py only, no archreg) -----------------------------


@pytest.mark.parametrize("arch", sorted(rm.FUSABLE))
def test_spec_groups_match_reference(arch: str) -> None:
    """Each spec declares the reference's fusable groups (parts, order, axis), and names llama.cpp
    as a consumer exactly where llama.cpp loads the fused form (verified by the llama.cpp tests
    below against the reference)."""
    import yaml

    def fusable(path: Path) -> dict:
        """The spec's fusable groups after `extends` (docs/spec-format.md): by name, a nearer
        file's entry replacing the base's, `~` removing it."""
        spec = yaml.safe_load(path.read_text())
        merged = fusable(path.parent / spec["extends"]) if "extends" in spec else {}
        for name, group in (spec.get("fusable") or {}).items():
            if group is None:
                merged.pop(name)
            else:
                merged[name] = group
        return merged

    path = (TOY_SPECS if arch == "toymoe" else ARCH_SPECS) / f"{arch}.yaml"
    declared = fusable(path)
    assert set(declared) == {g.name for g in rm.FUSABLE[arch]}, path
    for g in rm.FUSABLE[arch]:
        assert tuple(declared[g.name]["parts"]) == g.parts, (path, g.name)
        assert declared[g.name]["axis"] == g.axis, (path, g.name)
        assert ("llama.cpp" in declared[g.name].get("consumers", [])) == g.llama_cpp_loads_fused, (path, g.name)



@pytest.mark.parametrize("family", FAMILIES)
def test_fixtures_read_back_and_fuse_by_concatenation(fixtures, family: str) -> None:
    """The files hold what reference_models describes, and each fused tensor is the byte
    concatenation of its parts along the group axis (per expert: gate rows, then up rows)."""
    from gguf import GGUFReader

    out, _ = fixtures
    arch, hp = rm.SMALL[family]
    _, expected = rm.ARCHS[arch](dict(hp))
    unfused = {t.name: t for t in GGUFReader(str(out / f"{family}.gguf")).tensors}
    fused = {t.name: t for t in GGUFReader(str(out / f"{family}.fused.gguf")).tensors}
    assert {n: tuple(int(x) for x in t.shape) for n, t in unfused.items()} == dict(expected)
    for name, t in fused.items():
        parsed = make_fixtures.LAYER_RE.match(name)
        group = next((g for g in rm.FUSABLE[arch] if parsed and parsed.group(2) == g.name), None)
        if group is None:
            assert np.array_equal(t.data, unfused[name].data), name
            continue
        il, suffix = parsed.group(1), parsed.group(3)
        parts = [unfused[f"blk.{il}.{p}.{suffix}"] for p in group.parts]
        assert all(p.tensor_type == t.tensor_type for p in parts), name
        axis = group.axis - (len(unfused[f"blk.{il}.{group.parts[0]}.weight"].shape) - len(t.shape))
        assert int(t.shape[axis]) == sum(int(p.shape[axis]) for p in parts), name
        raw = [np.asarray(p.data).view(np.uint8).reshape(tuple(int(x) for x in reversed(p.shape[1:])) + (-1,)) for p in parts]
        joined = np.concatenate(raw, axis=len(t.shape) - 1 - axis)
        assert np.array_equal(np.asarray(t.data).view(np.uint8).reshape(joined.shape), joined), name
    for path in out.glob("*.gguf"):
        assert path.stat().st_size < make_fixtures.MAX_FILE_BYTES, path.name


# --- llama.cpp as the reference loader (llama-cpp-python) -----------------------------------


_llama_results: dict[str, tuple[str, list | None, str]] = {}


def _llama_cpp(path: Path) -> tuple[str, list | None, str]:
    """("loads", logits, "") or ("rejects", None, stderr tail). A load error and an abort in
    llama.cpp (GGML_ASSERT while loading or at the first decode) both count as rejecting."""
    key = str(path)
    if key not in _llama_results:
        proc = subprocess.run([sys.executable, str(LLAMA_PROBE), key], capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            _llama_results[key] = ("loads", json.loads(proc.stdout.strip().splitlines()[-1]), "")
        else:
            _llama_results[key] = ("rejects", None, f"exit {proc.returncode}: {proc.stderr[-1500:]}")
    return _llama_results[key]


@pytest.fixture(scope="session")
def llama_cpp_module():
    return require_llama_cpp()


LLAMA_FILES = [f"{f}{s}.gguf" for f in FAMILIES if rm.SMALL[f][0] != "toymoe" for s in ("", ".fused")] + [f"{m}.gguf" for m in MUTANTS]


@pytest.mark.parametrize("file", LLAMA_FILES)
def test_llama_cpp_loader_agrees(fixtures, llama_cpp_module, file: str) -> None:
    out, entries = fixtures
    entry = _entry(entries, file, spec_dir=None)
    want = entry["expect"]["llama_cpp"]
    assert want in ("loads", "rejects"), entry
    got, _, why = _llama_cpp(out / file)
    assert got == want, f"llama.cpp {got} {file} (manifest: {want}; {entry['note']})\n{why}"


@pytest.mark.parametrize("file", ["qwen3-nvfp4-sidecars.gguf", "qwen3moe-expert-sidecars.gguf"])
def test_per_matrix_scales_give_llama_cpps_logits(fixtures, llama_cpp_module, file: str, tmp_path: Path) -> None:
    """`.scale` sidecars multiply their weight's product (matmul, dense FFN and per expert), as
    llama.cpp's graphs do; `.input_scale` is read and unused by both. The logits of the 4-token
    probe prompt agree with llama.cpp's as closely as the plain fixture's do."""
    out, _ = fixtures
    got, logits, why = _llama_cpp(out / file)
    assert got == "loads", why
    plain = out / f"{file.split('-')[0]}.gguf"
    _, plain_logits, _ = _llama_cpp(plain)
    ours = {}
    for path in (out / file, plain):
        dump = tmp_path / f"{path.stem}.npy"
        cmd = [archreg(), "run", str(path), "--tokens", "1,5,6,7", "-n", "0", "--threads", "1", "--dump-logits", str(dump)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == EXIT_OK, f"{' '.join(cmd)}\n{proc.stderr}"
        ours[path] = np.load(dump)
    reference, plain_reference = np.asarray(logits), np.asarray(plain_logits)
    assert not np.allclose(reference, plain_reference, rtol=1e-3, atol=1e-4), "the scales change nothing: a test that cannot fail"
    error = np.abs(ours[out / file] - reference).max() / np.ptp(reference)
    plain_error = np.abs(ours[plain] - plain_reference).max() / np.ptp(plain_reference)
    assert error <= max(2 * plain_error, 1e-5), (error, plain_error)
    assert (ours[out / file].argmax(-1) == reference.argmax(-1)).all()


def _llama_cpp_runs_fused(family: str) -> bool:
    """Whether llama.cpp has a fused form for every group that occurs in the family's fixture."""
    arch, hp = rm.SMALL[family]
    if arch == "toymoe":
        return False
    _, tensors = rm.ARCHS[arch](dict(hp))
    names = {name for name, _ in tensors}
    occurs = lambda g: any(n.endswith(f".{g.parts[0]}.weight") for n in names)  # noqa: E731
    return all(g.llama_cpp_loads_fused for g in rm.FUSABLE[arch] if occurs(g))


@pytest.mark.parametrize("family", [f for f in FAMILIES if _llama_cpp_runs_fused(f)])
def test_llama_cpp_fused_and_unfused_agree(fixtures, llama_cpp_module, family: str) -> None:
    out, _ = fixtures
    unfused, unfused_logits, why = _llama_cpp(out / f"{family}.gguf")
    fused, fused_logits, why_fused = _llama_cpp(out / f"{family}.fused.gguf")
    assert unfused == "loads", why
    assert fused == "loads", why_fused
    assert np.allclose(np.asarray(fused_logits), np.asarray(unfused_logits), rtol=1e-4, atol=1e-5)
