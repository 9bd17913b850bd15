"""Deterministic, varied fake world data for tests, benchmarks and demos of the store.

Every row is a pure function of ``(seed, t)``, so a process that was killed can be checked
against rows regenerated cleanly, and a resumed writer regenerates exactly the rows it lost.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from multiworld.world.state import NUM_ACTIONS

from ._layout import OPTIONAL_STEP_ARRAYS, STEP_ARRAYS

EVENT_TYPES = ("push", "pickup", "bump", "goal")


@dataclasses.dataclass(frozen=True)
class Shapes:
    size: int = 8
    agents: int = 3
    boxes: int = 2
    items: int = 3
    tokens: tuple[int, ...] | None = (4, 4, 8)
    tokens_dtype: str = "float16"
    frame_hw: tuple[int, int] | None = None

    def world_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``WorldStore.create_world`` for these shapes."""
        return {
            "tokens_shape": self.tokens,
            "tokens_dtype": self.tokens_dtype,
            "frame_shape": self.frame_hw,
            "agents": [f"agent_{i}" for i in range(self.agents)],
        }


def initial_state(seed: int, shapes: Shapes = Shapes()) -> dict[str, np.ndarray]:
    """Row 0's state (no batch axis); static fields depend on ``seed`` only."""
    rng = np.random.default_rng([seed, 0x5EED])
    S, N, K = shapes.size, shapes.agents, shapes.items
    walls = (rng.random((S, S)) < 0.2).astype(np.uint8) * rng.integers(1, 5, (S, S), dtype=np.uint8)
    return {
        "walls": walls,
        "floor": rng.integers(0, 4, (S, S), dtype=np.uint8),
        "goals": rng.random((S, S)) < 0.1,
        "items": rng.integers(0, S, (K, 2), dtype=np.int16),
        "colors": rng.permutation(16)[:N].astype(np.uint8),
        **_dynamic(seed, 0, shapes),
    }


def _dynamic(seed: int, t: int, shapes: Shapes) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, t, 1])
    S, N, M, K = shapes.size, shapes.agents, shapes.boxes, shapes.items
    return {
        "boxes": rng.integers(0, S, (M, 2), dtype=np.int16),
        "items_alive": rng.random(K) < 0.7,
        "poses": np.concatenate(
            [rng.uniform(0, S, (N, 2)), rng.uniform(-np.pi, np.pi, (N, 1))], axis=1, dtype=np.float32
        ),
        "step": np.int64(t),
    }


def events(seed: int, t: int, shapes: Shapes = Shapes()) -> list[dict[str, Any]]:
    rng = np.random.default_rng([seed, t, 2])
    out = []
    for _ in range(int(rng.integers(0, 4))):
        kind = EVENT_TYPES[int(rng.integers(0, len(EVENT_TYPES)))]
        ev: dict[str, Any] = {"type": kind, "agent": f"agent_{int(rng.integers(0, shapes.agents))}"}
        if kind == "push":
            ev.update(box=int(rng.integers(0, max(1, shapes.boxes))), **{"from": [1, 2], "to": [1, 3]})
        elif kind == "pickup":
            ev.update(item=int(rng.integers(0, max(1, shapes.items))), value=float(rng.random()))
        elif kind == "goal":
            ev.update(reached=True, tags=["a", "b"], extra={"nested": [1, {"x": None}]})
        out.append(ev)
    return out


def step_row(seed: int, t: int, shapes: Shapes = Shapes()) -> dict[str, Any]:
    """Keyword arguments of ``WorldWriter.append`` for row ``t >= 1`` of world ``seed``."""
    rng = np.random.default_rng([seed, t, 3])
    N = shapes.agents
    row: dict[str, Any] = {
        "state": _dynamic(seed, t, shapes),
        "actions": rng.integers(0, NUM_ACTIONS, N, dtype=np.int16),
        "rewards": rng.normal(size=N).astype(np.float32),
        "terminations": rng.random(N) < 0.05,
        "truncations": rng.random(N) < 0.05,
        "events": events(seed, t, shapes),
    }
    if shapes.tokens is not None:
        row["tokens"] = rng.normal(size=shapes.tokens).astype(shapes.tokens_dtype)
    if shapes.frame_hw is not None:
        h, w = shapes.frame_hw
        base = rng.integers(0, 256, (N, 1, 1, 3), dtype=np.uint8)
        row["frames"] = np.broadcast_to(base, (N, h, w, 3)).copy()
        row["frames"][:, : h // 2] //= 2  # compressible, still varied
    return row


def initial_extras(seed: int, shapes: Shapes = Shapes()) -> dict[str, Any]:
    """Row 0's optional payloads (events, tokens, frames) as ``create_world`` keyword arguments."""
    row = step_row(seed, 0, shapes)
    return {k: row[k] for k in ("events", "tokens", "frames") if k in row}


def expected(seed: int, t: int, shapes: Shapes = Shapes()) -> dict[str, Any]:
    """Every per-step array's value at row ``t`` as the store returns it (row 0 included)."""
    N = shapes.agents
    if t == 0:
        state = _dynamic(seed, 0, shapes)
        row = {
            "actions": np.full(N, -1, np.int16),
            "rewards": np.zeros(N, np.float32),
            "terminations": np.zeros(N, bool),
            "truncations": np.zeros(N, bool),
            **initial_extras(seed, shapes),
        }
    else:
        row = step_row(seed, t, shapes)
        state = row.pop("state")
    row.update(state)
    return row


def assert_rows(reader, expected_rows: list[dict[str, Any]], start: int = 0) -> None:
    """Check that rows ``start, start + 1, ...`` of a world match ``expected_rows`` (as :func:`expected`
    returns them) in every per-step array they hold and in the events; AssertionError names the
    first array and row that differ."""
    stop = start + len(expected_rows)
    arrays = (*STEP_ARRAYS, *OPTIONAL_STEP_ARRAYS)
    for name in (a for a in arrays if a != "events" and a in expected_rows[0]):
        got = reader.read(name, start, stop)
        want = np.stack([e[name] for e in expected_rows])
        if not np.array_equal(got, want):
            bad = next(t for t in range(len(want)) if not np.array_equal(got[t], want[t]))
            raise AssertionError(f"{reader.world_id}: row {start + bad} of {name} differs from the expected one")
    assert reader.read("events", start, stop) == [e["events"] for e in expected_rows], f"{reader.world_id}: events"
