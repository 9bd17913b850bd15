"""Record a simulator's worlds into the Zarr world-state store, one store world per episode.

Row t of a store world is the state after t steps (row 0 the reset state); row t >= 1 also
holds the joint action that produced it, its rewards and flags, events, the model's scene
tokens (model backend) and, optionally, every agent's rendered view. A model world also records
the checkpoint's sha256 (``checkpoint_hash``) and what else its exact resume needs
(:meth:`Simulator.record_attrs`: the reset mode, the sampler and its noise key); with the
generative head on its views are always recorded (the sampler conditions on them).
"""

from __future__ import annotations

import dataclasses
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
    writes, and a crash loses at most the uncommitted tail). ``frames=False`` is overridden
    when the simulator needs its views to resume (``sim.resume_needs_frames``).
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
        self.frames = bool(self.frames or getattr(self.sim, "resume_needs_frames", False))
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

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close(commit=True)
            self.writer = None

    def _tokens(self) -> np.ndarray | None:
        tokens = self.sim.tokens()
        return None if tokens is None else np.asarray(tokens[self.world_index])
