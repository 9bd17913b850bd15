"""Scene tokens: the world-aligned grid of D-dim cell tokens, its encoder and its decoder heads.

A scene of S x S cells becomes ``tokens (B, S, S, D)``, one token per cell, so every cell of
the world has a fixed place in the shared memory. The decoder heads read the symbolic scene
back out (wall material, floor pattern, goal, box, item); they serve rewards, probes, drift
measurement and the token refresh (decode, then re-encode: a projection onto valid scenes).

Cell classes (the unit of "decoded symbolic-state accuracy", see ``multiworld.bench.fidelity``):
``wall`` 0 floor / 1..4 material, ``floor`` 0..3 pattern, ``goal``, ``box``, ``item`` (alive).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multiworld.world.state import NUM_FLOOR_PATTERNS, NUM_WALL_MATERIALS, WorldState

NUM_WALL_CLASSES = NUM_WALL_MATERIALS + 1
CELL_FEATURES = NUM_WALL_CLASSES + NUM_FLOOR_PATTERNS + 3  # + goal, box, item


@dataclasses.dataclass
class SceneCodecConfig:
    dim: int = 32  # D, channels of a cell token
    hidden: int = 64


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


def one_hot_cells(maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, S, S, CELL_FEATURES) float one-hot encoding of the cell maps."""
    return torch.cat(
        [
            F.one_hot(maps["wall"], NUM_WALL_CLASSES),
            F.one_hot(maps["floor"], NUM_FLOOR_PATTERNS),
            maps["goal"][..., None],
            maps["box"][..., None],
            maps["item"][..., None],
        ],
        dim=-1,
    ).float()


class SceneCodec(nn.Module):
    """Scene encoder (symbolic cells -> tokens) and decoder heads (tokens -> cell-class logits)."""

    def __init__(self, cfg: SceneCodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = nn.Sequential(nn.Linear(CELL_FEATURES, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.dim))
        self.decoder = nn.Sequential(nn.Linear(cfg.dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, CELL_FEATURES))

    def encode(self, maps: dict[str, torch.Tensor]) -> torch.Tensor:
        """tokens (B, S, S, D) of the cell maps."""
        return self.encoder(one_hot_cells(maps))

    def logits(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-cell logits: wall (.., 5), floor (.., 4), goal/box/item (..) binary."""
        out = self.decoder(tokens)
        w, f = NUM_WALL_CLASSES, NUM_WALL_CLASSES + NUM_FLOOR_PATTERNS
        return {
            "wall": out[..., :w],
            "floor": out[..., w:f],
            "goal": out[..., f],
            "box": out[..., f + 1],
            "item": out[..., f + 2],
        }

    def decode(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-cell symbolic maps (long, (B, S, S)) decoded from tokens (argmax / threshold)."""
        lg = self.logits(tokens)
        return {
            "wall": lg["wall"].argmax(-1),
            "floor": lg["floor"].argmax(-1),
            "goal": (lg["goal"] > 0).long(),
            "box": (lg["box"] > 0).long(),
            "item": (lg["item"] > 0).long(),
        }

    def loss(self, tokens: torch.Tensor, maps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        lg = self.logits(tokens)
        loss = F.cross_entropy(lg["wall"].flatten(0, -2), maps["wall"].flatten())
        loss = loss + F.cross_entropy(lg["floor"].flatten(0, -2), maps["floor"].flatten())
        for k in ("goal", "box", "item"):
            loss = loss + F.binary_cross_entropy_with_logits(lg[k], maps[k].float())
        with torch.no_grad():
            dec = {
                "wall": lg["wall"].argmax(-1),
                "floor": lg["floor"].argmax(-1),
                **{k: (lg[k] > 0).long() for k in ("goal", "box", "item")},
            }
            acc = torch.stack([(dec[k] == maps[k]) for k in dec]).all(0).float().mean().item()
        return loss, {"codec_loss": loss.item(), "cell_acc": acc}

    def forward(self, maps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss(self.encode(maps), maps)
