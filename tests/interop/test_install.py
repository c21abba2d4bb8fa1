"""`cmake --install` gives a self-contained tree: bin/archreg finds the specs and plugins installed
beside it (share/archreg/arch-specs, lib/archreg/plugins) and nothing of the source or build tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_fixtures  # noqa: E402
import make_runtime_models  # noqa: E402
from binaries import archreg  # noqa: E402

# Every arch with a spec in arch-specs/ is installed; the ones with a runtime test model
# (make_runtime_models.MODELS) have a forward pass, the others are validate-only.
ARCHS = sorted(p.stem for p in (REPO / "arch-specs").glob("*.yaml"))
RUNNABLE = {arch for arch, _, _ in make_runtime_models.MODELS.values()}


def test_installed_archreg_uses_its_own_specs_and_plugins(tmp_path: Path):
    build = Path(archreg()).resolve().parents[1]  # <build>/core/archreg
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)], check=True, capture_output=True, timeout=300)
    installed = prefix / "bin" / "archreg"
    assert installed.is_file()

    listing = subprocess.run([str(installed), "list", "--json"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    rows = {row["arch"]: row for row in json.loads(listing.stdout)}
    assert set(rows) == set(ARCHS)  # test-only archs and plugins are not installed
    assert RUNNABLE <= set(ARCHS)
    for arch in ARCHS:
        assert rows[arch]["state"] == ("runnable" if arch in RUNNABLE else "validate-only"), rows[arch]
        assert Path(rows[arch]["spec"]).resolve() == (prefix / "share" / "archreg" / "arch-specs" / f"{arch}.yaml").resolve()
        assert Path(rows[arch]["plugin"]).resolve().parent == (prefix / "lib" / "archreg" / "plugins").resolve()

    make_fixtures.write_valid(tmp_path)
    result = subprocess.run([str(installed), "validate", str(tmp_path / "qwen3moe.fused.gguf")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
