"""Errors raised by the world-state store.

Every error is a :class:`StoreError`; most also derive from the matching builtin
(``ValueError``, ``FileNotFoundError``, ...) so callers that only know the builtins still
catch them. An error raised by a store call never leaves a committed row changed.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by :mod:`multiworld.state`."""


class NotAStoreError(StoreError, ValueError):
    """The location exists but does not hold a multiworld store (and is not empty)."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """Opening a store read-only or ``r+`` where there is none."""


class SchemaVersionError(StoreError):
    """The store was written with a newer schema than this code supports."""


class ReadOnlyError(StoreError, PermissionError):
    """A write was attempted through a store opened with mode ``"r"``."""


class InvalidWorldIdError(StoreError, ValueError):
    """A world id that is empty, too long, or could escape the ``worlds/`` group."""


class WorldNotFoundError(StoreError, LookupError):
    """No committed world with that id."""


class WorldExistsError(StoreError, FileExistsError):
    """``create_world`` / ``fork`` with an id that is already taken."""


class WorldLockedError(StoreError):
    """Another live writer holds the world (one writer per world)."""


class ValidationError(StoreError, ValueError):
    """Bad input (a step or initial state with a wrong field, shape or dtype, a bad parameter).

    Raised before anything is written.
    """


class StepOutOfRangeError(StoreError, IndexError):
    """A row index outside ``[0, committed_steps)`` (reads, forks, rewinds)."""


class WorldInUseError(StoreError):
    """A rewind or delete that would change rows a fork still reads from its parent."""


class CorruptStoreError(StoreError):
    """A committed row or a metadata document is missing or unreadable."""
