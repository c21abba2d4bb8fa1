"""Interop tests: gguf-py, llama.cpp's own GGUF implementation, checks our reader, our writer
and `archreg inspect` on the same files.

Our side is driven through `gguf-testtool` (tests/tools/gguf_testtool.cpp), whose JSON
vocabulary this file shares: a file *description* (metadata entries and tensors) goes to
`gguf-testtool write`, and `gguf-testtool dump` prints what our reader sees in the same form.
`gguf_py_view` builds that form from gguf.GGUFReader, so each check is a plain equality.

Run through ctest, which sets ARCHREG_TESTTOOL, ARCHREG_CLI and ARCHREG_EXAMPLE_MODEL to the
built binaries (tests/interop/CMakeLists.txt).
"""

import hashlib
import json
import math
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import gguf
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import make_sparse_gguf  # noqa: E402

SEEDS = range(5)


def binary(variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        pytest.fail(f"{variable} is not set; run these tests with ctest, which points it at the built binary")
    return path


def run(args: list[str], expect_rc: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, errors="backslashreplace")
    assert result.returncode == expect_rc, (
        f"{' '.join(args)} exited {result.returncode} (expected {expect_rc})\n"
        f"stderr: {result.stderr}")
    return result


# ----------------------------------------------------------------------------------------------
# The shared JSON vocabulary.

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def splitmix64_bytes(seed: int, n_bytes: int) -> bytes:
    """The "data_seed" byte stream of tests/tools/splitmix64.hpp: output i is the splitmix64
    mix of seed + i * golden gamma, written as 8 little-endian bytes."""
    steps = np.arange(1, (n_bytes + 7) // 8 + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + steps * GOLDEN_GAMMA
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z.astype("<u8").tobytes()[:n_bytes]


def text_json(raw: bytes) -> Any:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": raw.hex()}


def text_bytes(value: Any) -> bytes:
    return bytes.fromhex(value["hex"]) if isinstance(value, dict) else value.encode("utf-8")


FLOAT_FORMATS = {GGUFValueType.FLOAT32: ("<f", "<I", 8), GGUFValueType.FLOAT64: ("<d", "<Q", 16)}


def float_json(bits: int, vtype: GGUFValueType) -> Any:
    """A finite float as its (exact) number, anything else as its bit pattern."""
    float_format, bits_format, hex_digits = FLOAT_FORMATS[vtype]
    value = struct.unpack(float_format, struct.pack(bits_format, bits))[0]
    return value if math.isfinite(value) else f"0x{bits:0{hex_digits}x}"


def float_value(value: Any, vtype: GGUFValueType) -> float:
    if isinstance(value, str):
        float_format, bits_format, _ = FLOAT_FORMATS[vtype]
        return struct.unpack(float_format, struct.pack(bits_format, int(value, 16)))[0]
    return value


def tensor_n_bytes(tensor: dict) -> int:
    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[tensor["type"]]]
    return math.prod(tensor["shape"]) // block_size * type_size


def tensor_data(tensor: dict) -> bytes:
    return splitmix64_bytes(tensor["data_seed"], tensor_n_bytes(tensor))


def canonical(value: Any) -> Any:
    """Makes == strict where Python is lenient: -0.0 == 0.0 and True == 1 no longer hold."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    return value


# ----------------------------------------------------------------------------------------------
# Random descriptions.

INTEGER_RANGES = {
    GGUFValueType.UINT8: (0, 2**8 - 1), GGUFValueType.INT8: (-(2**7), 2**7 - 1),
    GGUFValueType.UINT16: (0, 2**16 - 1), GGUFValueType.INT16: (-(2**15), 2**15 - 1),
    GGUFValueType.UINT32: (0, 2**32 - 1), GGUFValueType.INT32: (-(2**31), 2**31 - 1),
    GGUFValueType.UINT64: (0, 2**64 - 1), GGUFValueType.INT64: (-(2**63), 2**63 - 1),
}
SCALAR_TYPES = [t for t in GGUFValueType if t != GGUFValueType.ARRAY]
TEXT_PIECES = ["a", "Z", "0", " ", "\n", "\u0000", '"', "\\", "é", "ß", "Ġthe", "漢字", "🦙", "\u200d"]
# Float specials gguf-py can write too (it converts through Python floats, which would quiet a
# signalling NaN): zeros, extremes, subnormals, infinities and the default quiet NaN.
FLOAT32_SPECIALS = [0.0, -0.0, 1.0, 3.4028234663852886e38, 1.1754943508222875e-38, 1.401298464324817e-45,
                    "0x7f800000", "0xff800000", "0x7fc00000"]
FLOAT64_SPECIALS = [0.0, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, "0x7ff0000000000000",
                    "0xfff0000000000000", "0x7ff8000000000000"]
TENSOR_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_K", "Q6_K", "MXFP4", "Q4_0", "Q5_1", "Q2_K", "IQ4_XS",
                "TQ2_0", "I8", "I16", "I32", "I64", "F64"]


def random_scalar(rng: random.Random, vtype: GGUFValueType) -> Any:
    if vtype in INTEGER_RANGES:
        low, high = INTEGER_RANGES[vtype]
        return rng.choice([low, high, 0, rng.randint(low, high)])
    if vtype == GGUFValueType.BOOL:
        return rng.random() < 0.5
    if vtype == GGUFValueType.STRING:
        return "".join(rng.choice(TEXT_PIECES) for _ in range(rng.randint(0, 8)))
    specials = FLOAT32_SPECIALS if vtype == GGUFValueType.FLOAT32 else FLOAT64_SPECIALS
    if rng.random() < 0.3:
        return rng.choice(specials)
    while True:
        width = 32 if vtype == GGUFValueType.FLOAT32 else 64
        value = float_json(rng.getrandbits(width), vtype)
        if isinstance(value, float):
            return value


def random_nested_array(rng: random.Random, depth: int = 0) -> dict:
    """{"element_type", "value"}: an array of arrays, whose elements nest up to three levels
    deep, with any element types, empty ones included."""
    element_types = SCALAR_TYPES + ([GGUFValueType.ARRAY] if depth < 3 else [])
    element_type = GGUFValueType.ARRAY if depth == 0 else rng.choice(element_types)
    count = rng.randint(1, 4) if depth == 0 else rng.choice([0, 1, rng.randint(2, 12)])
    if element_type == GGUFValueType.ARRAY:
        items = [random_nested_array(rng, depth + 1) for _ in range(count)]
    else:
        items = [random_scalar(rng, element_type) for _ in range(count)]
    return {"element_type": element_type.name, "value": items}


def metadata_entry(key: str, vtype: GGUFValueType, value: Any) -> dict:
    if vtype == GGUFValueType.ARRAY:
        return {"key": key, "type": "ARRAY", **value}
    return {"key": key, "type": vtype.name, "value": value}


def random_description(seed: int) -> dict:
    """Every value type as a scalar and as an array (empty ones and arrays of arrays too), a
    non-UTF-8 string, UTF-8 keys and tensor names, and a tensor of every type in TENSOR_TYPES
    (1 to 4 dimensions) plus three more."""
    rng = random.Random(seed)
    metadata = [metadata_entry("general.architecture", GGUFValueType.STRING, f"interop{seed}")]
    alignment = rng.choice([None, 1, 8, 64, 256, 4096])
    if alignment is not None:
        metadata.append(metadata_entry("general.alignment", GGUFValueType.UINT32, alignment))
    for vtype in SCALAR_TYPES:
        metadata.append(metadata_entry(f"test.scalar.{vtype.name.lower()}", vtype, random_scalar(rng, vtype)))
        array = {"element_type": vtype.name, "value": [random_scalar(rng, vtype) for _ in range(rng.randint(1, 20))]}
        metadata.append(metadata_entry(f"test.array.{vtype.name.lower()}", GGUFValueType.ARRAY, array))
        metadata.append(metadata_entry(f"test.empty.{vtype.name.lower()}", GGUFValueType.ARRAY,
                                       {"element_type": vtype.name, "value": []}))
    for i in range(4):
        metadata.append(metadata_entry(f"test.nested.{i}", GGUFValueType.ARRAY, random_nested_array(rng)))
    metadata.append(metadata_entry("test.ключ.🦙", GGUFValueType.STRING, "значение 🦙"))
    metadata.append(metadata_entry("test.not_utf8", GGUFValueType.STRING, {"hex": "ff00c328e282"}))
    architecture, *entries = metadata
    rng.shuffle(entries)
    metadata = [architecture, *entries]

    tensors = []
    for i, type_name in enumerate(TENSOR_TYPES + [rng.choice(TENSOR_TYPES) for _ in range(3)]):
        block_size, _ = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
        shape = [block_size * rng.randint(1, 3)] + [rng.randint(1, 4) for _ in range(rng.randint(0, 3))]
        tensors.append({"name": f"blk.{i}.weight", "type": type_name, "shape": shape,
                        "data_seed": rng.getrandbits(64)})
    tensors[0]["name"] = "тензор.🦙"
    tensors[1]["name"] = "n" * 63  # the longest name ggml allows
    return {"metadata": metadata, "tensors": tensors}


def expected_view(description: dict) -> dict:
    """What any reader must report for a described file, except the data section's offset,
    which depends on the header's encoded size."""
    alignment = next((entry["value"] for entry in description["metadata"] if entry["key"] == "general.alignment"),
                     32)
    tensors = []
    offset = 0
    for tensor in description["tensors"]:
        n_bytes = tensor_n_bytes(tensor)
        tensors.append({"name": tensor["name"], "type": tensor["type"],
                        "type_id": int(GGMLQuantizationType[tensor["type"]]), "shape": tensor["shape"],
                        "offset": offset, "n_bytes": n_bytes,
                        "sha256": hashlib.sha256(tensor_data(tensor)).hexdigest()})
        offset += -(-n_bytes // alignment) * alignment
    return {"version": 3, "alignment": alignment, "metadata": description["metadata"], "tensors": tensors}


def without_data_offsets(view: dict) -> dict:
    return {"version": view["version"], "alignment": view["alignment"], "metadata": view["metadata"],
            "tensors": [{k: v for k, v in tensor.items() if k != "data_offset"} for tensor in view["tensors"]]}


# ----------------------------------------------------------------------------------------------
# gguf-py as a writer and as a reader, in the shared vocabulary.

class TypedArray(NamedTuple):
    element_type: GGUFValueType
    items: list


class ExactGGUFWriter(gguf.GGUFWriter):
    """GGUFWriter, except that arrays given as TypedArray carry their element type explicitly.
    GGUFWriter infers the types of nested arrays from Python values (so it cannot write e.g. an
    array of UINT8 arrays) and refuses empty arrays, which the format allows; flat non-empty
    arrays still go through GGUFWriter's own code."""

    def _pack_val(self, val: Any, vtype: GGUFValueType, add_vtype: bool, sub_type: GGUFValueType | None = None) -> bytes:
        if not isinstance(val, TypedArray):
            return super()._pack_val(val, vtype, add_vtype, sub_type)
        packed = self._pack("I", vtype) if add_vtype else b""
        packed += self._pack("I", val.element_type) + self._pack("Q", len(val.items))
        return packed + b"".join(self._pack_val(item, val.element_type, add_vtype=False) for item in val.items)


def gguf_py_value(value: Any, vtype: GGUFValueType) -> Any:
    if vtype == GGUFValueType.ARRAY:
        element_type = GGUFValueType[value["element_type"]]
        return TypedArray(element_type, [gguf_py_value(item, element_type) for item in value["value"]])
    if vtype == GGUFValueType.STRING:
        return text_bytes(value)
    if vtype in FLOAT_FORMATS:
        return float_value(value, vtype)
    return value


def write_with_gguf_py(description: dict, path: Path) -> None:
    architecture, *metadata = description["metadata"]
    assert architecture["key"] == "general.architecture"  # GGUFWriter always writes it first
    writer = ExactGGUFWriter(path, arch=architecture["value"])
    for entry in metadata:
        vtype = GGUFValueType[entry["type"]]
        if entry["key"] == "general.alignment":
            writer.add_custom_alignment(entry["value"])
        elif vtype == GGUFValueType.ARRAY and entry["element_type"] != "ARRAY" and entry["value"]:
            element_type = GGUFValueType[entry["element_type"]]
            items = [gguf_py_value(item, element_type) for item in entry["value"]]
            writer.add_key_value(entry["key"], items, vtype, sub_type=element_type)
        else:
            writer.add_key_value(entry["key"], gguf_py_value(entry, vtype) if vtype == GGUFValueType.ARRAY
                                 else gguf_py_value(entry["value"], vtype), vtype)
    for tensor in description["tensors"]:
        qtype = GGMLQuantizationType[tensor["type"]]
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        # gguf-py takes raw bytes in numpy order, the innermost dimension counted in bytes.
        byte_shape = [*reversed(tensor["shape"][1:]), tensor["shape"][0] // block_size * type_size]
        data = np.frombuffer(tensor_data(tensor), dtype=np.uint8)
        writer.add_tensor(tensor["name"], data, raw_shape=byte_shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def decode_parts(parts: list, i: int, vtype: GGUFValueType) -> tuple[Any, int]:
    """Decodes the value starting at parts[i] of a gguf-py ReaderField; returns it and the index
    after it. (ReaderField.contents() flattens arrays of arrays, so we walk the parts.)"""
    if vtype == GGUFValueType.STRING:
        return text_json(parts[i + 1].tobytes()), i + 2
    if vtype == GGUFValueType.ARRAY:
        element_type = GGUFValueType(int(parts[i][0]))
        count = int(parts[i + 1][0])
        i += 2
        items = []
        for _ in range(count):
            item, i = decode_parts(parts, i, element_type)
            items.append(item)
        return {"element_type": element_type.name, "value": items}, i
    if vtype in FLOAT_FORMATS:
        bits_dtype = np.uint32 if vtype == GGUFValueType.FLOAT32 else np.uint64
        return float_json(int(parts[i].view(bits_dtype)[0]), vtype), i + 1
    if vtype == GGUFValueType.BOOL:
        return bool(parts[i][0]), i + 1
    return int(parts[i][0]), i + 1


def gguf_py_view(path: Path) -> dict:
    """Everything gguf.GGUFReader reports, in the form of `gguf-testtool dump`."""
    reader = gguf.GGUFReader(path)
    fields = list(reader.fields.values())
    metadata = []
    for field in fields[3:]:  # the first three are GGUFReader's pseudo-fields (version, counts)
        vtype = GGUFValueType(int(field.parts[2][0]))
        value, end = decode_parts(field.parts, 3, vtype)
        assert end == len(field.parts)
        entry = {"key": text_json(field.parts[1].tobytes()), "type": vtype.name}
        metadata.append({**entry, **value} if vtype == GGUFValueType.ARRAY else {**entry, "value": value})
    tensors = [{"name": tensor.name, "type": tensor.tensor_type.name, "type_id": int(tensor.tensor_type),
                "shape": [int(d) for d in tensor.shape],  # ggml order: ne0 first
                "offset": int(tensor.field.parts[-1][0]), "data_offset": int(tensor.data_offset),
                "n_bytes": int(tensor.n_bytes), "sha256": hashlib.sha256(tensor.data.tobytes()).hexdigest()}
               for tensor in reader.tensors]
    return {"version": int(fields[0].parts[0][0]), "alignment": int(reader.alignment),
            "data_offset": int(reader.data_offset), "file_size": os.path.getsize(path),
            "metadata": metadata, "tensors": tensors}


# ----------------------------------------------------------------------------------------------
# Our side.

def our_view(path: Path) -> dict:
    return json.loads(run([binary("ARCHREG_TESTTOOL"), "dump", str(path)]).stdout)


def write_with_ours(description: dict, path: Path) -> None:
    description_path = path.with_suffix(".json")
    description_path.write_text(json.dumps(description, ensure_ascii=False))
    run([binary("ARCHREG_TESTTOOL"), "write", str(description_path), str(path)])


def with_nan_payloads(description: dict) -> dict:
    """Float bit patterns only a bit-exact writer keeps: signalling NaNs and NaN payloads."""
    extra = [metadata_entry("test.snan32", GGUFValueType.FLOAT32, "0x7fa00001"),
             metadata_entry("test.nan64", GGUFValueType.FLOAT64, "0xfff0000000abcdef"),
             metadata_entry("test.nans", GGUFValueType.ARRAY, {"element_type": "FLOAT32",
                                                               "value": ["0xffc12345", -0.0, "0x7f800001"]})]
    return {**description, "metadata": description["metadata"] + extra}


# ----------------------------------------------------------------------------------------------
# Tests.

@pytest.mark.parametrize("seed", SEEDS)
def test_our_reader_reads_gguf_py_files(seed: int, tmp_path: Path) -> None:
    description = random_description(seed)
    path = tmp_path / "gguf-py.gguf"
    write_with_gguf_py(description, path)

    reference = gguf_py_view(path)
    assert canonical(without_data_offsets(reference)) == canonical(expected_view(description))
    assert canonical(our_view(path)) == canonical(reference)


@pytest.mark.parametrize("seed", SEEDS)
def test_gguf_py_reads_our_files(seed: int, tmp_path: Path) -> None:
    description = with_nan_payloads(random_description(seed))
    path = tmp_path / "ours.gguf"
    write_with_ours(description, path)

    reference = gguf_py_view(path)
    assert canonical(without_data_offsets(reference)) == canonical(expected_view(description))
    assert canonical(our_view(path)) == canonical(reference)


@pytest.mark.parametrize("seed", SEEDS)
def test_our_writer_matches_gguf_py_byte_for_byte(seed: int, tmp_path: Path) -> None:
    """Both writers lay a described file out canonically (entries in order, every tensor padded
    to the alignment), so their outputs are identical."""
    description = random_description(seed)
    write_with_gguf_py(description, tmp_path / "gguf-py.gguf")
    write_with_ours(description, tmp_path / "ours.gguf")
    assert (tmp_path / "ours.gguf").read_bytes() == (tmp_path / "gguf-py.gguf").read_bytes()


def test_dump_metadata_is_valid_write_input(tmp_path: Path) -> None:
    """dump and write share one vocabulary: rewriting a dump reproduces the file exactly."""
    description = with_nan_payloads(random_description(7))
    write_with_ours(description, tmp_path / "first.gguf")
    dumped = our_view(tmp_path / "first.gguf")
    write_with_ours({"metadata": dumped["metadata"], "tensors": description["tensors"]}, tmp_path / "second.gguf")
    assert (tmp_path / "second.gguf").read_bytes() == (tmp_path / "first.gguf").read_bytes()


def plain_json_value(value: Any) -> bool:
    """Values `archreg inspect` prints as themselves: not NaN or infinity, and valid UTF-8."""
    if isinstance(value, dict):
        return False
    if isinstance(value, str) and value.startswith("0x"):
        return False
    if isinstance(value, list):
        return all(plain_json_value(item) for item in value)
    return True


def check_inspect_agrees(path: Path) -> None:
    result = run([binary("ARCHREG_CLI"), "inspect", str(path), "--json"])
    inspected = json.loads(result.stdout)
    reference = gguf_py_view(path)

    for name in ("version", "alignment", "data_offset", "file_size"):
        assert inspected[name] == reference[name], name
    assert [e["key"] for e in inspected["metadata"]] == [e["key"] for e in reference["metadata"]]
    for shown, entry in zip(inspected["metadata"], reference["metadata"]):
        assert shown["type"] == entry["type"], entry["key"]
        if entry["type"] != "ARRAY":
            if plain_json_value(entry["value"]):
                assert canonical(shown["value"]) == canonical(entry["value"]), entry["key"]
            continue
        assert shown["element_type"] == entry["element_type"], entry["key"]
        assert shown["count"] == len(entry["value"]), entry["key"]
        head = entry["value"][:16]
        if entry["element_type"] != "ARRAY" and plain_json_value(head):
            assert canonical(shown["value"]) == canonical(head), entry["key"]

    fields = ("name", "type", "shape", "offset", "data_offset", "n_bytes")
    assert [{k: t[k] for k in fields} for t in inspected["tensors"]] == \
           [{k: t[k] for k in fields} for t in reference["tensors"]]

    totals: dict[str, list[int]] = {}
    for tensor in reference["tensors"]:
        count_and_bytes = totals.setdefault(tensor["type"], [0, 0])
        count_and_bytes[0] += 1
        count_and_bytes[1] += tensor["n_bytes"]
    assert {t["type"]: [t["count"], t["n_bytes"]] for t in inspected["totals"]} == totals


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_inspect_json_agrees_with_gguf_py(seed: int, tmp_path: Path) -> None:
    path = tmp_path / "gguf-py.gguf"
    write_with_gguf_py(random_description(seed), path)
    check_inspect_agrees(path)


def test_inspect_shows_long_arrays_in_full_on_request(tmp_path: Path) -> None:
    path = tmp_path / "long-array.gguf"
    values = list(range(100))
    write_with_ours({"metadata": [metadata_entry("test.long", GGUFValueType.ARRAY,
                                                 {"element_type": "INT32", "value": values})]}, path)
    inspect = [binary("ARCHREG_CLI"), "inspect", str(path), "--json"]
    assert json.loads(run(inspect).stdout)["metadata"][0]["value"] == values[:16]
    assert json.loads(run([*inspect, "--full"]).stdout)["metadata"][0]["value"] == values


def malformed_files(valid: bytes) -> dict[str, bytes]:
    return {
        "empty": b"",
        "bad magic": b"GGUX" + valid[4:],
        "version 1": valid[:4] + struct.pack("<I", 1) + valid[8:],
        "truncated header": valid[:40],
        "truncated data": valid[:-1000],
        "huge tensor count": valid[:8] + struct.pack("<Q", 2**63) + valid[16:],
    }


@pytest.mark.parametrize("case", list(malformed_files(b"").keys()))
def test_inspect_rejects_malformed_files(case: str, tmp_path: Path) -> None:
    valid_path = tmp_path / "valid.gguf"
    write_with_gguf_py(random_description(0), valid_path)
    path = tmp_path / "malformed.gguf"
    path.write_bytes(malformed_files(valid_path.read_bytes())[case])

    for args in (["--json"], []):
        result = run([binary("ARCHREG_CLI"), "inspect", str(path), *args], expect_rc=2)
        assert result.stdout == ""
        assert str(path) in result.stderr
    run([binary("ARCHREG_TESTTOOL"), "dump", str(path)], expect_rc=2)


# The example model: qwen3moe at toy sizes (tests/tools/example_model.cpp).
E, H, H_KV, D_HEAD, X, F, N_VOCAB, N_LAYER = 64, 4, 2, 16, 4, 32, 32, 2
EXAMPLE_LAYER_TENSORS = {
    "attn_norm": [E], "attn_q": [E, H * D_HEAD], "attn_k": [E, H_KV * D_HEAD], "attn_v": [E, H_KV * D_HEAD],
    "attn_q_norm": [D_HEAD], "attn_k_norm": [D_HEAD], "attn_output": [H * D_HEAD, E], "ffn_norm": [E],
    "ffn_gate_inp": [E, X], "ffn_gate_exps": [E, F, X], "ffn_up_exps": [E, F, X], "ffn_down_exps": [F, E, X],
}


@pytest.fixture(scope="module")
def example_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("example") / "tiny-moe.gguf"
    run([binary("ARCHREG_EXAMPLE_MODEL"), str(path)])
    return path


def test_example_model_is_deterministic_and_small(example_model: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.gguf"
    run([binary("ARCHREG_EXAMPLE_MODEL"), str(again)])
    assert again.read_bytes() == example_model.read_bytes()
    assert example_model.stat().st_size < 1 << 20


def test_example_model_has_the_qwen3moe_layout(example_model: Path) -> None:
    reader = gguf.GGUFReader(example_model)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    assert fields["general.architecture"] == "qwen3moe"
    for key, value in {"embedding_length": E, "block_count": N_LAYER, "attention.head_count": H,
                       "attention.head_count_kv": H_KV, "attention.key_length": D_HEAD,
                       "attention.value_length": D_HEAD, "expert_count": X, "expert_used_count": 2,
                       "expert_feed_forward_length": F}.items():
        assert fields[f"qwen3moe.{key}"] == value, key
    for key in ("context_length", "rope.freq_base", "attention.layer_norm_rms_epsilon"):
        assert f"qwen3moe.{key}" in fields
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens) == N_VOCAB == len(fields["tokenizer.ggml.token_type"])
    for merge in fields["tokenizer.ggml.merges"]:
        left, right = merge.split(" ")
        assert {left, right, left + right} <= set(tokens), merge

    expected = {"token_embd.weight": [E, N_VOCAB], "output_norm.weight": [E], "output.weight": [E, N_VOCAB]}
    for layer in range(N_LAYER):
        expected |= {f"blk.{layer}.{name}.weight": shape for name, shape in EXAMPLE_LAYER_TENSORS.items()}
    assert {t.name: [int(d) for d in t.shape] for t in reader.tensors} == expected


def test_example_model_weights_are_valid_encodings(example_model: Path) -> None:
    for tensor in gguf.GGUFReader(example_model).tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        assert np.isfinite(values).all(), tensor.name
        center = 1.0 if "norm" in tensor.name else 0.0
        assert np.abs(values - center).max() <= 0.051, tensor.name
        if tensor.tensor_type == GGMLQuantizationType.Q8_0:
            # Each block's largest value maps to +-127, as ggml's quantizer makes it.
            blocks = tensor.data.reshape(-1, 34)
            quants = blocks[:, 2:].view(np.int8).astype(np.int32)
            assert (np.abs(quants).max(axis=1) == 127).all(), tensor.name


def test_inspect_json_agrees_with_gguf_py_on_example_model(example_model: Path) -> None:
    check_inspect_agrees(example_model)


# The benchmark's generator, scaled down: its files must be valid for gguf-py and for us.
BENCHMARK_MODELS = {
    "qwen3moe": lambda path: make_sparse_gguf.write_qwen3_moe_header(path, n_layer=2, n_expert=4, n_vocab=1000,
                                                                     n_merges=900),
    # 3 dense layers, then 2 MoE ones
    "deepseek2": lambda path: make_sparse_gguf.write_deepseek_v3_header(path, n_layer=5, n_expert=8, n_vocab=1000,
                                                                        n_merges=900),
}


@pytest.mark.parametrize("make", [
    *BENCHMARK_MODELS.values(),
    lambda path: make_sparse_gguf.write_many_tensors_header(path, n_tensors=1000),
], ids=[*BENCHMARK_MODELS, "many-tensors"])
def test_benchmark_files_are_valid(make: Any, tmp_path: Path) -> None:
    path = tmp_path / "bench.gguf"
    make(path)
    assert canonical(our_view(path)) == canonical(gguf_py_view(path))


# ... and complete instances of their architectures: the validate benchmark times a clean pass.
@pytest.mark.parametrize("arch", BENCHMARK_MODELS)
def test_benchmark_models_validate_clean(arch: str, tmp_path: Path) -> None:
    path = tmp_path / "bench.gguf"
    BENCHMARK_MODELS[arch](path)
    report = json.loads(run([binary("ARCHREG_CLI"), "validate", "--json", str(path)]).stdout)
    assert (report["arch"], report["valid"], report["findings"]) == (arch, True, [])
