"""What a reader and a writer need of the store that made them: :class:`StoreHandle`.

``WorldStore`` composes readers and writers; they hold it only through this protocol, so
``reader.py`` and ``writer.py`` never import ``store.py`` (the dependency runs store -> writer ->
reader -> this module).
"""

from __future__ import annotations

from typing import Any, Protocol

from ._backend_base import Backend
from ._world import _World


class StoreHandle(Protocol):
    """The store's side of a reader or writer (``WorldStore`` is one)."""

    _backend: Backend
    url: str
    lease_ttl: float

    def _load(self, world_id: str, arrays: bool = True, capacities: bool = False) -> _World:
        """The world's metadata and array specs as committed now (WorldNotFoundError if none)."""
        ...

    def _world_attrs(self, world_id: str) -> dict[str, Any] | None:
        """The world's committed attributes, or None while it does not exist or is being created."""
        ...

    def _writable(self, what: str) -> None:
        """Raise the error that names why the store cannot ``what`` (closed, read-only)."""
        ...

    def _children(self, world_id: str) -> dict[str, int]:
        """Worlds forked directly from ``world_id`` -> the fork step."""
        ...
