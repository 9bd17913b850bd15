"""The built wheel installs into a fresh venv and imports every subpackage."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import sysconfig
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]
# Releases the dependency ranges must accept: a GPU machine's torch build, a Ray cluster's own version.
OTHER_RELEASES = {"torch": ["2.4.0", "2.5.1", "2.14.1", "2.20.0"], "ray": ["2.40.0", "2.58.0", "2.70.0"]}


def requirements(lines: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in reqs}


def check_library_ranges(lines: list[str]) -> None:
    """No exact pin; torch and Ray have a lower bound and accept their other 2.x releases."""
    reqs = requirements(lines)
    pinned = [str(r) for r in reqs.values() if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"exact pins belong in constraints.txt, not in the package's dependencies: {pinned}"
    for name, versions in OTHER_RELEASES.items():
        spec = reqs[name].specifier
        assert any(s.operator in (">=", ">", "~=") for s in spec), f"{name} needs a lower bound: {spec}"
        assert not spec.contains("1.13.0"), f"{name} {spec} accepts a 1.x release"
        refused = [v for v in versions if not spec.contains(v)]
        assert not refused, f"{name} {spec} refuses other 2.x releases: {refused}"


def test_dependencies_are_ranges_and_the_tested_versions_are_constraints():
    project = PYPROJECT["project"]
    check_library_ranges(project["dependencies"])
    for extra in ("rllib", "vizdoom"):  # the extras a user installs are ranges too
        assert not any("==" in line for line in project["optional-dependencies"][extra]), extra
    constraints = [
        line.split("#")[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines() if line.strip()
    ]
    pins = requirements([c for c in constraints if c])
    assert str(pins["torch"].specifier) == "==2.13.0", "CI's torch: the CPU wheel of 2.13.0"
    assert all(str(r.specifier).startswith("==") for r in pins.values()), "constraints.txt holds exact versions"
    for name in [*requirements(project["dependencies"]), *requirements(project["optional-dependencies"]["dev"])]:
        assert name in pins, f"{name} has no tested version in constraints.txt"


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
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    check_library_ranges([r for r in requires if "extra ==" not in r])  # what pip reads, not the toml
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
