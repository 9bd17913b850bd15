"""A world's metadata as read from its group document, the keys of its objects, array growth."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from . import _layout as L

MIN_CAPACITY = 64
DEFAULT_SHARD_ROWS = 256


def _package_version() -> str:
    try:
        from multiworld import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - partial installs
        return "unknown"


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _grow(capacity: int, needed: int) -> int:
    cap = max(capacity, MIN_CAPACITY)
    while cap < needed:
        cap = cap * 2 if cap < 4096 else cap + 4096
    return cap


@dataclasses.dataclass
class _World:
    """A world's group attributes and array specifications, as read at one moment."""

    world_id: str
    attrs: dict[str, Any]
    specs: dict[str, L.ArraySpec]
    capacity: dict[str, int]

    @property
    def committed(self) -> int:
        return int(self.attrs["committed_steps"])

    @property
    def base(self) -> int:
        """Rows ``<= base`` are read from the parent chain; -1 for a root world."""
        parent = self.attrs.get("parent")
        return -1 if not parent else int(parent["step"])

    @property
    def step_specs(self) -> list[L.ArraySpec]:
        return [s for s in self.specs.values() if s.per_step]


def _world_key(world_id: str, rest: str = "zarr.json") -> str:
    return f"worlds/{world_id}/{rest}"


def _lock_key(world_id: str) -> str:
    return f"locks/{world_id}.lock"
