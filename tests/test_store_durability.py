"""Crash durability (SIGKILL at random moments) and several processes writing one store.

Run as a script, this file is the writer process the tests start and kill::

    python tests/test_store_durability.py write STORE WORLD SEED MAX_STEPS
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from multiworld.state import WorldStore
from multiworld.state import synthetic as syn

SHAPES = syn.Shapes(size=6, agents=3, boxes=2, items=3, tokens=(4, 4, 8), frame_hw=(6, 6))
SHARD_ROWS = 16  # small shards: kills also land while shards are created and filled


def write(path: str, world: str, seed: int, max_steps: int, shapes: syn.Shapes = SHAPES) -> None:
    """Record world ``world`` up to ``max_steps`` rows, resuming after its committed rows.

    The commit cadence is random (1-4 rows per commit), so a kill finds uncommitted rows on
    disk as often as half-written commits.
    """
    store = WorldStore.open(path, mode="a", shard_rows=SHARD_ROWS)
    if world in store:
        writer = store.writer(world)
    else:
        writer = store.create_world(
            world,
            syn.initial_state(seed, shapes),
            scenario="durability",
            seed=seed,
            **shapes.world_kwargs(),
            **syn.initial_extras(seed, shapes),
        )
    cadence = np.random.default_rng()
    first = True
    while writer.next_step < max_steps:
        row = syn.step_row(seed, writer.next_step, shapes)
        writer.append(row.pop("state"), **row, commit=first or cadence.random() < 0.4)
        if first:  # warmed up (imports done): the parent now kills within a short window
            print("ready", writer.next_step, flush=True)
            first = False
    writer.close()
    print("done", flush=True)


def _spawn(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "write", *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
    )


_EXPECTED: dict[tuple[int, int], dict] = {}


def _expected(seed: int, t: int) -> dict:
    if (seed, t) not in _EXPECTED:
        _EXPECTED[seed, t] = syn.expected(seed, t, SHAPES)
    return _EXPECTED[seed, t]


def check_world(path, world: str, seed: int) -> int:
    """Every committed row equals the cleanly generated one; returns the committed row count."""
    with WorldStore.open(path, mode="r") as store:
        reader = store.world(world)
        n = reader.steps
        syn.assert_rows(reader, [_expected(seed, t) for t in range(n)])
        return n


def _kill_at_random_moments(procs: dict[str, subprocess.Popen], from_start: set[str], rng: np.random.Generator):
    """SIGKILL each writer at its own random moment.

    Writers in ``from_start`` die anywhere from interpreter start-up through world creation
    into writing; the others within 60 ms of their "ready" line (printed after their first
    commit), i.e. in the middle of steady appends and commits.
    """
    start = time.monotonic()
    deadlines = {w: start + rng.uniform(0.0, 0.9) for w in from_start}
    waiting = {procs[w].stdout: w for w in procs if w not in from_start}
    while deadlines or waiting:
        now = time.monotonic()
        for w in [w for w, d in deadlines.items() if d <= now]:
            procs[w].send_signal(signal.SIGKILL)
            del deadlines[w]
        if not (deadlines or waiting):
            break
        timeout = min(deadlines.values(), default=now + 30) - now
        ready, _, _ = select.select(list(waiting), [], [], max(0.0, timeout))
        if not ready and not deadlines:
            raise AssertionError("writers did not start")
        for stream in ready:
            w = waiting.pop(stream)
            line = stream.readline()
            assert line.startswith("ready"), line
            deadlines[w] = time.monotonic() + rng.uniform(0.0, 0.06)


def test_sigkill_at_random_moments_keeps_every_committed_row(tmp_path):
    """22 kills: two writers (different worlds of one store) per round, each killed at its own moment."""
    path = str(tmp_path / "store")
    rng = np.random.default_rng(1234)
    worlds = {"w": 7, "v": 8}
    committed = dict.fromkeys(worlds, 0)
    progressed = 0  # kills that found the writer committing rows (not starting up)
    rounds = 11
    for rnd in range(rounds):
        procs = {w: _spawn(path, w, seed, 10**6) for w, seed in worlds.items()}
        try:
            _kill_at_random_moments(procs, {w for i, w in enumerate(worlds) if (rnd + i) % 4 == 0}, rng)
        finally:
            for proc in procs.values():
                proc.kill()
                proc.wait(10)
        for w, seed in worlds.items():
            with WorldStore.open(path, mode="a") as store:
                if w not in store:
                    assert committed[w] == 0  # killed before the world's first commit
                    continue
            before = committed[w]
            committed[w] = check_world(path, w, seed)  # every committed row, after every kill
            assert committed[w] >= before, "a committed row was lost"
            progressed += committed[w] > before
    assert progressed >= rounds, f"only {progressed} of {2 * rounds} kills hit a writer at work"
    for w, seed in worlds.items():
        assert committed[w] > 20, f"too few rows committed across {rounds} kills ({committed})"
        # a clean run resumes over the torn tail, and every row of the whole history is intact
        proc = _spawn(path, w, seed, committed[w] + 5)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "done" in out
        assert check_world(path, w, seed) == committed[w] + 5
    zarr = pytest.importorskip("zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(path, mode="r")["worlds/w"]
        n = g.attrs["committed_steps"]
        np.testing.assert_array_equal(g["poses"][:n], np.stack([syn.expected(7, t, SHAPES)["poses"] for t in range(n)]))


@pytest.mark.parametrize("shard_rows", [1, 16])
def test_a_commit_torn_before_its_marker_is_ignored_then_overwritten(tmp_path, shard_rows, monkeypatch):
    """A crash after a commit wrote its rows but before the marker: the rows stay invisible."""
    path = str(tmp_path / "store")
    store = WorldStore.open(path, mode="w", shard_rows=shard_rows)
    w = store.create_world(
        "w",
        syn.initial_state(7, SHAPES),
        scenario="torn",
        seed=7,
        **SHAPES.world_kwargs(),
        **syn.initial_extras(7, SHAPES),
    )
    for t in range(1, 4):
        row = syn.step_row(7, t, SHAPES)
        w.append(row.pop("state"), **row)
    backend = store._backend
    real = backend.put_document

    def crash(key, data):
        if key == "worlds/w/zarr.json":
            raise SystemExit("killed")  # the rows were written, the marker never is
        return real(key, data)

    monkeypatch.setattr(backend, "put_document", crash)
    for t in range(4, 7):
        row = syn.step_row(99, t, SHAPES)  # a history that must never become visible
        w.append(row.pop("state"), **row, commit=False)
    with pytest.raises(SystemExit):
        w.commit()
    monkeypatch.setattr(backend, "put_document", real)
    w._release()  # the process is gone: its lock with it
    with WorldStore.open(path, mode="r") as again:
        assert again.world("w").steps == 4
    assert check_world(path, "w", 7) == 4
    zarr = pytest.importorskip("zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torn = zarr.open_group(path, mode="r")["worlds/w/poses"][4:7]  # beyond the marker: on disk, unseen
    np.testing.assert_array_equal(torn, np.stack([syn.step_row(99, t, SHAPES)["state"]["poses"] for t in range(4, 7)]))
    proc = _spawn(path, "w", 7, 9)  # a new writer overwrites the torn rows with the real ones
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "done" in out
    assert check_world(path, "w", 7) == 9


def test_processes_writing_different_worlds(tmp_path):
    path = str(tmp_path / "store")
    WorldStore.open(path, mode="w").close()
    procs = [_spawn(path, f"p{i}", 100 + i, 40) for i in range(3)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and "done" in out, out
    with WorldStore.open(path, mode="r") as store:
        assert store.worlds() == ["p0", "p1", "p2"]
        assert store.attrs["format"] == "multiworld-store"
    for i in range(3):
        assert check_world(path, f"p{i}", 100 + i) == 40


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(f"usage: {sys.argv[0]} write STORE WORLD SEED MAX_STEPS")
