"""Quantised tokens: the latent state lives on a fixed lattice, so small errors snap back.

Every scene token and agent latent is layer-normalised (no affine) and then rounded, channel by
channel, to a lattice of ``LEVELS`` values spaced ``STEP`` apart on ``[-BOUND, BOUND]`` (finite
scalar quantisation, FSQ, as in Genie's and IRIS's discrete tokens but without a codebook).
A state-update that changes a channel by less than half a step leaves it exactly where it was:
cells where nothing happens are fixed points of the update, and a rollout cannot accumulate
the small errors that made the first edition's walls and floors drift. Gradients pass straight
through the rounding (the straight-through estimator).

The lattice matches the scale of a layer-normalised token (unit variance), so the rounding moves
a channel by at most a quarter (rms 0.14): about the state noise the model is trained under.
"""

from __future__ import annotations

import torch
from torch import nn

BOUND = 2.0
STEP = 0.5
LEVELS = int(2 * BOUND / STEP) + 1  # 9 values per channel


def unit(x: torch.Tensor) -> torch.Tensor:
    """Layer norm without affine parameters over the last axis: every token at unit scale."""
    return nn.functional.layer_norm(x, x.shape[-1:])


def snap(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to the lattice (clamped to ``[-BOUND, BOUND]``), straight-through gradients."""
    q = torch.round(x.clamp(-BOUND, BOUND) / STEP) * STEP
    return x + (q - x).detach()


def quantize(x: torch.Tensor) -> torch.Tensor:
    """A token from features: layer-normalised, then snapped to the lattice."""
    return snap(unit(x))


def on_lattice(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` is a lattice value (what a stored state must hold)."""
    return bool(((x / STEP).round() * STEP == x).all() and (x.abs() <= BOUND).all())
