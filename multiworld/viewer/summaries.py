"""What the viewer API computes from a world's rows (track, marks, events, shared rows), and
the small LRU cache it keeps such answers in.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from multiworld.state import WorldReader


def _shared_rows(a: list[tuple[str, int]], b: list[tuple[str, int]]) -> int:
    """How many leading rows two worlds read from the same world (their lineages, root first)."""

    def segments(lineage):
        out, lo = [], 0
        for world, last in lineage:
            if last >= lo:
                out.append((world, lo, last))
                lo = last + 1
        return out

    sa, sb = segments(a), segments(b)
    i = j = t = 0
    while i < len(sa) and j < len(sb):
        (wa, _, ha), (wb, _, hb) = sa[i], sb[j]
        if wa != wb:
            break
        hi = min(ha, hb)
        t = hi + 1
        i += ha == hi
        j += hb == hi
    return t


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self.data: collections.OrderedDict = collections.OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        return None

    def put(self, key, value) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)


MARK_KINDS = ("push", "pickup", "reward", "end", "other")


def _kind(event: Any) -> str:
    kind = event.get("type") if isinstance(event, dict) else None
    return kind if kind in MARK_KINDS[:-1] else "other"


def _track(reader: WorldReader) -> bytes:
    rows = reader.read_many(["poses", "rewards"])
    n, agents = reader.steps, len(reader.agents)
    poses = np.nan_to_num(np.asarray(rows["poses"], np.float32)).reshape(n, agents, 3)
    returns = np.cumsum(np.nan_to_num(np.asarray(rows["rewards"], np.float64)), axis=0).T.astype(np.float32)
    header = np.array([n, agents], "<u4").tobytes()
    return header + poses.astype("<f4").tobytes() + np.ascontiguousarray(returns).astype("<f4").tobytes()


def _marks(reader: WorldReader) -> dict[str, Any]:
    rows = reader.read_many(["rewards", "terminations", "truncations", "events"])
    steps: dict[str, set[int]] = {k: set() for k in MARK_KINDS}
    counts = collections.Counter()
    for t, row in enumerate(rows["events"]):
        for ev in row:
            kind = _kind(ev)
            steps[kind].add(t)
            counts[kind] += 1
    rewards = np.nan_to_num(np.asarray(rows["rewards"], np.float64))
    reward_steps = np.flatnonzero((rewards != 0).any(axis=1))
    ended = np.asarray(rows["terminations"]).any(axis=1) | np.asarray(rows["truncations"]).any(axis=1)
    end_steps = np.flatnonzero(ended)
    steps["reward"].update(reward_steps.tolist())
    steps["end"].update(end_steps.tolist())
    counts["reward"] += len(reward_steps)
    counts["end"] += len(end_steps)
    return {
        "steps_total": reader.steps,
        "marks": {k: sorted(v) for k, v in steps.items()},
        "counts": {k: counts[k] for k in MARK_KINDS},
    }


def _events(reader: WorldReader, start: int, stop: int) -> list[dict[str, Any]]:
    agents = reader.agents
    rows = reader.read_many(["rewards", "terminations", "truncations", "events"], start, stop)
    rewards = np.nan_to_num(np.asarray(rows["rewards"], np.float64))
    term, trunc = np.asarray(rows["terminations"]), np.asarray(rows["truncations"])
    out: list[dict[str, Any]] = []
    for k, row in enumerate(rows["events"]):
        t = start + k
        for ev in row:
            out.append({**(ev if isinstance(ev, dict) else {"type": "event", "value": ev}), "step": t})
        if rewards[k].any():
            got = {agents[i]: round(float(rewards[k, i]), 4) for i in np.flatnonzero(rewards[k])}
            out.append({"type": "reward", "step": t, "rewards": got})
        if term[k].any() or trunc[k].any():
            out.append(
                {
                    "type": "end",
                    "step": t,
                    "terminated": [agents[i] for i in np.flatnonzero(term[k])],
                    "truncated": [agents[i] for i in np.flatnonzero(trunc[k])],
                }
            )
    return json.loads(json.dumps(out, default=str))  # plain JSON, whatever the store holds
