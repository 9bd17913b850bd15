"""Accuracy of a decoded symbolic state against the oracle's, per world.

:func:`symbolic_accuracy` is the model card's (defined in :mod:`multiworld.bench.fidelity`);
:func:`state_accuracy` the per-kind breakdown. Its scores are fractions in [0, 1], averaged over worlds:
- ``walls``:       cells whose wall code (floor or material) is right;
- ``boxes``:       cells whose box occupancy (box / no box) is right;  ``box_recall``: true box cells
  that hold a box in the prediction;
- ``items``:       cells whose alive-item occupancy is right;           ``item_recall`` likewise;
- ``agent_cells``: agents whose (row, col) cell is right (agents are compared by slot).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from multiworld.models.heads import cell_maps
from multiworld.world.state import WorldState

HEADING_BINS = 8


def _occupancy(cells: np.ndarray, alive: np.ndarray, size: int) -> np.ndarray:
    """(B, S, S) bool map of the ``cells (B, K, 2)`` that are ``alive (B, K)``."""
    occ = np.zeros((cells.shape[0], size, size), bool)
    b, k = np.nonzero(alive)
    r = np.clip(cells[b, k, 0], 0, size - 1)
    c = np.clip(cells[b, k, 1], 0, size - 1)
    occ[b, r, c] = True
    return occ


def state_accuracy(pred: WorldState, true: WorldState) -> dict[str, float]:
    """Mean accuracies (see module docstring) of ``pred`` against ``true`` (same worlds)."""
    if pred.num_worlds != true.num_worlds or pred.size != true.size:
        raise ValueError(f"states differ in shape: {pred.num_worlds}x{pred.size} vs {true.num_worlds}x{true.size}")
    s = true.size
    out = {"walls": float((pred.walls == true.walls).mean())}
    for name, recall, cells, alive in (
        ("boxes", "box_recall", "boxes", None),
        ("items", "item_recall", "items", "items_alive"),
    ):
        p_alive = np.ones(getattr(pred, cells).shape[:2], bool) if alive is None else getattr(pred, alive)
        t_alive = np.ones(getattr(true, cells).shape[:2], bool) if alive is None else getattr(true, alive)
        p = _occupancy(getattr(pred, cells), p_alive, s)
        t = _occupancy(getattr(true, cells), t_alive, s)
        out[name] = float((p == t).mean())
        out[recall] = float((p & t).sum() / t.sum()) if t.sum() else 1.0
    cell = lambda poses: np.floor(poses[..., 1::-1]).astype(np.int64)  # noqa: E731 - (row, col) of (x, y)
    out["agent_cells"] = float(np.all(cell(pred.poses) == cell(true.poses), axis=-1).mean())
    return out


def symbolic_accuracy(model_state: WorldState, oracle: WorldState) -> dict[str, float]:
    """The model card's decoded symbolic-state accuracy (defined in :mod:`multiworld.bench.fidelity`)."""
    mm, om = cell_maps(model_state), cell_maps(oracle)
    cells = torch.stack([mm[k] == om[k] for k in om]).all(0).numpy()

    def agent_key(s: WorldState) -> np.ndarray:
        b = np.floor((s.poses[..., 2] + math.pi) / (2 * math.pi / HEADING_BINS) + 0.5).astype(np.int64) % HEADING_BINS
        return np.stack([np.floor(s.poses[..., 1]), np.floor(s.poses[..., 0]), b], -1)

    agents = np.all(agent_key(model_state) == agent_key(oracle), -1)
    total = cells.size + agents.size
    return {
        "accuracy": float((cells.sum() + agents.sum()) / total),
        "cell_accuracy": float(cells.mean()),
        "agent_accuracy": float(agents.mean()),
    }
