"""Procedural textures and colours, packed into one flat palette ("atlas") of RGB entries.

The renderer computes, per pixel, an index into this atlas and gathers colours once at
the end. Layout (offsets in :class:`Atlas`):
  walls:    (material 1..5, face side 0..1, texel col, texel row)   material 5 is a box; column-major
            because the renderer walks down a wall column
  floor:    (pattern 0..4, texel row, texel col)                     pattern 4 is a goal tile
  ceiling:  one entry per image row (a gradient)
  agents:   (colour id 0..15, shade 0..SHADES-1), then EYE (white)
  items:    (shade 0..SHADES-1)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from multiworld.world.state import MAX_AGENTS, NUM_FLOOR_PATTERNS, NUM_WALL_MATERIALS

TEXELS = 8
SHADES = 8
BOX_MATERIAL = NUM_WALL_MATERIALS + 1
GOAL_PATTERN = NUM_FLOOR_PATTERNS

AGENT_COLOURS = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
        [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230],
        [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
        [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195],
    ],
    np.float32,
)  # fmt: skip
assert len(AGENT_COLOURS) == MAX_AGENTS


def _grid() -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:TEXELS, 0:TEXELS]


def _wall_texture(material: int) -> np.ndarray:
    """(T, T, 3) float texture of a wall material; 1..4 walls, 5 box."""
    r, c = _grid()
    if material == 1:  # red brick: staggered courses with mortar lines
        mortar = (r % 4 == 3) | (((c + 4 * ((r // 4) % 2)) % 8) == 0)
        return np.where(mortar[..., None], [200, 190, 180], [160, 50, 40])
    if material == 2:  # blue vertical stripes
        return np.where((c % 4 < 2)[..., None], [40, 70, 170], [90, 130, 220])
    if material == 3:  # green panels with a dark frame
        frame = (r == 0) | (c == 0) | (r == TEXELS - 1) | (c == TEXELS - 1)
        return np.where(frame[..., None], [20, 70, 30], [70, 160, 80])
    if material == 4:  # grey/yellow checker
        return np.where((((r // 2) + (c // 2)) % 2 == 0)[..., None], [200, 190, 60], [110, 110, 110])
    # box: wooden planks in a dark frame with a cross brace
    frame = (r == 0) | (c == 0) | (r == TEXELS - 1) | (c == TEXELS - 1) | (r == c) | (r + c == TEXELS - 1)
    return np.where(frame[..., None], [90, 55, 20], [190, 130, 60])


def _floor_texture(pattern: int) -> np.ndarray:
    r, c = _grid()
    if pattern == 0:  # light checker
        return np.where((((r // 4) + (c // 4)) % 2 == 0)[..., None], [150, 150, 150], [120, 120, 120])
    if pattern == 1:  # teal horizontal stripes
        return np.where((r % 4 < 2)[..., None], [60, 120, 120], [90, 150, 150])
    if pattern == 2:  # sand with dots
        return np.where(((r % 4 == 1) & (c % 4 == 1))[..., None], [120, 100, 60], [190, 170, 120])
    if pattern == 3:  # purple diagonals
        return np.where((((r + c) % 4) < 2)[..., None], [110, 80, 130], [140, 110, 160])
    # goal tile: red cross on white
    cross = (np.abs(r - c) <= 1) | (np.abs(r + c - (TEXELS - 1)) <= 1)
    return np.where(cross[..., None], [220, 30, 30], [235, 235, 235])


@dataclasses.dataclass(frozen=True)
class Atlas:
    colours: np.ndarray  # (A, 3) uint8
    wall: int
    floor: int
    ceiling: int
    agent: int
    eye: int
    item: int


def build_atlas(height: int) -> Atlas:
    parts, offsets, total = [], {}, 0

    def add(name: str, block: np.ndarray) -> None:
        nonlocal total
        offsets[name] = total
        block = block.reshape(-1, 3)
        parts.append(block)
        total += len(block)

    walls = []
    for m in range(1, BOX_MATERIAL + 1):
        tex = _wall_texture(m).astype(np.float32)
        walls.append(np.stack([tex, tex * 0.7]).transpose(0, 2, 1, 3))  # y-faces darker: a depth cue
    add("wall", np.stack(walls))
    add("floor", np.stack([_floor_texture(p) for p in range(GOAL_PATTERN + 1)]).astype(np.float32))
    rows = np.arange(height)[:, None] / max(height - 1, 1)
    add("ceiling", (1 - rows) * np.array([40, 40, 70]) + rows * np.array([110, 110, 140]))
    shade = 0.55 + 0.45 * np.sqrt(1 - (np.linspace(-1, 1, SHADES) ** 2))  # a lit cylinder
    add("agent", AGENT_COLOURS[:, None, :] * shade[None, :, None])
    add("eye", np.array([[255, 255, 255]], np.float32))
    add("item", np.array([255, 200, 0], np.float32)[None] * shade[:, None])
    colours = np.clip(np.concatenate(parts), 0, 255).round().astype(np.uint8)
    return Atlas(colours=colours, **offsets)
