"""The built wheel installs into a fresh venv and imports every subpackage."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import sysconfig
import tomllib
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_every_source_package_is_listed_in_pyproject():
    """pyproject lists packages explicitly (state/ and agents/ are remapped); none may be forgotten."""
    roots = {
        "multiworld": ROOT / "multiworld",
        "multiworld.state": ROOT / "state",
        "multiworld.agents": ROOT / "agents",
    }
    found = set()
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            found.add(".".join((name, *rel)))
    assert found == set(PACKAGES)


@pytest.mark.slow
def test_built_wheel_imports_every_subpackage_in_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    wheel = next(dist.glob("multiworld-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.startswith(("state/", "agents/")) for n in names), "nothing installs as top-level state/agents"
    assert "multiworld/state/SCHEMA.md" in names
    for name in ("index.html", "app.js", "style.css"):  # the viewer's page is package data
        assert f"multiworld/viewer/static/{name}" in names
    for ckpt in ("default", "private", "stacked"):  # the model and its two baselines
        for name in ("model.safetensors", "config.json", "MODEL_CARD.md"):
            assert f"multiworld/checkpoints/{ckpt}/{name}" in names, "the shipped checkpoints are package data"

    # A fresh venv whose only multiworld is the wheel; the heavy dependencies come from this
    # environment's site-packages through a path entry (its .pth files, and so the editable
    # install, are not processed).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (pathlib.Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--quiet", str(wheel)], check=True
    )
    code = (
        "import importlib, importlib.util, pathlib\n"
        f"for name in {PACKAGES!r}:\n"
        "    mod = importlib.import_module(name)\n"
        f"    assert pathlib.Path(mod.__file__).is_relative_to({str(venv)!r}), (name, mod.__file__)\n"
        "assert importlib.util.find_spec('state') is None and importlib.util.find_spec('agents') is None\n"
        "from multiworld.sim.model import ModelSimulator\n"
        "from multiworld.world.scenarios import get_scenario\n"
        "ModelSimulator(get_scenario('forage-v0'), 2).reset([0])  # loads the packaged checkpoint\n"
        "from multiworld.viewer.server import _static_files\n"
        "assert b'app.js' in _static_files()['index.html']  # the page ships with the wheel\n"
        "print('ok')\n"
    )
    out = subprocess.run([py, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "ok"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_moved_modules_keep_their_old_import_paths():
    import importlib

    from multiworld.runtime import ray_options, ray_runtime, ray_simulator, ray_world

    moved = [f"runtime.{m}" for m in ("base", "oracle", "model", "stacked", "private")] + ["bench.bounds"]
    for old in moved:
        new = "multiworld.sim." + old.split(".")[1]
        assert importlib.import_module(f"multiworld.{old}") is importlib.import_module(new), old
    assert ray_runtime.RayOptions is ray_options.RayOptions and ray_runtime.WorldActor is ray_world.WorldActor
    assert ray_runtime.build is ray_simulator.build
