"""`archreg fuse` and `archreg unfuse` checked against independent peers.

The inputs are the gguf-py fixtures of tests/fixtures/make_fixtures.py (every architecture, an
unfused `<family>.gguf` and an independently fused `<family>.fused.gguf`), plus a few written
here with gguf-py for what those lack (Q6_K and Q4_0 in fused groups, parts stored in different
types, a custom alignment, groups whose parts lie next to each other, multi-GiB sparse inputs).
Everything is read back with gguf-py and compared byte for byte:

- fuse: exit 0, the output validates with every rewritten group "fused", holds the expected
  tensors (names, ggml types, shapes, file order: a fused tensor where its first part was), each
  fused tensor is byte-identical to the same tensor in `<family>.fused.gguf` and to the numpy
  concatenation of its parts along the group's ggml axis; every other tensor and every metadata
  entry is unchanged;
- unfuse restores every part byte for byte (of archreg's output and of gguf-py's fused file);
  unfuse(fuse(x)) == x as whole files whatever x's tensor order (fuse records an order unfuse
  would not restore by itself in `archreg.unfused_tensor_order`, which unfuse consumes): for
  every fixture, shuffled fixtures and the real SmolLM2 file (same sha256 as published);
- --group and --for select groups; every refusal exits 1 (2 for an unreadable input) with a
  specific message and leaves neither OUT nor a temporary file;
- SIGINT/SIGTERM while writing exits 130 and leaves nothing, SIGKILL leaves nothing, a write
  failure (RLIMIT_FSIZE) exits 1 with a clear message and leaves nothing;
- llama.cpp (llama-cpp-python, the real consumer) loads files fused BY ARCHREG and gives the same
  logits as the unfused files, bit for bit.

The archreg binary comes from $ARCHREG_CLI (set by tests/interop/CMakeLists.txt; $ARCHREG_BIN is
accepted too), else build/dev/core/archreg. The test plugins (the toy MoE plugin) come from
$ARCHREG_TEST_PLUGINS, else <build>/tests/plugins beside the binary's build directory.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf import GGUFReader, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES

REPO = Path(__file__).resolve().parents[2]
FIXTURES_SRC = REPO / "tests" / "fixtures"
TOY_SPECS = FIXTURES_SRC / "toy-specs"

sys.path.insert(0, str(FIXTURES_SRC))
import make_fixtures as mf  # noqa: E402
from binaries import LLAMA_PROBE, archreg, require_llama_cpp, test_plugins  # noqa: E402
import reference_models as rm  # noqa: E402

EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
TIMEOUT = 120


# --- binaries --------------------------------------------------------------------------------


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    cmd = [archreg(), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def _where(proc: subprocess.CompletedProcess) -> str:
    return f"{' '.join(map(str, proc.args))}\nexit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == EXIT_OK, _where(proc)
    return proc


def _validate(path: Path, *registry: str) -> dict:
    proc = _run("validate", path, "--json", *registry)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as error:
        pytest.fail(f"validate did not print JSON ({error}):\n{_where(proc)}")
    assert proc.returncode == EXIT_OK and report["valid"] and not report["findings"], _where(proc)
    return report


def _group_states(report: dict) -> dict[str, str]:
    return {g["name"]: g["state"] for g in report["groups"]}


# --- cases: every fixture family, plus inputs gguf-py writes here -----------------------------


def _retype(model: mf.Model, pattern: str, qtype: QT) -> mf.Model:
    """The same model with the tensors matching `pattern` stored (fresh data) as `qtype`."""
    for name, t in list(model.tensors.items()):
        if re.search(pattern, name):
            model.tensors[name] = mf.new_tensor("extra", name, t.shape, qtype)
    return model


def _q6k_model() -> mf.Model:
    """qwen3moe with Q6_K gate/up experts and Q4_0 Q/K/V: types no other fixture fuses."""
    model = _retype(mf.build("qwen3moe"), r"ffn_(gate|up)_exps\.weight$", QT.Q6_K)
    return _retype(model, r"attn_[qkv]\.weight$", QT.Q4_0)


def _mixed_types_model() -> mf.Model:
    """qwen3moe whose attn_v is Q6_K while attn_q and attn_k are Q4_K (valid, but not fusable
    losslessly); the experts are uniform."""
    model = _retype(mf.build("qwen3moe"), r"attn_[qk]\.weight$", QT.Q4_K)
    return _retype(model, r"attn_v\.weight$", QT.Q6_K)


# family -> (arch, model builder)
CASES: dict[str, tuple[str, Callable[[], mf.Model]]] = {
    family: (arch, (lambda family=family: mf.build(family))) for family, (arch, _) in rm.SMALL.items()
}
CASES["qwen3moe-q6k"] = ("qwen3moe", _q6k_model)
FAMILIES = list(CASES)
# What the plugins run fused (plugins/*/plugin.cpp, tests/plugins/toymoe.cpp): everything the
# spec declares, except the toy plugin, which runs only the gate+up experts fused.
PLUGIN_FUSES = {arch: {g.name for g in groups} for arch, groups in rm.FUSABLE.items()}
PLUGIN_FUSES["toymoe"] = {"ffn_gate_up_exps"}


def _registry_args(arch: str) -> list[str]:
    if arch == "toymoe":
        return ["--spec-dir", str(TOY_SPECS), "--plugin-dir", str(test_plugins() / "toy")]
    return []


def _occurring_groups(arch: str, model: mf.Model) -> list[rm.Group]:
    return [g for g in rm.FUSABLE[arch] if any(n.endswith(f".{g.parts[0]}.weight") for n in model.tensors)]


def _write_model(path: Path, model: mf.Model, alignment: int | None = None) -> Path:
    mf.write_gguf(path, model, alignment)
    return path


def _adjacent(model: mf.Model, arch: str) -> mf.Model:
    """The same model with each group's parts stored next to each other, in part order, where the
    first of them was."""
    slots: dict[str, list[str]] = {}  # first part name -> all part names in order
    member: set[str] = set()
    for name in model.tensors:
        parsed = mf.LAYER_RE.match(name)
        if not parsed:
            continue
        il, base, suffix = parsed.groups()
        for g in rm.FUSABLE[arch]:
            names = [f"blk.{il}.{p}.{suffix}" for p in g.parts]
            if base in g.parts and all(n in model.tensors for n in names) and name not in member:
                slots[name] = names
                member.update(names)
    order: list[str] = []
    for name in model.tensors:
        if name in slots:
            order += slots[name]
        elif name not in member:
            order.append(name)
    assert sorted(order) == sorted(model.tensors)
    return mf.Model(model.arch, list(model.metadata), {n: model.tensors[n] for n in order})


def _parts_adjacent(model: mf.Model, arch: str) -> bool:
    names = list(model.tensors)
    return names == list(_adjacent(model, arch).tensors)


@pytest.fixture(scope="session")
def fx(tmp_path_factory) -> Path:
    """The make_fixtures files (valid fixtures and mutants) and the extra inputs of this file."""
    out = tmp_path_factory.mktemp("fuse-fixtures")
    mf.main(["--all", str(out)])
    for family in FAMILIES:
        arch, build = CASES[family]
        model = build()
        if not (out / f"{family}.gguf").exists():
            _write_model(out / f"{family}.gguf", model)
            _write_model(out / f"{family}.fused.gguf", mf.fuse(model, rm.FUSABLE[arch]))
        _write_model(out / f"{family}.adjacent.gguf", _adjacent(model, arch))
    _write_model(out / "qwen3moe-mixed-types.gguf", _mixed_types_model())
    _write_model(out / "qwen3moe-align64.gguf", mf.build("qwen3moe"), alignment=64)
    _write_model(out / "qwen3moe-align64.fused.gguf", mf.fuse(mf.build("qwen3moe"), rm.FUSABLE["qwen3moe"]), alignment=64)
    return out


# --- reading GGUF files with gguf-py ----------------------------------------------------------


@dataclass
class Stored:
    type: int
    shape: tuple[int, ...]  # ggml order
    data: bytes


@dataclass
class File:
    path: Path
    alignment: int
    metadata: list[tuple[str, tuple[int, ...], bytes]]  # key, value types, raw bytes
    order: list[str]
    tensors: dict[str, Stored]


def _read(path: Path) -> File:
    reader = GGUFReader(str(path))
    raw = path.read_bytes()
    metadata = []
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):  # the header counts, not entries
            continue
        data = b"".join(np.ascontiguousarray(part).tobytes() for part in field.parts)
        metadata.append((field.name, tuple(int(t) for t in field.types), data))
    tensors: dict[str, Stored] = {}
    for t in reader.tensors:
        assert t.data_offset % reader.alignment == 0, f"{path.name}: {t.name} at {t.data_offset}"
        end = t.data_offset + int(t.n_bytes)
        assert end <= len(raw), f"{path.name}: {t.name} runs past the end"
        tensors[t.name] = Stored(int(t.tensor_type), tuple(int(x) for x in t.shape), raw[t.data_offset:end])
    return File(path, int(reader.alignment), metadata, [t.name for t in reader.tensors], tensors)


def _model_tensors(model: mf.Model) -> dict[str, Stored]:
    return {n: Stored(int(t.qtype), tuple(t.shape), t.data.tobytes()) for n, t in model.tensors.items()}


def _concat(parts: list[Stored], axis: int) -> bytes:
    """Parts concatenated along ggml axis `axis` with numpy (numpy axes run the other way; the
    innermost numpy axis is the row's bytes)."""
    ndim = len(parts[0].shape)
    arrays = [np.frombuffer(p.data, np.uint8).reshape(tuple(reversed(p.shape[1:])) + (-1,)) for p in parts]
    return np.concatenate(arrays, axis=ndim - 1 - axis).tobytes()


def _fused_parts(name: str, arch: str, source: File) -> tuple[rm.Group, list[str], int] | None:
    """For a fused tensor name: its group, its parts' names and the axis of this suffix."""
    parsed = mf.LAYER_RE.match(name)
    group = next((g for g in rm.FUSABLE[arch] if parsed and parsed.group(2) == g.name), None)
    if group is None:
        return None
    il, suffix = parsed.group(1), parsed.group(3)
    parts = [f"blk.{il}.{p}.{suffix}" for p in group.parts]
    w_ndim = len(source.tensors[f"blk.{il}.{group.parts[0]}.weight"].shape)
    return group, parts, group.axis - (w_ndim - len(source.tensors[parts[0]].shape))


def _expected_order(source: File, arch: str, groups: set[str], fuse: bool) -> list[str]:
    """File order after a rewrite: a fused tensor where the first of its parts was; parts, in
    part order, where their fused tensor was."""
    order: list[str] = []
    for name in source.order:
        parsed = mf.LAYER_RE.match(name)
        if parsed:
            il, base, suffix = parsed.groups()
            for g in rm.FUSABLE[arch]:
                if g.name not in groups:
                    continue
                parts = [f"blk.{il}.{p}.{suffix}" for p in g.parts]
                if fuse and base in g.parts and all(p in source.tensors for p in parts):
                    fused = f"blk.{il}.{g.name}.{suffix}"
                    name = None if fused in order else fused
                    break
                if not fuse and base == g.name:
                    order += parts
                    name = None
                    break
        if name is not None:
            order.append(name)
    return order


def _assert_same_tensors(got: dict[str, Stored], want: dict[str, Stored], what: str) -> None:
    assert sorted(got) == sorted(want), f"{what}: tensor names differ"
    for name in want:
        assert (got[name].type, got[name].shape) == (want[name].type, want[name].shape), f"{what}: {name}"
        assert got[name].data == want[name].data, f"{what}: bytes of {name} differ"


def _fuse_ok(src: Path, out: Path, arch: str, *extra: str) -> subprocess.CompletedProcess:
    return _ok(_run("fuse", src, out, *_registry_args(arch), *extra))


def _unfuse_ok(src: Path, out: Path, arch: str, *extra: str) -> subprocess.CompletedProcess:
    return _ok(_run("unfuse", src, out, *_registry_args(arch), *extra))


ORDER_KEY = "archreg.unfused_tensor_order"


def _recorded_order(f: File) -> list[str] | None:
    """The tensor order fuse recorded in the file, if any (read with gguf-py)."""
    field = GGUFReader(str(f.path)).fields.get(ORDER_KEY)
    if field is None:
        return None
    return [field.parts[i].tobytes().decode() for i in field.data]


def _without_order_key(metadata: list) -> list:
    return [m for m in metadata if m[0] != ORDER_KEY]


# --- the fixtures cover the storage types that matter ------------------------------------------


def test_fused_groups_cover_the_storage_types() -> None:
    """Across the cases, fused groups are stored in Q4_K, Q6_K, Q8_0, Q4_0, MXFP4, BF16, F16 and
    F32 (biases)."""
    covered = set()
    for family in FAMILIES:
        arch, build = CASES[family]
        model = build()
        for g in rm.FUSABLE[arch]:
            covered |= {t.qtype for n, t in model.tensors.items() if re.search(rf"\.{g.parts[0]}\.(weight|bias)$", n)}
    want = {QT.Q4_K, QT.Q6_K, QT.Q8_0, QT.Q4_0, QT.MXFP4, QT.BF16, QT.F16, QT.F32}
    assert want <= covered, f"not covered: {sorted(t.name for t in want - covered)}"


# --- fuse, unfuse and round trips, every family -----------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_fuse_matches_independent_fusion(fx: Path, tmp_path: Path, family: str) -> None:
    arch, build = CASES[family]
    model = build()
    groups = [g for g in _occurring_groups(arch, model) if g.name in PLUGIN_FUSES[arch]]
    names = {g.name for g in groups}
    src = fx / f"{family}.gguf"
    fused_path = tmp_path / "fused.gguf"
    proc = _fuse_ok(src, fused_path, arch)
    assert proc.stdout.startswith("fused "), _where(proc)
    for g in groups:
        assert g.name in proc.stdout.splitlines()[0], _where(proc)

    # validates, every rewritten group fused, the others as they were
    states = _group_states(_validate(fused_path, *_registry_args(arch)))
    before = _group_states(_validate(src, *_registry_args(arch)))
    for name, state in states.items():
        assert state == ("fused" if name in names else before[name]), (name, states)

    source, fused, reference = _read(src), _read(fused_path), _read(fx / f"{family}.fused.gguf")
    # the tensors an independent fusion (make_fixtures.fuse, numpy) of the same model holds
    _assert_same_tensors(fused.tensors, _model_tensors(mf.fuse(model, groups)), "fuse vs make_fixtures.fuse")
    assert fused.order == _expected_order(source, arch, names, fuse=True)
    assert _without_order_key(fused.metadata) == source.metadata
    # the order is recorded exactly when unfusing would not restore it by itself
    natural = _expected_order(fused, arch, names, fuse=False)
    assert _recorded_order(fused) == (None if natural == source.order else source.order)
    assert fused.alignment == source.alignment
    n_fused = 0
    for name, t in fused.tensors.items():
        found = _fused_parts(name, arch, source)
        if found is None:
            assert t == source.tensors[name], f"{name} changed"
            continue
        n_fused += 1
        _, parts, axis = found
        # byte-identical to gguf-py's fused file, and to numpy's concatenation of the input's parts
        assert (t.type, t.shape) == (reference.tensors[name].type, reference.tensors[name].shape), name
        assert t.data == reference.tensors[name].data, f"{name} differs from {family}.fused.gguf"
        assert t.data == _concat([source.tensors[p] for p in parts], axis), name
        assert all(source.tensors[p].type == t.type for p in parts), name
    assert n_fused > 0

    # unfuse restores every part byte for byte, where the fused tensor was
    unfused_path = tmp_path / "unfused.gguf"
    proc = _unfuse_ok(fused_path, unfused_path, arch)
    assert proc.stdout.startswith("unfused "), _where(proc)
    states = _group_states(_validate(unfused_path, *_registry_args(arch)))
    assert states == before
    unfused = _read(unfused_path)
    _assert_same_tensors(unfused.tensors, source.tensors, "unfuse(fuse(x)) vs x")
    assert unfused.metadata == source.metadata
    assert unfused.order == source.order
    assert filecmp.cmp(unfused_path, src, shallow=False), "unfuse(fuse(x)) != x"

    # round trips are byte-exact whole files
    refused, reunfused = tmp_path / "refused.gguf", tmp_path / "reunfused.gguf"
    _fuse_ok(unfused_path, refused, arch)
    assert filecmp.cmp(refused, fused_path, shallow=False), "fuse(unfuse(fuse(x))) != fuse(x)"
    _unfuse_ok(refused, reunfused, arch)
    assert filecmp.cmp(reunfused, unfused_path, shallow=False), "unfuse(fuse(y)) != y"


@pytest.mark.parametrize("family", FAMILIES)
def test_unfuse_gguf_py_fused_file(fx: Path, tmp_path: Path, family: str) -> None:
    """unfuse of the file gguf-py fused (every group, even those the toy plugin cannot run)
    gives back the unfused fixture's tensors byte for byte."""
    arch, _ = CASES[family]
    out = tmp_path / "unfused.gguf"
    proc = _unfuse_ok(fx / f"{family}.fused.gguf", out, arch)
    assert proc.stdout.startswith("unfused "), _where(proc)
    assert {s for s in _group_states(_validate(out, *_registry_args(arch))).values()} <= {"unfused", "absent"}
    got, want = _read(out), _read(fx / f"{family}.gguf")
    _assert_same_tensors(got.tensors, want.tensors, "unfuse(gguf-py fused) vs unfused fixture")
    assert got.metadata == want.metadata


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_is_identity_when_parts_are_adjacent(fx: Path, tmp_path: Path, family: str) -> None:
    arch, _ = CASES[family]
    src = fx / f"{family}.adjacent.gguf"
    fused, back = tmp_path / "fused.gguf", tmp_path / "back.gguf"
    _fuse_ok(src, fused, arch)
    _unfuse_ok(fused, back, arch)
    assert filecmp.cmp(back, src, shallow=False), "unfuse(fuse(x)) != x"


def test_custom_alignment_is_kept(fx: Path, tmp_path: Path) -> None:
    src = fx / "qwen3moe-align64.gguf"
    fused, back = tmp_path / "fused.gguf", tmp_path / "back.gguf"
    _fuse_ok(src, fused, "qwen3moe")
    got, want = _read(fused), _read(fx / "qwen3moe-align64.fused.gguf")
    assert got.alignment == 64
    _assert_same_tensors(got.tensors, want.tensors, "fuse with alignment 64")
    assert _without_order_key(got.metadata) == _read(src).metadata
    _unfuse_ok(fused, back, "qwen3moe")
    assert _read(back).alignment == 64
    _assert_same_tensors(_read(back).tensors, _read(src).tensors, "unfuse with alignment 64")


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_is_exact_for_any_tensor_order(fx: Path, tmp_path: Path, family: str) -> None:
    """Real files store tensors in their own order; unfuse(fuse(x)) is still x, byte for byte."""
    arch, build = CASES[family]
    model = build()
    names = list(model.tensors)
    np.random.default_rng(mf._seed("shuffle", family)).shuffle(names)
    src = _write_model(tmp_path / "shuffled.gguf", mf.Model(model.arch, list(model.metadata), {n: model.tensors[n] for n in names}))
    fused, back = tmp_path / "fused.gguf", tmp_path / "back.gguf"
    proc = _fuse_ok(src, fused, arch)
    assert ORDER_KEY in proc.stdout, _where(proc)
    assert _recorded_order(_read(fused)) == names
    _unfuse_ok(fused, back, arch)
    assert filecmp.cmp(back, src, shallow=False), "unfuse(fuse(shuffled x)) != shuffled x"


def test_round_trip_through_partial_rewrites(fx: Path, tmp_path: Path) -> None:
    """Fusing or unfusing one group at a time keeps the recorded order for the last unfuse."""
    model = mf.build("qwen3moe")
    names = list(model.tensors)
    np.random.default_rng(7).shuffle(names)
    src = _write_model(tmp_path / "shuffled.gguf", mf.Model(model.arch, list(model.metadata), {n: model.tensors[n] for n in names}))
    qkv, both, gate_up_only, back = (tmp_path / f"{n}.gguf" for n in ("qkv", "both", "gate-up-only", "back"))
    _fuse_ok(src, qkv, "qwen3moe", "--group", "attn_qkv")
    _fuse_ok(qkv, both, "qwen3moe")  # carries the key over
    assert _recorded_order(_read(both)) == names
    proc = _unfuse_ok(both, gate_up_only, "qwen3moe", "--group", "attn_qkv")
    assert "is kept, not used" in proc.stdout, _where(proc)  # it names tensors still fused here
    assert _recorded_order(_read(gate_up_only)) == names
    _unfuse_ok(gate_up_only, back, "qwen3moe")
    assert filecmp.cmp(back, src, shallow=False)


def _with_order_key(fx: Path, out: Path, vtype, value) -> Path:
    """qwen3moe fused by gguf-py, with an archreg.unfused_tensor_order entry of our choosing."""
    model = mf.fuse(mf.build("qwen3moe"), rm.FUSABLE["qwen3moe"])
    return _write_model(out, mf.Model(model.arch, list(model.metadata) + [(ORDER_KEY, vtype, value)], model.tensors))


def test_a_malformed_recorded_order_is_refused(fx: Path, tmp_path: Path) -> None:
    from gguf import GGUFValueType as VT
    src = _with_order_key(fx, tmp_path / "bad-key.gguf", VT.UINT32, 7)
    out = tmp_path / "out.gguf"
    proc = _run("unfuse", src, out)
    assert proc.returncode == EXIT_INVALID, _where(proc)
    assert ORDER_KEY in proc.stderr and "expected an array of tensor names" in proc.stderr and "UINT32" in proc.stderr, _where(proc)
    assert not out.exists()


@pytest.mark.parametrize("case", ["other-names", "duplicate", "too-few"])
def test_a_recorded_order_naming_other_tensors_is_kept_not_used(fx: Path, tmp_path: Path, case: str) -> None:
    from gguf import GGUFValueType as VT
    unfused = list(mf.build("qwen3moe").tensors)
    recorded = {"other-names": unfused[:-1] + ["blk.0.not_a_tensor.weight"], "duplicate": unfused[:-1] + [unfused[0]],
                "too-few": unfused[:-1]}[case]
    src = _with_order_key(fx, tmp_path / "stale.gguf", VT.ARRAY, (VT.STRING, recorded))
    out = tmp_path / "out.gguf"
    proc = _unfuse_ok(src, out, "qwen3moe")
    assert "is kept, not used" in proc.stdout, _where(proc)
    got = _read(out)
    assert got.order == _expected_order(_read(src), "qwen3moe", {g.name for g in rm.FUSABLE["qwen3moe"]}, fuse=False)
    assert _recorded_order(got) == recorded


def test_round_trip_of_the_real_smollm2_file(tmp_path: Path) -> None:
    """The published SmolLM2 file (attn_k before attn_q) comes back with its published sha256."""
    from test_run_logits import smollm2_path
    import hashlib
    src = smollm2_path()
    fused, back = tmp_path / "fused.gguf", tmp_path / "back.gguf"
    _fuse_ok(src, fused, "llama")
    assert _group_states(_validate(fused, *_registry_args("llama")))["attn_qkv"] == "fused"
    _unfuse_ok(fused, back, "llama")
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (src, back)]
    assert digest[0] == digest[1], "unfuse(fuse(SmolLM2)) differs from the published file"


# --- selecting groups ---------------------------------------------------------------------------


def test_group_selection(fx: Path, tmp_path: Path) -> None:
    src = fx / "qwen3moe.gguf"
    qkv, gate_up, both, default = (tmp_path / f"{n}.gguf" for n in ("qkv", "gate_up", "both", "default"))
    proc = _fuse_ok(src, qkv, "qwen3moe", "--group", "attn_qkv")
    assert proc.stdout.startswith("fused attn_qkv:"), _where(proc)
    assert _group_states(_validate(qkv)) == {"attn_qkv": "fused", "ffn_gate_up_exps": "unfused"}
    proc = _fuse_ok(src, gate_up, "qwen3moe", "--group", "ffn_gate_up_exps")
    assert proc.stdout.startswith("fused ffn_gate_up_exps:"), _where(proc)
    assert _group_states(_validate(gate_up)) == {"attn_qkv": "unfused", "ffn_gate_up_exps": "fused"}
    # llama.cpp does not load qwen3moe with fused experts: fuse says so
    assert "no loader besides archreg" in proc.stdout, _where(proc)
    _fuse_ok(src, both, "qwen3moe", "--group", "ffn_gate_up_exps", "--group", "attn_qkv")
    _fuse_ok(src, default, "qwen3moe")
    assert filecmp.cmp(both, default, shallow=False)

    # fusing what is left of a partly fused file gives the fully fused file
    rest = tmp_path / "rest.gguf"
    proc = _fuse_ok(qkv, rest, "qwen3moe")
    assert proc.stdout.startswith("fused ffn_gate_up_exps:"), _where(proc)
    assert filecmp.cmp(rest, default, shallow=False)

    # unfusing one group of a fully fused file
    one = tmp_path / "one.gguf"
    proc = _unfuse_ok(default, one, "qwen3moe", "--group", "attn_qkv")
    assert proc.stdout.startswith("unfused attn_qkv:"), _where(proc)
    assert _group_states(_validate(one)) == {"attn_qkv": "unfused", "ffn_gate_up_exps": "fused"}
    _assert_same_tensors(_read(one).tensors, _read(gate_up).tensors, "unfuse --group attn_qkv")


@pytest.mark.parametrize(("family", "want"), [
    ("qwen3moe", {"attn_qkv": "fused", "ffn_gate_up_exps": "unfused"}),
    ("deepseek2", {"ffn_gate_up_exps": "fused"}),
    ("gpt-oss", {"attn_qkv": "fused", "ffn_gate_up_exps": "unfused"}),
    ("llama-dense", {"attn_qkv": "fused", "ffn_gate_up_exps": "absent"}),
])
def test_for_llama_cpp_fuses_only_what_llama_cpp_loads(fx: Path, tmp_path: Path, family: str, want: dict) -> None:
    arch, _ = CASES[family]
    out = tmp_path / "out.gguf"
    proc = _fuse_ok(fx / f"{family}.gguf", out, arch, "--for", "llama.cpp")
    assert "no loader besides archreg" not in proc.stdout, _where(proc)
    assert _group_states(_validate(out)) == want
    if family == "qwen3moe":
        explicit = tmp_path / "explicit.gguf"
        _fuse_ok(fx / "qwen3moe.gguf", explicit, arch, "--group", "attn_qkv")
        assert filecmp.cmp(out, explicit, shallow=False)


def test_toy_plugin_decides_what_fuses(fx: Path, tmp_path: Path) -> None:
    """A runnable arch whose plugin runs only ffn_gate_up_exps fused: the default fuses that
    group only, and an explicit --group ffn_gate_up_exps works."""
    out, explicit = tmp_path / "out.gguf", tmp_path / "explicit.gguf"
    proc = _fuse_ok(fx / "toymoe.gguf", out, "toymoe")
    assert proc.stdout.startswith("fused ffn_gate_up_exps:"), _where(proc)
    assert _group_states(_validate(out, *_registry_args("toymoe"))) == {"attn_qkv": "unfused", "ffn_gate_up_exps": "fused"}
    _fuse_ok(fx / "toymoe.gguf", explicit, "toymoe", "--group", "ffn_gate_up_exps")
    assert filecmp.cmp(out, explicit, shallow=False)


def test_optional_part_leaves_a_layer_unfused_without_partial_fusion(fx: Path, tmp_path: Path) -> None:
    """A group part declared optional (llama.cpp loads some ffn_gate_exps TENSOR_NOT_REQUIRED):
    a layer without it cannot be fused and is no partial fusion; fuse fuses the other layers,
    unfuse gives the input back byte for byte."""
    specs = tmp_path / "specs"
    specs.mkdir()
    text = (TOY_SPECS / "toymoe.yaml").read_text()
    gate = "  ffn_gate_exps: [n_embd, n_ff_exp, n_expert]"
    assert gate in text
    (specs / "toymoe.yaml").write_text(text.replace(gate, "  ffn_gate_exps: { shape: [n_embd, n_ff_exp, n_expert], optional: true }"))
    registry = ["--spec-dir", str(specs), "--plugin-dir", str(test_plugins() / "toy")]
    model = mf.build("toymoe")
    del model.tensors["blk.0.ffn_gate_exps.weight"]
    src = _write_model(tmp_path / "no-gate-0.gguf", model)
    report = _validate(src, *registry)
    group = next(g for g in report["groups"] if g["name"] == "ffn_gate_up_exps")
    assert group["layers"]["unfusable"] == [0] and group["layers"]["unfused"] == [1], group
    fused = tmp_path / "fused.gguf"
    _ok(_run("fuse", src, fused, *registry))
    out = _read(fused)
    assert "blk.1.ffn_gate_up_exps.weight" in out.tensors and "blk.0.ffn_gate_up_exps.weight" not in out.tensors
    assert "blk.0.ffn_up_exps.weight" in out.tensors
    group = next(g for g in _validate(fused, *registry)["groups"] if g["name"] == "ffn_gate_up_exps")
    assert group["state"] == "fused" and group["layers"]["fused"] == [1] and group["layers"]["unfusable"] == [0], group
    back = tmp_path / "back.gguf"
    _ok(_run("unfuse", fused, back, *registry))
    assert filecmp.cmp(src, back, shallow=False)
    # With the gate absent everywhere there is nothing to fuse, and fuse says why.
    for layer in range(1, 2):
        del model.tensors[f"blk.{layer}.ffn_gate_exps.weight"]
    none = _write_model(tmp_path / "no-gate.gguf", model)
    proc = _run("fuse", none, tmp_path / "none.gguf", *registry, "--group", "ffn_gate_up_exps")
    assert proc.returncode == EXIT_INVALID and "an optional part is absent, or a part carries a sidecar, in layers 0,1" in proc.stderr, _where(proc)
    assert not (tmp_path / "none.gguf").exists()


def test_a_part_with_a_sidecar_keeps_its_layer_unfused(tmp_path: Path) -> None:
    """A part carrying a sidecar (llama.cpp's NVFP4 .scale / .input_scale, the base spec's
    sidecars:) keeps its layer as stored: a fused form has no sidecars. fuse fuses the other
    layers, unfuse gives the input back byte for byte, and both files validate."""
    model = mf.build("qwen3moe")
    for name, shape in (("blk.0.ffn_up_exps.scale", (model.tensors["blk.0.ffn_up_exps.weight"].shape[2],)),
                        ("blk.0.attn_k.input_scale", (1,))):
        model.tensors[name] = mf.new_tensor("qwen3moe", name, shape, mf.QT.F32)
    src = _write_model(tmp_path / "scaled.gguf", model)
    groups = {g["name"]: g for g in _validate(src)["groups"]}
    for name in ("attn_qkv", "ffn_gate_up_exps"):
        assert groups[name]["layers"]["unfusable"] == [0] and groups[name]["layers"]["unfused"] == [1], groups[name]
    fused = tmp_path / "fused.gguf"
    _ok(_run("fuse", src, fused))
    out = _read(fused)
    assert "blk.1.ffn_gate_up_exps.weight" in out.tensors and "blk.1.attn_qkv.weight" in out.tensors
    assert "blk.0.ffn_up_exps.weight" in out.tensors and "blk.0.attn_k.weight" in out.tensors
    assert "blk.0.ffn_up_exps.scale" in out.tensors and "blk.0.attn_k.input_scale" in out.tensors
    report = _validate(fused)
    assert report["valid"], report
    back = tmp_path / "back.gguf"
    _ok(_run("unfuse", fused, back))
    assert filecmp.cmp(src, back, shallow=False)


# --- refusals: exit status, message, and nothing left behind ----------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    command: str
    input: str  # a file in fx, or "!missing" / "!truncated" / "!text"
    args: tuple[str, ...]
    status: int
    says: tuple[str, ...]


def _toy(plugin: bool = True) -> tuple[str, ...]:
    return ("--spec-dir", "{toy_specs}") + (("--plugin-dir", "{toy_plugins}") if plugin else ())


REFUSALS = [
    Refusal("unknown-arch", "fuse", "unknown-arch.gguf", (), 1, ("unsupported model architecture 'notanarch'", "known: ")),
    Refusal("unknown-arch-unfuse", "unfuse", "unknown-arch.gguf", (), 1, ("unsupported model architecture 'notanarch'",)),
    Refusal("arch-without-spec-dir", "fuse", "toymoe.gguf", (), 1, ("unsupported model architecture 'toymoe'",)),
    Refusal("validate-only-arch", "fuse", "toymoe.gguf", _toy(plugin=False), 1, ("toymoe", "no plugin", "validated but not run")),
    Refusal("validate-only-arch-unfuse", "unfuse", "toymoe.fused.gguf", _toy(plugin=False), 1, ("no plugin",)),
    Refusal("group-not-declared", "fuse", "qwen3moe.gguf", ("--group", "attn_qkvx"), 1,
            ("qwen3moe declares no fusable group 'attn_qkvx'", "attn_qkv, ffn_gate_up_exps")),
    Refusal("group-not-declared-for-arch", "fuse", "deepseek2.gguf", ("--group", "attn_qkv"), 1,
            ("deepseek2 declares no fusable group 'attn_qkv'", "it declares: ffn_gate_up_exps")),
    Refusal("group-not-declared-unfuse", "unfuse", "qwen3moe.fused.gguf", ("--group", "ffn_up_gate_exps"), 1,
            ("declares no fusable group 'ffn_up_gate_exps'",)),
    Refusal("group-not-run-fused", "fuse", "toymoe.gguf", _toy() + ("--group", "attn_qkv"), 1,
            ("cannot run 'attn_qkv' fused", "archreg-toymoe", "it runs fused: ffn_gate_up_exps")),
    Refusal("consumer-does-not-load", "fuse", "qwen3moe.gguf", ("--group", "ffn_gate_up_exps", "--for", "llama.cpp"), 1,
            ("llama.cpp does not load qwen3moe files with 'ffn_gate_up_exps' fused", "qwen3moe.yaml")),
    Refusal("consumer-loads-nothing-runnable", "fuse", "toymoe.gguf", _toy() + ("--for", "llama.cpp"), 1,
            ("nothing to fuse", "llama.cpp accepts only the spec's consumers")),
    Refusal("already-fused", "fuse", "qwen3moe.fused.gguf", (), 1,
            ("nothing to fuse", "attn_qkv fused", "ffn_gate_up_exps fused")),
    Refusal("group-already-fused", "fuse", "qwen3moe.fused.gguf", ("--group", "attn_qkv"), 1, ("already stores 'attn_qkv' fused",)),
    Refusal("not-fused", "unfuse", "qwen3moe.gguf", (), 1, ("nothing to unfuse", "stores no group fused")),
    Refusal("group-not-fused", "unfuse", "qwen3moe.gguf", ("--group", "ffn_gate_up_exps"), 1,
            ("does not store 'ffn_gate_up_exps' fused", "unfused")),
    Refusal("absent-group", "fuse", "llama-dense.gguf", ("--group", "ffn_gate_up_exps"), 1,
            ("no 'ffn_gate_up_exps' to fuse",)),
    Refusal("mixed-types", "fuse", "qwen3moe-mixed-types.gguf", (), 1,
            ("different types", "re-quantization", "attn_qkv (2 places)",
             "blk.0.attn_q.weight Q4_K, blk.0.attn_k.weight Q4_K, blk.0.attn_v.weight Q6_K",
             "blk.1.attn_q.weight Q4_K, blk.1.attn_k.weight Q4_K, blk.1.attn_v.weight Q6_K")),
    Refusal("mixed-types-group", "fuse", "qwen3moe-mixed-types.gguf", ("--group", "attn_qkv"), 1,
            ("different types", "blk.0.attn_v.weight Q6_K")),
    Refusal("invalid-wrong-shape", "fuse", "qwen3moe-wrong-shape.gguf", (), 1,
            ("does not validate as qwen3moe", "wrong_shape", "blk.0.ffn_down_exps.weight", "[256, 128, 4]")),
    Refusal("invalid-missing-tensor", "fuse", "qwen3moe-missing-tensor.gguf", (), 1,
            ("does not validate", "missing_tensor", "blk.1.attn_k_norm.weight")),
    Refusal("invalid-partial-fusion", "fuse", "qwen3moe-partial-fusion-qkv.gguf", (), 1, ("does not validate", "partial_fusion")),
    Refusal("invalid-partial-fusion-unfuse", "unfuse", "qwen3moe-partial-fusion-gate-up.gguf", (), 1,
            ("does not validate", "partial_fusion")),
    Refusal("invalid-fused-and-unfused", "unfuse", "qwen3moe-fused-and-unfused.gguf", (), 1, ("does not validate", "fused_and_unfused")),
    Refusal("invalid-missing-hparam", "fuse", "deepseek2-no-gating-func.gguf", (), 1,
            ("does not validate", "deepseek2.expert_gating_func")),
    Refusal("missing-input", "fuse", "!missing", (), 2, ("no-such-file.gguf", "cannot open")),
    Refusal("truncated-input", "fuse", "!truncated", (), 2, ("truncated.gguf",)),
    Refusal("not-gguf", "unfuse", "!text", (), 2, ("not-gguf.gguf",)),
]


def _refusal_input(fx: Path, work: Path, name: str) -> Path:
    if name == "!missing":
        return work / "no-such-file.gguf"
    if name == "!truncated":
        path = work / "truncated.gguf"
        path.write_bytes((fx / "qwen3moe.gguf").read_bytes()[:5000])
        return path
    if name == "!text":
        path = work / "not-gguf.gguf"
        path.write_text("this is not a GGUF file\n" * 10)
        return path
    return fx / name


@pytest.mark.parametrize("case", REFUSALS, ids=[r.id for r in REFUSALS])
def test_refusal(fx: Path, tmp_path: Path, case: Refusal) -> None:
    work, outdir = tmp_path / "in", tmp_path / "out"
    work.mkdir()
    outdir.mkdir()
    src = _refusal_input(fx, work, case.input)
    args = [a.format(toy_specs=TOY_SPECS, toy_plugins=test_plugins() / "toy") for a in case.args]
    before = src.read_bytes() if src.exists() else None
    proc = _run(case.command, src, outdir / "out.gguf", *args)
    assert proc.returncode == case.status, _where(proc)
    for text in case.says:
        assert text in proc.stderr, f"expected {text!r} in the message\n{_where(proc)}"
    assert proc.stderr.startswith(f"archreg {case.command}: "), _where(proc)
    assert proc.stdout == "", _where(proc)
    assert os.listdir(outdir) == [], f"left behind: {os.listdir(outdir)}\n{_where(proc)}"
    if before is not None:
        assert src.read_bytes() == before


def test_refusal_counts_the_findings(fx: Path, tmp_path: Path) -> None:
    """The 'does not validate' message gives the number of findings it lists."""
    proc = _run("fuse", fx / "qwen3moe-wrong-shape.gguf", tmp_path / "out.gguf")
    assert proc.returncode == EXIT_INVALID, _where(proc)
    assert "(1 finding)" in proc.stderr, _where(proc)
    proc = _run("fuse", fx / "qwen3moe-fused-and-unfused.gguf", tmp_path / "out.gguf")
    assert proc.returncode == EXIT_INVALID, _where(proc)
    assert "(2 findings)" in proc.stderr, _where(proc)


def test_mixed_types_fuse_other_group(fx: Path, tmp_path: Path) -> None:
    """Mixed types refuse only the group they are in: the experts still fuse."""
    out = tmp_path / "out.gguf"
    _fuse_ok(fx / "qwen3moe-mixed-types.gguf", out, "qwen3moe", "--group", "ffn_gate_up_exps")
    assert _group_states(_validate(out)) == {"attn_qkv": "unfused", "ffn_gate_up_exps": "fused"}


def test_existing_output_needs_force(fx: Path, tmp_path: Path) -> None:
    src = fx / "qwen3moe.gguf"
    want = tmp_path / "want.gguf"
    _fuse_ok(src, want, "qwen3moe")
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "out.gguf"
    out.write_bytes(b"precious\n")
    stamp = out.stat().st_mtime_ns
    for command, source in (("fuse", src), ("unfuse", fx / "qwen3moe.fused.gguf")):
        proc = _run(command, source, out)
        assert proc.returncode == EXIT_INVALID, _where(proc)
        assert "already exists" in proc.stderr and "--force" in proc.stderr, _where(proc)
        assert out.read_bytes() == b"precious\n" and out.stat().st_mtime_ns == stamp
        assert os.listdir(outdir) == ["out.gguf"]
    # a refused plan does not touch it either, even with --force
    proc = _run("fuse", fx / "qwen3moe.fused.gguf", out, "--force")
    assert proc.returncode == EXIT_INVALID and out.read_bytes() == b"precious\n", _where(proc)
    _ok(_run("fuse", src, out, "--force"))
    assert filecmp.cmp(out, want, shallow=False)
    assert os.listdir(outdir) == ["out.gguf"]
    assert (out.stat().st_mode & 0o777) == (want.stat().st_mode & 0o777)


def test_output_is_input_is_refused(fx: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    shutil.copyfile(fx / "qwen3moe.gguf", model)
    fused = tmp_path / "f.gguf"
    shutil.copyfile(fx / "qwen3moe.fused.gguf", fused)
    (tmp_path / "link.gguf").symlink_to("m.gguf")
    os.link(model, tmp_path / "hard.gguf")
    content, stamp = model.read_bytes(), model.stat().st_mtime_ns
    cases = [("fuse", model, model), ("fuse", model, tmp_path / "link.gguf"), ("fuse", model, tmp_path / "hard.gguf"),
             ("unfuse", fused, fused)]
    for command, src, out in cases:
        for force in ([], ["--force"]):
            proc = _run(command, src, out, *force)
            assert proc.returncode == EXIT_INVALID, _where(proc)
            assert "the output is the input file" in proc.stderr, _where(proc)
            assert sorted(os.listdir(tmp_path)) == ["f.gguf", "hard.gguf", "link.gguf", "m.gguf"], _where(proc)
    assert model.read_bytes() == content and model.stat().st_mtime_ns == stamp
    assert (tmp_path / "link.gguf").is_symlink()


def test_write_failure_leaves_nothing(fx: Path, tmp_path: Path) -> None:
    """A write that fails (here: the file-size limit, as a full disk would) exits 1 with the
    reason and leaves no output."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    limit = 300 * 1024  # the fused fixture is ~1.4 MiB

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    for command, src in (("fuse", fx / "qwen3moe.gguf"), ("unfuse", fx / "qwen3moe.fused.gguf")):
        proc = _run(command, src, outdir / "out.gguf", preexec_fn=limited)
        assert proc.returncode == EXIT_INVALID, _where(proc)
        assert "write failed" in proc.stderr and "File too large" in proc.stderr, _where(proc)
        assert os.listdir(outdir) == [], _where(proc)


# --- big inputs: interruption and failure in the middle of writing ------------------------------

# Qwen3-30B-A3B-shaped layers (128 experts of 2048 x 768, Q4_K gate/up, Q6_K down): ~400 MiB of
# expert data per layer. The data section is a hole, so the input costs no disk; the output
# archreg writes is real data until it is thrown away.
BIG_HP = dict(n_embd=2048, n_layer=4, n_head=32, n_head_kv=4, key_length=128, value_length=128, n_ff=6144,
              n_expert=128, n_expert_used=8, n_ff_exp=768, n_vocab=1000)
def _fused_shapes(tensors: list[tuple[str, tuple[int, ...]]], arch: str) -> list[tuple[str, tuple[int, ...]]]:
    """The tensor list with every group fused where its first part was (shapes only)."""
    shapes = dict(tensors)
    out: list[tuple[str, tuple[int, ...]]] = []
    done: set[str] = set()
    for name, shape in tensors:
        parsed = mf.LAYER_RE.match(name)
        group = next((g for g in rm.FUSABLE[arch] if parsed and parsed.group(2) in g.parts), None)
        if group is None:
            out.append((name, shape))
            continue
        il, suffix = parsed.group(1), parsed.group(3)
        fused = f"blk.{il}.{group.name}.{suffix}"
        if fused in done:
            continue
        done.add(fused)
        parts = [shapes[f"blk.{il}.{p}.{suffix}"] for p in group.parts]
        new = list(parts[0])
        new[group.axis] = sum(p[group.axis] for p in parts)
        out.append((fused, tuple(new)))
    return out


def write_sparse_model(path: Path, arch: str, metadata: list, tensors: list[tuple[str, tuple[int, ...]]],
                       pick: Callable[[str, tuple[int, ...]], QT]) -> int:
    """A real header written by gguf-py; the data section is a hole. Returns the file size."""
    writer = GGUFWriter(str(path), arch)
    mf.add_metadata(writer, metadata)
    data = 0
    for name, shape in tensors:
        qtype = pick(name, shape)
        block, size = GGML_QUANT_SIZES[qtype]
        n_bytes = shape[0] // block * size * int(np.prod(shape[1:], dtype=np.int64))
        writer.add_tensor_info(name, tuple(reversed(shape)), np.dtype(np.float32), n_bytes, raw_dtype=qtype)
        data += GGUFWriter.ggml_pad(n_bytes, writer.data_alignment)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    fout = writer.fout[0]
    size = GGUFWriter.ggml_pad(fout.tell(), writer.data_alignment) + data
    fout.truncate(size)
    writer.close()
    return size


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict[str, Path]:
    """~1.5 GiB (apparent) qwen3moe files, unfused and fused; removed after the module."""
    where = tmp_path_factory.mktemp("fuse-big")
    metadata, tensors = rm.qwen3moe(dict(BIG_HP))
    files = {"fuse": where / "big.gguf", "unfuse": where / "big.fused.gguf"}
    write_sparse_model(files["fuse"], "qwen3moe", metadata, tensors, mf.q4_k_m_like)
    write_sparse_model(files["unfuse"], "qwen3moe", metadata, _fused_shapes(tensors, "qwen3moe"), mf.q4_k_m_like)
    for path in files.values():
        _validate(path)
    yield files
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    """An empty directory for one big output; emptied afterwards whatever happened (a kept
    output here is 1.5 GiB)."""
    where = tmp_path / "out"
    where.mkdir()
    yield where
    shutil.rmtree(where, ignore_errors=True)


def _output_size(pid: int, outdir: Path) -> int | None:
    """Bytes written so far to the process's (unnamed) output file in `outdir`, if it has one open."""
    prefix = str(outdir.resolve())
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            continue
    return None


def _interrupt(command: str, src: Path, outdir: Path, sig: int, at_bytes: int) -> tuple[int, str, float, int]:
    """Starts archreg, sends `sig` once its output holds `at_bytes`; returns (exit status,
    stderr, seconds from the signal to the exit, bytes written when signalled)."""
    proc = subprocess.Popen([archreg(), command, str(src), str(outdir / "out.gguf")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            size = _output_size(proc.pid, outdir)
            if size is not None and size >= at_bytes:
                break
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"archreg {command} ended (exit {proc.returncode}) before it had written {at_bytes} bytes; "
                            f"make the input bigger\n{out}\n{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"archreg {command} did not write {at_bytes} bytes in {TIMEOUT} s")
            time.sleep(0.001)
        proc.send_signal(sig)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=TIMEOUT)
        return proc.returncode, err, time.monotonic() - sent, size
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("command", ["fuse", "unfuse"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_while_writing(big: dict[str, Path], outdir: Path, command: str, sig: int) -> None:
    status, err, latency, written = _interrupt(command, big[command], outdir, sig, 256 << 20)
    assert status == EXIT_INTERRUPTED, f"exit {status} after {signal.Signals(sig).name} at {written} bytes\n{err}"
    assert "interrupted" in err, err
    assert os.listdir(outdir) == [], os.listdir(outdir)
    assert latency < 10, f"took {latency:.1f} s to stop after {signal.Signals(sig).name}"


def test_interrupted_while_syncing(big: dict[str, Path], outdir: Path) -> None:
    """SIGINT once every byte is written (the output is being synced and verified): still
    interrupted, nothing published. A multi-GiB fsync takes seconds; an interruption then must
    not turn into a kept output and exit 0."""
    src = big["fuse"]
    status, err, _, written = _interrupt("fuse", src, outdir, signal.SIGINT, src.stat().st_size - (1 << 20))
    assert (status, os.listdir(outdir)) == (EXIT_INTERRUPTED, []), f"exit {status} after SIGINT at {written} bytes\n{err}"


@pytest.mark.parametrize("command", ["fuse", "unfuse"])
def test_killed_while_writing_leaves_nothing(big: dict[str, Path], outdir: Path, command: str) -> None:
    status, _, _, _ = _interrupt(command, big[command], outdir, signal.SIGKILL, 256 << 20)
    assert status == -signal.SIGKILL
    assert os.listdir(outdir) == [], os.listdir(outdir)


def test_big_write_failure_leaves_nothing(big: dict[str, Path], outdir: Path) -> None:
    """The file-size limit hit in the kernel-side copy of a big tensor."""
    limit = 64 << 20

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    proc = _run("fuse", big["fuse"], outdir / "out.gguf", preexec_fn=limited)
    assert proc.returncode == EXIT_INVALID, _where(proc)
    assert "File too large" in proc.stderr, _where(proc)
    assert os.listdir(outdir) == [], _where(proc)


# --- llama.cpp loads what archreg fuses, with the same logits ----------------------------------



@pytest.fixture(scope="session")
def llama_cpp_python() -> str:
    return require_llama_cpp()


_logits_cache: dict[Path, np.ndarray] = {}


def _logits(path: Path) -> np.ndarray:
    if path in _logits_cache:
        return _logits_cache[path]
    proc = subprocess.run([sys.executable, str(LLAMA_PROBE), str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"llama.cpp did not load {path.name}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    logits = np.asarray(json.loads(proc.stdout.strip().splitlines()[-1]), dtype=np.float32)
    assert logits.shape[0] == 4 and np.all(np.isfinite(logits)) and np.ptp(logits) > 0, logits
    _logits_cache[path] = logits
    return logits


# `--for llama.cpp` fuses the groups llama.cpp loads fused: every family whose arch has one
LLAMA_CASES = [("deepseek2", ()), ("qwen3moe", ("--group", "attn_qkv"))] + [
    (family, ("--for", "llama.cpp")) for family in FAMILIES
    if CASES[family][0] != "toymoe" and any(g.llama_cpp_loads_fused for g in rm.FUSABLE[CASES[family][0]])]
LLAMA_IDS = [family + "".join(f"-{a.lstrip('-')}" for a in args) for family, args in LLAMA_CASES]


@pytest.mark.parametrize(("family", "args"), LLAMA_CASES, ids=LLAMA_IDS)
def test_llama_cpp_runs_archreg_fused_files(fx: Path, tmp_path: Path, llama_cpp_python: str, family: str, args: tuple) -> None:
    arch, _ = CASES[family]
    out = tmp_path / "fused.gguf"
    _fuse_ok(fx / f"{family}.gguf", out, arch, *args)
    fused_groups = [name for name, state in _group_states(_validate(out)).items() if state == "fused"]
    assert fused_groups
    want, got = _logits(fx / f"{family}.gguf"), _logits(out)
    assert got.shape == want.shape
    diff = float(np.max(np.abs(got - want)))
    assert np.array_equal(got, want), (f"llama.cpp {llama_cpp_python}: logits of {family} with {fused_groups} fused by archreg "
                                       f"differ from the unfused file's by up to {diff:g}")
