"""Pixel pairs of two agents that see the same world point, from depth buffers and poses alone.

The oracle's correspondences (:mod:`multiworld.bench.correspondence`) read the renderer's
per-pixel world points and entity ids; a foreign world (ViZDoom) has neither, only each
view's depth and each agent's pose. Here a pixel of agent a's view is lifted to the world
point its depth puts it at (the ray through the pixel's centre, scaled so its view-axis
depth is the pixel's depth), projected into agent o's camera, and kept when it lands inside
o's image, in front of o, and o's own depth there agrees with the projected depth (o sees
that point, not an occluder). The result is the oracle's :class:`Matches`, so the
consistency metrics take either.

Camera: the recorder contract's ``camera`` (``multiworld.data.recorder``): ``height``,
``width``, ``fov_degrees`` (horizontal), optional ``fov_vertical_degrees`` (non-square
pixels, e.g. ViZDoom's native frames), ``eye_height`` (cells). Poses ``(x, y, heading)`` in
cells, x east, y south; the camera looks along the heading with no pitch or roll. An agent's
eye may sit at its own height (``eye_z``, e.g. on Doom's stairs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from multiworld.bench.correspondence import DEPTH_TOLERANCE, Matches

MIN_DEPTH = 0.1  # cells: points closer to the other camera than this are not matched (as the oracle)


@dataclasses.dataclass(frozen=True)
class PinholeCamera:
    """Focal lengths in pixels across (``fx``) and down (``fy``), image size, eye height in cells."""

    height: int
    width: int
    fx: float
    fy: float
    eye_height: float

    @classmethod
    def from_metadata(cls, camera: Mapping) -> PinholeCamera:
        """From the contract's camera dict (or a ``RenderConfig``-like object with the same fields)."""
        get = camera.get if isinstance(camera, Mapping) else lambda k, d=None: getattr(camera, k, d)
        h, w = int(get("height")), int(get("width"))
        fx = (w / 2) / math.tan(math.radians(float(get("fov_degrees"))) / 2)
        fov_v = get("fov_vertical_degrees", None)
        fy = fx if fov_v is None else (h / 2) / math.tan(math.radians(float(fov_v)) / 2)
        return cls(h, w, fx, fy, float(get("eye_height")))


def lift(depth: np.ndarray, pose: np.ndarray, cam: PinholeCamera, eye_z: float | None = None) -> np.ndarray:
    """World points ``(H, W, 3)`` (x, y, z in cells) seen by the pixels of one view at ``depth (H, W)``."""
    h, w = depth.shape
    x, y, heading = (float(v) for v in pose)
    fwd = np.array([math.cos(heading), math.sin(heading)])
    right = np.array([-fwd[1], fwd[0]])
    cam_x = (np.arange(w) + 0.5 - w / 2) / cam.fx
    row_tan = (h / 2 - np.arange(h) - 0.5) / cam.fy
    d = depth.astype(np.float64)
    px = x + d * (fwd[0] + right[0] * cam_x[None, :])
    py = y + d * (fwd[1] + right[1] * cam_x[None, :])
    pz = (cam.eye_height if eye_z is None else float(eye_z)) + d * row_tan[:, None]
    return np.stack([px, py, pz], -1)


def project(points: np.ndarray, pose: np.ndarray, cam: PinholeCamera, eye_z: float | None = None):
    """(row, col, depth) of world points ``(..., 3)`` in the camera at ``pose``: continuous pixel
    coordinates (pixel (r, c) covers [r, r+1) x [c, c+1)) and the view-axis depth."""
    x, y, heading = (float(v) for v in pose)
    fx_, fy_ = math.cos(heading), math.sin(heading)
    rel_x, rel_y = points[..., 0] - x, points[..., 1] - y
    depth = rel_x * fx_ + rel_y * fy_
    lateral = -rel_x * fy_ + rel_y * fx_
    safe = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
    eye = cam.eye_height if eye_z is None else float(eye_z)
    col = cam.width / 2 + cam.fx * lateral / safe
    row = cam.height / 2 - cam.fy * (points[..., 2] - eye) / safe
    return row, col, depth


def find_depth_matches(
    depth: np.ndarray,
    poses: np.ndarray,
    camera: PinholeCamera | Mapping,
    eye_z: np.ndarray | None = None,
    tolerance: float = DEPTH_TOLERANCE,
    abs_tolerance: float = 0.0,
    far: float | None = None,
) -> Matches:
    """All matched pixel pairs of the views of ``B`` worlds from their depth alone.

    depth: ``(B, N, H, W)`` (or ``(N, H, W)``: one world) view-axis depth in cells; pixels that
           are not finite, not positive, or at or beyond ``far`` (a saturated depth buffer) are
           never matched.
    poses: ``(B, N, 3)`` (or ``(N, 3)``) agent poses; ``eye_z``: ``(B, N)`` eye heights in cells
           (default: the camera's ``eye_height`` for everyone).
    tolerance, abs_tolerance: o sees the point when ``|depth_o - d| < tolerance * d + abs_tolerance``
           (quantized depth, like an 8-bit buffer, needs ``abs_tolerance`` of about one level).
    """
    cam = camera if isinstance(camera, PinholeCamera) else PinholeCamera.from_metadata(camera)
    depth = np.asarray(depth, np.float64)
    poses = np.asarray(poses, np.float64)
    if depth.ndim == 3:
        depth, poses = depth[None], poses[None]
        eye_z = None if eye_z is None else np.asarray(eye_z)[None]
    bsz, n, h, w = depth.shape
    if (h, w) != (cam.height, cam.width):
        raise ValueError(f"depth is {h}x{w}, the camera {cam.height}x{cam.width}")
    if poses.shape != (bsz, n, 3):
        raise ValueError(f"poses must be {(bsz, n, 3)}, got {poses.shape}")
    limit = np.inf if far is None else float(far)
    parts = []
    pix = np.arange(h * w)
    for b in range(bsz):
        eyes = [None if eye_z is None else float(eye_z[b, i]) for i in range(n)]
        for a in range(n):
            d_a = depth[b, a]
            ok_a = (np.isfinite(d_a) & (d_a > 0) & (d_a < limit)).reshape(-1)
            if not ok_a.any():
                continue
            pts = lift(np.where(np.isfinite(d_a), d_a, 0.0), poses[b, a], cam, eyes[a]).reshape(-1, 3)[ok_a]
            src = pix[ok_a]
            for o in range(n):
                if o == a:
                    continue
                row, col, d = project(pts, poses[b, o], cam, eyes[o])
                inside = (d > MIN_DEPTH) & (row >= 0) & (row < h) & (col >= 0) & (col < w)
                idx = np.nonzero(inside)[0]
                r, c = row[idx].astype(np.int64), col[idx].astype(np.int64)
                seen = depth[b, o, r, c]
                keep = np.isfinite(seen) & (seen < limit) & (np.abs(seen - d[idx]) < tolerance * d[idx] + abs_tolerance)
                idx, r, c = idx[keep], r[keep], c[keep]
                if len(idx):
                    parts.append(
                        (
                            np.full(len(idx), b),
                            np.full(len(idx), a),
                            src[idx] // w,
                            src[idx] % w,
                            np.full(len(idx), o),
                            r,
                            c,
                        )
                    )
    if not parts:
        empty = np.zeros(0, np.int64)
        return Matches(*(empty,) * 7)
    return Matches(*(np.concatenate(col).astype(np.int64) for col in zip(*parts, strict=True)))


def match_keys(m: Matches, shape: tuple[int, int, int]) -> np.ndarray:
    """One int64 per match (world, a, row_a, col_a, o, row_o, col_o) for set comparisons; ``shape = (N, H, W)``."""
    n, h, w = shape
    key = m.world
    for v, size in ((m.agent_a, n), (m.row_a, h), (m.col_a, w), (m.agent_o, n), (m.row_o, h), (m.col_o, w)):
        key = key * size + v
    return key


def agreement(found: Matches, reference: Matches, shape: tuple[int, int, int]) -> tuple[float, float]:
    """(precision, recall) of ``found`` against ``reference`` (e.g. the oracle's matches)."""
    a, b = match_keys(found, shape), match_keys(reference, shape)
    both = len(np.intersect1d(a, b))
    return both / max(len(a), 1), both / max(len(b), 1)
