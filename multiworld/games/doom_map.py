"""The static geometry of a Doom map, read from its WAD (UDMF ``TEXTMAP``) without the engine.

Gives the map's bounds, its one-sided (solid) lines, and the grid the env lays over the map:
``grid_size`` x ``grid_size`` square cells covering the bounds, x east, y south (the arena's
frame: Doom's y points north, so it is flipped), heading 0 along +x and pi/2 along +y.
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct

import numpy as np

_BLOCK = re.compile(r"(\w+)\s*\{([^}]*)\}", re.S)
_FIELD = re.compile(r"(\w+)\s*=\s*(\"[^\"]*\"|[^;]+);")


def _lumps(data: bytes, where: str) -> list[tuple[str, bytes]]:
    if len(data) < 12 or data[:4] not in (b"IWAD", b"PWAD"):
        raise ValueError(f"{where} is not a WAD file")
    _, count, offset = struct.unpack("<4sii", data[:12])
    out = []
    for i in range(count):
        pos, size, name = struct.unpack("<ii8s", data[offset + 16 * i : offset + 16 * i + 16])
        out.append((name.rstrip(b"\0").decode("ascii", "replace"), data[pos : pos + size]))
    return out


def read_textmap(path: str, map_name: str) -> str:
    """The UDMF ``TEXTMAP`` text of ``map_name`` (e.g. ``"MAP01"``) in the WAD at ``path``."""
    with open(path, "rb") as f:
        lumps = _lumps(f.read(), path)
    names = [n for n, _ in lumps]
    key = map_name.upper()
    if key not in names:
        raise ValueError(f"{path} has no map {map_name!r}; it has {[n for n in names if n.startswith(('MAP', 'E'))]}")
    i = names.index(key)
    if i + 1 >= len(lumps) or lumps[i + 1][0] != "TEXTMAP":
        raise ValueError(f"map {map_name!r} of {path} is not in UDMF (TEXTMAP) format")
    return lumps[i + 1][1].decode("utf-8", "replace")


def _parse(text: str) -> dict[str, list[dict[str, str]]]:
    blocks: dict[str, list[dict[str, str]]] = {}
    for kind, body in _BLOCK.findall(text):
        blocks.setdefault(kind.lower(), []).append({k.lower(): v.strip() for k, v in _FIELD.findall(body)})
    return blocks


@dataclasses.dataclass(frozen=True)
class DoomMap:
    """Bounds (Doom units), solid lines, and the grid laid over them."""

    bounds: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max
    solid_lines: np.ndarray  # (L, 4) float64 x1, y1, x2, y2 of one-sided lines
    grid_size: int

    @property
    def cell_size(self) -> float:
        """Doom units per cell: the grid is square and covers the longer side of the bounds."""
        x0, y0, x1, y1 = self.bounds
        return max(x1 - x0, y1 - y0) / self.grid_size

    def to_cells(self, x, y, angle_degrees):
        """Doom position and angle (degrees, counter-clockwise from east, y north) -> grid
        ``(x, y, heading)`` in cells, y south, heading in [-pi, pi)."""
        x0, _, _, y1 = self.bounds
        c = self.cell_size
        heading = np.remainder(-np.radians(angle_degrees) + math.pi, 2 * math.pi) - math.pi
        return (np.asarray(x) - x0) / c, (y1 - np.asarray(y)) / c, heading

    def walls(self) -> np.ndarray:
        """(S, S) uint8: 1 where a solid line crosses the cell, else 0."""
        s = self.grid_size
        grid = np.zeros((s, s), np.uint8)
        for x1, y1, x2, y2 in self.solid_lines:
            (cx1, cx2), (cy1, cy2), _ = self.to_cells(np.array([x1, x2]), np.array([y1, y2]), 0.0)
            n = max(2, math.ceil(4 * math.hypot(cx2 - cx1, cy2 - cy1)) + 1)
            t = np.linspace(0.0, 1.0, n)
            cols = np.clip(np.floor(cx1 + t * (cx2 - cx1)).astype(int), 0, s - 1)
            rows = np.clip(np.floor(cy1 + t * (cy2 - cy1)).astype(int), 0, s - 1)
            grid[rows, cols] = 1
        return grid


def load_map(path: str, map_name: str, grid_size: int) -> DoomMap:
    blocks = _parse(read_textmap(path, map_name))
    verts = np.array([(float(v["x"]), float(v["y"])) for v in blocks.get("vertex", [])], np.float64)
    if not len(verts):
        raise ValueError(f"map {map_name!r} of {path} has no vertices")
    solid = []
    for line in blocks.get("linedef", []):
        if int(line.get("sideback", "-1")) < 0:
            a, b = verts[int(line["v1"])], verts[int(line["v2"])]
            solid.append((a[0], a[1], b[0], b[1]))
    lo, hi = verts.min(0), verts.max(0)
    return DoomMap(
        (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), np.array(solid, np.float64).reshape(-1, 4), grid_size
    )
