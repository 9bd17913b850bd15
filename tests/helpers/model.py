"""A tiny, untrained world model whose every output depends on its inputs (for backend tests)."""

from __future__ import annotations

import pathlib

import torch


def tiny_world_model(seed: int = 0):
    """The tiny preset with random weights; the parameters that start at zero (the motion
    network's and the residual heads' last layers) are drawn too, so agents move and every head
    gives non-zero outputs."""
    from multiworld.models.presets import get_preset
    from multiworld.models.world_model import WorldModel

    torch.manual_seed(seed)
    model = WorldModel(get_preset("tiny").model)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 1 and float(p.abs().sum()) == 0:
                p.normal_(0, 0.1)
    return model.eval()


def save_tiny_checkpoint(path: pathlib.Path, seed: int = 0) -> pathlib.Path:
    from multiworld.models.checkpoint import save_checkpoint

    save_checkpoint(tiny_world_model(seed), path)
    return path
