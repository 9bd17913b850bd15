"""Where a benchmark's figures come from: the commit, the checkpoints, the machine and its load.

Every results JSON carries :func:`stamp` under ``"provenance"``::

    {"commit": "<40 hex>", "dirty": false, "changed": [],     # tracked files only, results excluded
     "checkpoints": {"shared": {"path": "multiworld/checkpoints/default", "sha256": "3f5c..."}},
     "machine": {"cpu_model", "cores", "ram_gb", "platform", "python", "torch", "torch_threads"},
     "load": {"start": [1, 5, 15 min], "end": [...]}, "started": ISO time, "finished": ISO time}

``load.start`` and ``started`` are taken when this module is first imported, which every
benchmark does before it measures anything; ``end`` and ``finished`` when the stamp is made. No
host name is recorded. ``tests/test_readme_figures.py`` checks that every results file the README
cites holds this block from a clean commit; ``benchmarks/figures.py`` (``make figures``) refuses
to run from a tree with :func:`tree_state` dirty.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import pathlib
import platform
import subprocess
from collections.abc import Mapping

_START_LOAD = [round(x, 2) for x in os.getloadavg()]
_START_TIME = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

# Benchmarks write their results here while they run, so a run of several benchmarks would
# otherwise call its own outputs uncommitted changes; the results are outputs, not inputs.
RESULTS_PATHSPEC = ":(top,exclude)benchmarks/results"


def repo_root(start: pathlib.Path | None = None) -> pathlib.Path | None:
    """The git work tree this package's source lives in (None: installed without one)."""
    here = start or pathlib.Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True)
    except OSError:
        return None
    return pathlib.Path(out.stdout.strip()) if out.returncode == 0 else None


def tree_state(root: pathlib.Path | None = None) -> dict:
    """``{"commit": full sha or None, "dirty": bool or None, "changed": [tracked paths]}``.

    Dirty means a tracked file differs from HEAD (``git status --porcelain --untracked-files=no``)
    outside ``benchmarks/results/``; untracked files (scratch data, run directories) are not code
    a benchmark ran. Without git or outside a work tree: commit and dirty are None."""
    root = root or repo_root()
    if root is None:
        return {"commit": None, "dirty": None, "changed": []}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", RESULTS_PATHSPEC],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if head.returncode or status.returncode:
        return {"commit": None, "dirty": None, "changed": []}
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    return {"commit": head.stdout.strip(), "dirty": bool(changed), "changed": changed}


def commit() -> str:
    """Short commit of the source tree (``+dirty`` as :func:`tree_state` says), or "unknown"."""
    state = tree_state()
    if state["commit"] is None:
        return "unknown"
    return state["commit"][:7] + ("+dirty" if state["dirty"] else "")


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def machine() -> dict:
    """The machine a benchmark ran on (no host name). ``cpus`` is kept beside ``cores`` for the
    readers of older results; ``processor`` likewise."""
    import torch

    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cpus": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_of(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint's weights: ``model.safetensors`` in a checkpoint directory, or the
    file itself (cached by path, size and modification time: a benchmark hashes each once)."""
    p = pathlib.Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint weights at {p}: pass a checkpoint directory or its weights file")
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def checkpoint_hashes(checkpoints: Mapping[str, str | os.PathLike | None]) -> dict:
    """``{name: {"path", "sha256"}}`` for every named checkpoint (a None path: the shipped
    default); paths inside the repository are written relative to it."""
    from multiworld.models.checkpoint import DEFAULT_CHECKPOINT

    root = repo_root()
    out = {}
    for name, path in checkpoints.items():
        p = pathlib.Path(path if path is not None else DEFAULT_CHECKPOINT).resolve()
        shown = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)
        out[name] = {"path": shown, "sha256": sha256_of(p)}
    return out


def stamp(checkpoints: Mapping[str, str | os.PathLike | None] | None = None) -> dict:
    """The ``"provenance"`` block of a results JSON (see the module docstring)."""
    return {
        **tree_state(),
        "checkpoints": checkpoint_hashes(checkpoints or {}),
        "machine": machine(),
        "load": {"start": _START_LOAD, "end": [round(x, 2) for x in os.getloadavg()]},
        "started": _START_TIME,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
