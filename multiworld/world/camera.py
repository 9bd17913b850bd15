"""The egocentric camera of every agent: one definition for the oracle and the learned model.

A pinhole camera at (x, y, eye_height), looking along the agent's heading with no pitch or roll.
Depth is the distance along the view axis; image column ``w`` looks along
``forward + right * cam_x[w]`` and pixel row ``r`` at elevation slope ``row_tan[r]``, with
``focal = (width / 2) / tan(fov / 2)`` pixels. Points nearer than ``near`` (depth) are not drawn.

The oracle's :class:`~multiworld.world.render.RenderConfig` is this camera plus the sizes of
its sprites (``RenderConfig.camera`` is the camera alone); the world model's geometry
(``multiworld.models.geometry``) takes the same class. The recorder's ``camera`` metadata is
:meth:`Camera.metadata`.
"""

from __future__ import annotations

import dataclasses
import math

import torch


@dataclasses.dataclass(frozen=True)
class Camera:
    """Pinhole camera of every agent: image size, horizontal field of view, eye height (cells)
    and near plane (cells)."""

    height: int = 64
    width: int = 64
    fov_degrees: float = 90.0
    eye_height: float = 0.5
    near: float = 0.05

    def __post_init__(self) -> None:
        if self.height < 2 or self.width < 2 or self.height % 2 or self.width % 2:
            raise ValueError(f"image size must be even and >= 2, got {self.height}x{self.width}")
        if not 10.0 <= self.fov_degrees <= 170.0:
            raise ValueError(f"fov_degrees must be in [10, 170], got {self.fov_degrees}")
        if not 0.0 < self.eye_height < 1.0:
            raise ValueError(f"eye_height must be in (0, 1), got {self.eye_height}")

    @property
    def camera(self) -> Camera:
        """The camera alone (for a subclass such as ``RenderConfig``, without its other fields)."""
        if type(self) is Camera:
            return self
        return Camera(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Camera)})

    @property
    def focal(self) -> float:
        """Focal length in pixels (square pixels: the same across and down)."""
        return (self.width / 2) / math.tan(math.radians(self.fov_degrees) / 2)

    def cam_x(self, device=None) -> torch.Tensor:
        """(W,) lateral slope of each column's ray (right component per unit of depth)."""
        return (torch.arange(self.width, device=device, dtype=torch.float32) + 0.5 - self.width / 2) / self.focal

    def row_tan(self, device=None) -> torch.Tensor:
        """(H,) tangent of each pixel row's elevation (positive above the horizon)."""
        return (self.height / 2 - torch.arange(self.height, device=device, dtype=torch.float32) - 0.5) / self.focal

    def metadata(self, far: float) -> dict:
        """The recorder contract's ``camera`` dict (``multiworld.data.recorder``); ``far`` in cells."""
        return {**dataclasses.asdict(self.camera), "far": float(far)}
