"""multiworld.state: the Zarr world-state store (source in top-level state/).

``WorldStore.open(url, mode)`` opens a store; one Zarr v3 group per world holds its rows
(row t = the state after t steps), a commit marker, and fork links. See SCHEMA.md.
"""

from ._layout import FORMAT, SCHEMA_VERSION
from .errors import (
    CorruptStoreError,
    InvalidWorldIdError,
    NotAStoreError,
    ReadOnlyError,
    SchemaVersionError,
    StepOutOfRangeError,
    StoreError,
    StoreNotFoundError,
    ValidationError,
    WorldExistsError,
    WorldInUseError,
    WorldLockedError,
    WorldNotFoundError,
)
from .store import WorldReader, WorldStore, WorldWriter, check_world_id

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "CorruptStoreError",
    "InvalidWorldIdError",
    "NotAStoreError",
    "ReadOnlyError",
    "SchemaVersionError",
    "StepOutOfRangeError",
    "StoreError",
    "StoreNotFoundError",
    "ValidationError",
    "WorldExistsError",
    "WorldInUseError",
    "WorldLockedError",
    "WorldNotFoundError",
    "WorldReader",
    "WorldStore",
    "WorldWriter",
    "check_world_id",
]
