"""Pixel pairs of two agents that see the same world point, from the oracle's buffers.

For every world and every ordered pair of agents (a, o): each pixel of a's view that shows a
static surface (wall, box or floor; not the ceiling, whose colour follows the image row, and
not billboards, which turn to face each viewer) is projected into o's camera; it is a match
when it lands inside o's image, in front of o, and o's depth buffer there agrees with the
projected depth (o sees that point, not an occluder) and o's point buffer gives the same world
point. The cross-view consistency metric compares the colours two views give each match.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from multiworld.world.render import ENTITY_CEILING, RenderConfig, Views, entity_offsets, project
from multiworld.world.state import WorldState

DEPTH_TOLERANCE = 0.02  # relative depth agreement for "o sees that point"


@dataclasses.dataclass
class Matches:
    """Matched pixel pairs, flat arrays of length P: (world, agent, row, col) on both sides."""

    world: np.ndarray
    agent_a: np.ndarray
    row_a: np.ndarray
    col_a: np.ndarray
    agent_o: np.ndarray
    row_o: np.ndarray
    col_o: np.ndarray

    def __len__(self) -> int:
        return len(self.world)

    def count(self, num_worlds: int) -> np.ndarray:
        """(B,) matches per world."""
        return np.bincount(self.world, minlength=num_worlds)

    def shuffled(self, rng: np.random.Generator) -> Matches:
        """The same pixels of agent a, each paired with the o-side of a random match of the same
        world, the same agent o and the same image row of o: pixels at the same place in o's
        image that (mostly) show another point. The chance level of agreement, with image position
        held fixed, so an image that depends only on the pixel position (a mean frame) has no
        advantage over it."""
        key = (self.world * (self.agent_o.max(initial=0) + 1) + self.agent_o) * (self.row_o.max(initial=0) + 1)
        key = key + self.row_o
        grouped = np.argsort(key, kind="stable")
        shuffled = np.lexsort((rng.random(len(self)), key))
        perm = np.empty(len(self), np.int64)
        perm[grouped] = shuffled  # each match -> a random member of its own group (a permutation)
        return Matches(
            self.world, self.agent_a, self.row_a, self.col_a, self.agent_o[perm], self.row_o[perm], self.col_o[perm]
        )


def find_matches(state: WorldState, views: Views, cfg: RenderConfig) -> Matches:
    """All matched pixel pairs of ``views`` (rendered with ``buffers=True`` from ``state``)."""
    points = views.points.cpu().numpy()
    depth = views.depth.cpu().numpy()
    entity = views.entity.cpu().numpy()
    bsz, n, h, w = depth.shape
    sprite_start = entity_offsets(state.size, state.boxes.shape[1], state.items.shape[1])["item"]
    parts = []
    agent_of_pixel = np.repeat(np.arange(n), h * w)
    pix = np.tile(np.arange(h * w), n)
    for b in range(bsz):
        pts = points[b].reshape(-1, 3)
        static = (entity[b].reshape(-1) < sprite_start) & (entity[b].reshape(-1) != ENTITY_CEILING)
        for o in range(n):
            row, col, d = project(pts, state.poses[b, o], cfg)
            ok = static & (agent_of_pixel != o) & (d > 0.1) & (row >= 0) & (row < h) & (col >= 0) & (col < w)
            idx = np.nonzero(ok)[0]
            r, c = row[idx].astype(np.int64), col[idx].astype(np.int64)
            seen = np.abs(depth[b, o, r, c] - d[idx]) < DEPTH_TOLERANCE * d[idx]
            same = np.linalg.norm(points[b, o, r, c] - pts[idx], axis=-1) < 0.05 * d[idx] + 0.05
            keep = seen & same
            idx, r, c = idx[keep], r[keep], c[keep]
            if len(idx):
                parts.append(
                    (np.full(len(idx), b), agent_of_pixel[idx], pix[idx] // w, pix[idx] % w, np.full(len(idx), o), r, c)
                )
    if not parts:
        empty = np.zeros(0, np.int64)
        return Matches(*(empty,) * 7)
    return Matches(*(np.concatenate(col).astype(np.int64) for col in zip(*parts, strict=True)))


def pair_differences(rgb: np.ndarray, m: Matches) -> np.ndarray:
    """(P,) mean absolute RGB difference (0..255) between the two pixels of every match.

    ``rgb``: (B, N, H, W, 3) views (generated or oracle) of the same step as the matches."""
    x = rgb[m.world, m.agent_a, m.row_a, m.col_a].astype(np.float64)
    y = rgb[m.world, m.agent_o, m.row_o, m.col_o].astype(np.float64)
    return np.abs(x - y).mean(axis=-1)


def disagreement(rgb: np.ndarray, m: Matches) -> tuple[float, int]:
    """(sum of per-match differences, number of matches): sums aggregate over steps and worlds."""
    d = pair_differences(rgb, m)
    return float(d.sum()), len(d)
