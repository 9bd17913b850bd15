"""The trivial bounds every benchmark table shows beside the learned variants.

- ``persistence``: each agent's view stays its last real frame before the rollout (the one
  observed at reset) and nobody moves: nothing changes, ever. A learned model that does not beat
  it at a horizon has learned nothing usable there.
- ``mean``: every view is the training data's mean frame (recorded in the stacked-frames
  checkpoint by ``multiworld train --stacked-frames``), for every agent at every step.

Both see what the learned models see at reset and nothing afterwards: no actions matter, no
rewards, endings or events.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from multiworld.bench.variants import Variant, register
from multiworld.sim.base import Observation
from multiworld.sim.stacked import FrameSimulator, stacked_weights


class _Static(FrameSimulator):
    frames: np.ndarray  # (B, N, H, W, 3) uint8, what every step shows

    def _advance(self, actions: np.ndarray):
        self._check_started()
        self.version = self.version + 1
        zeros = np.zeros((self.num_worlds, self.num_agents), np.float32)
        return zeros, np.zeros(self.num_worlds, bool), [[] for _ in range(self.num_worlds)]

    def _observe(self, rewards, terminated, events) -> Observation:
        return self._observation(self.frames.copy(), rewards, terminated, events)


class PersistenceSimulator(_Static):
    """Every agent's view is its reset frame forever; poses never change."""

    backend = "persistence"

    def _begin(self, mask: np.ndarray, views: torch.Tensor) -> None:
        fresh = views.cpu().numpy()
        if mask.all():
            self.frames = fresh
        else:
            self.frames = self.frames.copy()
            self.frames[mask] = fresh


class MeanFrameSimulator(_Static):
    """Every view is the training data's mean frame (from a stacked-frames checkpoint)."""

    backend = "mean"

    def __init__(self, scenario, num_agents: int, num_worlds: int = 1, checkpoint: str | pathlib.Path | None = None):
        from multiworld.models.checkpoint import STACKED_CHECKPOINT, load_checkpoint

        super().__init__(scenario, num_agents, num_worlds)
        model = load_checkpoint(STACKED_CHECKPOINT if checkpoint is None else checkpoint)
        mean = getattr(model, "mean_frame", None)
        if mean is None:
            raise ValueError(f"checkpoint {checkpoint} records no mean frame (a stacked-frames checkpoint does)")
        frame = (mean.float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        self.frames = np.broadcast_to(frame, (num_worlds, num_agents, *frame.shape)).copy()

    def _begin(self, mask: np.ndarray, views: torch.Tensor) -> None:
        pass  # the mean frame does not depend on what was observed


register(Variant("persistence", "persistence (bound)", "bound", lambda s, n, b: PersistenceSimulator(s.scenario, n, b)))
register(
    Variant(
        "mean",
        "mean frame (bound)",
        "bound",
        lambda s, n, b: MeanFrameSimulator(s.scenario, n, b, s.weights("mean")),
        weights=stacked_weights,
        default_weights="stacked",
    )
)
