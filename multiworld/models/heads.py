"""Decoder heads: the symbolic scene and the agents read back out of the latent state.

For measurement only (probes, drift, event benchmarks, the env's ``state()`` map): nothing a
head decodes is ever fed back into the state. They are trained as auxiliary targets (the oracle
may supervise training with its symbolic state), which also shapes what the tokens hold.

Cell classes (the unit of "decoded symbolic-state accuracy", see ``multiworld.bench.fidelity``):
``wall`` 0 floor / 1..4 material, ``floor`` 0..3 pattern, ``goal``, ``box``, ``item`` (alive).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multiworld.world.state import MAX_AGENTS, NUM_FLOOR_PATTERNS, NUM_WALL_MATERIALS, WorldState

NUM_WALL_CLASSES = NUM_WALL_MATERIALS + 1
CELL_CHANNELS = NUM_WALL_CLASSES + 3  # DecoderHeads.cell_probs: wall classes, goal, box, item
CELL_KEYS = ("wall", "floor", "goal", "box", "item")


def cell_maps(state: WorldState, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Symbolic per-cell maps of a state as long tensors ``(B, S, S)``: wall, floor, goal, box, item."""
    bsz, s = state.num_worlds, state.size
    box = np.zeros((bsz, s, s), np.int64)
    item = np.zeros((bsz, s, s), np.int64)
    bidx = np.repeat(np.arange(bsz), state.boxes.shape[1])
    box[bidx, state.boxes[..., 0].ravel(), state.boxes[..., 1].ravel()] = 1
    alive = state.items_alive.ravel()
    iidx = np.repeat(np.arange(bsz), state.items.shape[1])
    item[iidx[alive], state.items[..., 0].ravel()[alive], state.items[..., 1].ravel()[alive]] = 1
    maps = {"wall": state.walls, "floor": state.floor, "goal": state.goals, "box": box, "item": item}
    return {k: torch.as_tensor(np.asarray(v, np.int64), device=device) for k, v in maps.items()}


def cell_stack(state: WorldState) -> np.ndarray:
    """``(B, 5, S, S)`` uint8: the ``CELL_KEYS`` maps of :func:`cell_maps` stacked."""
    maps = cell_maps(state)
    return np.stack([maps[k].numpy() for k in CELL_KEYS], 1).astype(np.uint8)


@dataclasses.dataclass
class HeadsConfig:
    dim: int = 32
    hidden: int = 64


class DecoderHeads(nn.Module):
    def __init__(self, cfg: HeadsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        out = NUM_WALL_CLASSES + NUM_FLOOR_PATTERNS + 3
        self.cell = nn.Sequential(nn.Linear(cfg.dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, out))
        self.colour = nn.Sequential(nn.Linear(cfg.dim - 3, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, MAX_AGENTS))

    def logits(self, scene: torch.Tensor) -> dict[str, torch.Tensor]:
        o = self.cell(scene)
        w, f = NUM_WALL_CLASSES, NUM_FLOOR_PATTERNS
        return {
            "wall": o[..., :w],
            "floor": o[..., w : w + f],
            "goal": o[..., w + f],
            "box": o[..., w + f + 1],
            "item": o[..., w + f + 2],
        }

    def cell_probs(self, scene: torch.Tensor) -> torch.Tensor:
        """``(B, S, S, CELL_CHANNELS)``: each cell's wall-class probabilities, then those of goal,
        box and item (what the judgements of ``cell_judges`` read; floor patterns left out)."""
        lg = self.logits(scene)
        binary = torch.stack([lg["goal"], lg["box"], lg["item"]], -1).sigmoid()
        return torch.cat([lg["wall"].softmax(-1), binary], -1)

    def decode(self, scene: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, S, S) long maps of every cell class."""
        lg = self.logits(scene)
        return {k: (v.argmax(-1) if v.dim() == scene.dim() else (v > 0).long()) for k, v in lg.items()}

    @staticmethod
    def cell_losses(lg: dict[str, torch.Tensor], maps: dict) -> torch.Tensor:
        """``(B, S, S)``: each cell's loss over every class (wall and floor cross-entropy, goal, box
        and item binary cross-entropy weighing 2) of logits ``lg`` against the ``CELL_KEYS`` maps."""
        loss = F.cross_entropy(lg["wall"].movedim(-1, 1), maps["wall"], reduction="none")
        loss = loss + F.cross_entropy(lg["floor"].movedim(-1, 1), maps["floor"], reduction="none")
        for k in ("goal", "box", "item"):
            loss = loss + 2 * F.binary_cross_entropy_with_logits(lg[k], maps[k].float(), reduction="none")
        return loss

    def loss(self, scene: torch.Tensor, agents: torch.Tensor, maps: dict, colors: torch.Tensor):
        lg = self.logits(scene)
        loss = self.cell_losses(lg, maps).mean()
        col = self.colour(agents[..., 3:])
        loss = loss + 0.5 * F.cross_entropy(col.flatten(0, -2), colors.flatten())
        with torch.no_grad():
            dec = {k: (v.argmax(-1) if v.dim() == scene.dim() else (v > 0).long()) for k, v in lg.items()}
            ok = torch.stack([(dec[k] == maps[k]) for k in CELL_KEYS]).all(0).float().mean()
            logs = {"cell_acc": ok}
        return loss, logs
