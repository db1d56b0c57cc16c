"""The built-in graphs: one copy at the top-level `workflows/`, found by the engine and shipped in the wheel."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from talkgen.engines.comfyui.engine import BUILTIN, VERSIONS, ComfyUIEngine
from talkgen.mode import Mode
from talkgen.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FLAVOURS = ("native", "wrapper")
EIGHT = sorted(f"{flavour}/{mode.workflow}.json" for flavour, mode in itertools.product(FLAVOURS, Mode))


def loader(flavour: str) -> ComfyUIEngine:
    """The engine's workflow lookup without a server (its constructor would connect to one)."""
    engine = ComfyUIEngine.__new__(ComfyUIEngine)
    engine.settings = Settings(comfyui_flavour=flavour)
    engine.flavour = flavour
    return engine


def test_the_graphs_live_at_the_top_level_once():
    assert sorted(p.relative_to(ROOT / "workflows").as_posix() for p in (ROOT / "workflows").glob("*/*.json")) == EIGHT
    assert (ROOT / "workflows" / "versions.json").is_file()
    inside = [p for p in (ROOT / "talkgen").rglob("*.json") if "manifests" not in p.parts]
    assert inside == [], f"a second copy of the ComfyUI graphs inside the package: {inside}"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_engine_finds_every_mode_of_each_flavour(flavour):
    engine = loader(flavour)
    for mode in Mode:
        workflow = engine.workflow(mode.workflow)
        assert workflow.name == f"{mode.workflow}.json"
        assert workflow.graph, mode


def test_editable_install_reads_the_top_level_folder():
    import talkgen

    if Path(talkgen.__file__).resolve().parent != ROOT / "talkgen":
        pytest.skip(f"talkgen is imported from {talkgen.__file__}, not from this checkout")
    assert BUILTIN.resolve() == ROOT / "workflows"
    assert json.loads(VERSIONS.read_text())["comfyui"]["commit"]


def _build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of the sources, so the checkout gets no build/ or egg-info from the test."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("talkgen", "workflows"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path / "dist"
    # No build isolation: the build uses this environment's setuptools and needs no index (works offline).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                    "-w", str(out)], check=True, capture_output=True, text=True, timeout=240)
    (wheel,) = out.glob("talkgen-*.whl")
    return wheel


@pytest.mark.timeout(300)
def test_built_wheel_ships_the_graphs_where_the_engine_reads_them(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in EIGHT:
        assert f"talkgen/workflows/{name}" in names
    assert "talkgen/workflows/versions.json" in names
    assert "talkgen/workflows/__init__.py" in names
    assert not any(n.startswith("workflows/") for n in names), "the graphs must ship inside the talkgen package"
    # Every module of the source tree is in the wheel: pyproject lists the packages (it maps talkgen.workflows).
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "talkgen").rglob("*.py")}
    assert modules - names == set(), "add the missing subpackage to [tool.setuptools] packages in pyproject.toml"

    # The engine, imported from the unpacked wheel (not from this checkout), finds all eight graphs there.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import json, talkgen\n"
        "from talkgen.engines.comfyui.engine import BUILTIN, VERSIONS\n"
        "print(json.dumps({'package': talkgen.__file__, 'builtin': str(BUILTIN), 'versions': VERSIONS.is_file(),\n"
        "  'found': sorted(p.relative_to(BUILTIN).as_posix() for p in BUILTIN.glob('*/*.json'))}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         check=True, timeout=120)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(seen["package"]).is_relative_to(site)
    assert Path(seen["builtin"]) == site / "talkgen" / "workflows"
    assert seen["versions"] is True
    assert seen["found"] == EIGHT
