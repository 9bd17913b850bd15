"""Record a simulator's worlds into the Zarr world-state store, one store world per episode.

Row t of a store world is the state after t steps (row 0 the reset state); row t >= 1 also
holds the joint action that produced it, its rewards and flags, events, the model's scene
tokens (model backend) and, optionally, every agent's rendered view. A model world also records
the checkpoint's sha256 (``checkpoint_hash``) and what else its exact resume needs
(:meth:`Simulator.record_attrs`: the reset mode and the render precision).

:class:`EpisodeRecorder` writes one world; :class:`WorldsRecorder` writes every world of a batch,
a new store world for each world that starts over. The Ray runtime's world actor records through
the latter, so a world's rows and attributes are the same whichever runtime ran it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from multiworld.sim.base import Observation, Simulator
from multiworld.state import WorldStore, WorldWriter


def checkpoint_hash_of(sim: Simulator) -> str | None:
    """The sha256 of the weights ``sim`` runs (None for the oracle)."""
    return getattr(sim, "checkpoint_sha256", None)


def world_attrs(sim: Simulator, world: int) -> dict[str, Any]:
    """The attributes a stored copy of world ``world`` of ``sim`` needs to be resumed exactly."""
    record = getattr(sim, "record_attrs", None)
    return dict(record(world)) if callable(record) else {}


@dataclasses.dataclass
class EpisodeRecorder:
    """Writes world ``world_index`` of ``sim`` to ``store`` under ``world_id``.

    Call :meth:`start` right after ``sim.reset`` and :meth:`step` after each ``sim.step``.
    Each step is committed as it is written (``commit_every`` > 1 batches commits: fewer
    writes, and a crash loses at most the uncommitted tail).
    """

    store: WorldStore
    world_id: str
    sim: Simulator
    scenario: str
    seed: int | None
    config: dict[str, Any]
    world_index: int = 0
    frames: bool = True
    commit_every: int = 1
    writer: WorldWriter | None = None

    def start(self, obs: Observation) -> None:
        b = self.world_index
        tokens = self._tokens()
        self.writer = self.store.create_world(
            self.world_id,
            self.sim.world_state().select(b),
            scenario=self.scenario,
            seed=self.seed,
            config=self.config,
            agents=self.sim.agent_names,
            checkpoint_hash=checkpoint_hash_of(self.sim),
            tokens_shape=None if tokens is None else tokens.shape,
            tokens_dtype="float32" if tokens is None else tokens.dtype,
            frame_shape=obs.rgb.shape[1:] if self.frames else None,
            events=obs.events[b],
            tokens=tokens,
            frames=obs.rgb[b] if self.frames else None,
            attrs=world_attrs(self.sim, b),
        )

    def step(self, obs: Observation, actions: np.ndarray, truncated: bool = False) -> int:
        if self.writer is None:
            raise RuntimeError("call start() before step()")
        b = self.world_index
        n = self.sim.num_agents
        row = self.writer.append(
            self.sim.world_state().select(b),
            actions=np.asarray(actions)[b],
            rewards=obs.rewards[b],
            terminations=np.full(n, bool(obs.terminated[b])),
            truncations=np.full(n, truncated),
            events=obs.events[b],
            tokens=self._tokens(),
            frames=obs.rgb[b] if self.frames else None,
            commit=False,
        )
        if self.writer.pending >= self.commit_every:
            self.writer.commit()
        return row

    def reopen(self) -> int:
        """Continue the stored world (after a crash) instead of :meth:`start`: its last committed row."""
        self.writer = self.store.writer(self.world_id)
        return self.writer.steps - 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close(commit=True)
            self.writer = None

    def _tokens(self) -> np.ndarray | None:
        tokens = self.sim.tokens()
        return None if tokens is None else np.asarray(tokens[self.world_index])


def episode_world_id(prefix: str, episode: int, world: int, num_worlds: int) -> str:
    """The store id of world ``world`` of a batch in episode ``episode``: ``f"{prefix}ep{episode:05d}"``,
    with ``-b{world}`` appended when the batch has more than one world."""
    name = f"{prefix}ep{episode:05d}"
    return name if num_worlds == 1 else f"{name}-b{world}"


class WorldsRecorder:
    """Every world of ``sim`` recorded into ``store``, one :class:`EpisodeRecorder` per world.

    :meth:`begin` names the store worlds that start with the next :meth:`record` (every world after
    a reset, the restarted ones after an autoreset); :meth:`record` writes one row of every world.
    The config recorded is the backend and the view size: nothing that depends on the runtime.
    """

    def __init__(self, store: WorldStore, sim: Simulator, scenario: str, frames: bool = False) -> None:
        self.store, self.sim, self.scenario, self.frames = store, sim, scenario, frames
        self.recorders: list[EpisodeRecorder | None] = [None] * sim.num_worlds
        self._new: dict[int, tuple[str, int]] = {}
        self._replace = False

    def begin(self, worlds: dict[int, str], seeds: Sequence[int], replace: bool = False) -> None:
        """The worlds ``worlds`` (index -> store world id) start over with seeds ``seeds[index]``: their
        records so far are complete, their next row is row 0 of a new store world (``replace``: an
        existing store world of that id is deleted first, as when a step runs again)."""
        for b in worlds:
            self._close(b)
        self._new = {int(b): (wid, int(seeds[b])) for b, wid in worlds.items()}
        self._replace = replace

    def record(self, obs: Observation, actions: np.ndarray | None, truncated: bool = False) -> None:
        """Write row ``obs.version[b]`` of every world b (``actions``: the joint actions of the step)."""
        for b in range(self.sim.num_worlds):
            if b in self._new:
                wid, seed = self._new.pop(b)
                if self._replace and wid in self.store:
                    self.store.delete_world(wid)
                h, w = obs.rgb.shape[2:4]
                config = {"backend": self.sim.backend, "height": int(h), "width": int(w)}
                self.recorders[b] = EpisodeRecorder(
                    self.store, wid, self.sim, self.scenario, seed, config, world_index=b, frames=self.frames
                )
                self.recorders[b].start(obs)
                continue
            rec = self.recorders[b]
            if rec is None:
                raise RuntimeError(f"world {b} has no store world to append version {obs.version[b]} to")
            if rec.writer.next_step != int(obs.version[b]):
                raise RuntimeError(f"store row {rec.writer.next_step} of {rec.world_id!r} != version {obs.version[b]}")
            rec.step(obs, actions, truncated)

    def reopen(self, world_ids: Sequence[str]) -> list[int]:
        """Continue the store worlds ``world_ids`` (one per world, after a crash): their last committed rows."""
        self.close()
        self.recorders = [
            EpisodeRecorder(self.store, wid, self.sim, self.scenario, None, {}, world_index=b, frames=self.frames)
            for b, wid in enumerate(world_ids)
        ]
        return [rec.reopen() for rec in self.recorders]

    def _close(self, b: int) -> None:
        if self.recorders[b] is not None:
            self.recorders[b].close()
            self.recorders[b] = None

    def close(self) -> None:
        for b in range(len(self.recorders)):
            self._close(b)
        self._new = {}


def stored_frames(readers: Sequence, last: Sequence[int], history: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(version (B,), rgb (B, N, H, W, 3))] of the last ``history`` stored rows of every world, oldest
    first; world b's newest row is ``last[b]`` (worlds may be at different versions)."""
    last = np.asarray(last, np.int64)
    k = int(min(history or 1, last.min() + 1))
    rows = [last - (k - 1 - j) for j in range(k)]
    return [(v.copy(), np.stack([r.frames(int(t)) for r, t in zip(readers, v, strict=True)])) for v in rows]
