"""Byte-level access to a store location: local disk, zarr's MemoryStore, or any fsspec filesystem.

Two backends share one small interface (keys are '/'-separated paths below the store root):

* :class:`LocalBackend` (``_backend_local.py``) talks to the file system directly;
* :class:`ZarrStoreBackend` (``_backend_zarr.py``) wraps a zarr 3 ``Store`` (``MemoryStore``,
  ``FsspecStore`` for s3:// and friends);

both implement :class:`Backend` (``_backend_base.py``). :func:`open_backend` picks one for a URL.
Every name defined here before that split is still importable from this module.
"""

from __future__ import annotations

import os
from typing import Any

from ._backend_base import HOST as HOST
from ._backend_base import Backend
from ._backend_base import Lock as Lock
from ._backend_base import ShardRequest as ShardRequest
from ._backend_base import ShardWriter as ShardWriter
from ._backend_base import _ObjectShards as _ObjectShards
from ._backend_base import _proc_start as _proc_start
from ._backend_base import describe_holder as describe_holder
from ._backend_base import holder_info as holder_info
from ._backend_base import pid_alive as pid_alive
from ._backend_local import LocalBackend
from ._backend_local import _FlockLock as _FlockLock
from ._backend_local import _LocalShards as _LocalShards
from ._backend_local import _pread_rows as _pread_rows
from ._backend_local import _read_json as _read_json
from ._backend_local import _runs as _runs
from ._backend_zarr import ZarrStoreBackend
from ._backend_zarr import _LeaseLock as _LeaseLock
from .errors import CorruptStoreError as CorruptStoreError
from .errors import WorldLockedError as WorldLockedError

_MEMORY: dict[str, dict] = {}


def open_backend(
    url: str | os.PathLike, *, read_only: bool, storage_options: dict[str, Any] | None, fsync: bool
) -> Backend:
    """Local path / ``file://`` -> LocalBackend; ``memory://`` -> MemoryStore; else FsspecStore."""
    url = os.fspath(url)
    if "://" not in url:
        return LocalBackend(url, read_only=read_only, fsync=fsync)
    scheme, rest = url.split("://", 1)
    if scheme in ("file", "local"):
        return LocalBackend(rest, read_only=read_only, fsync=fsync)
    if scheme == "memory":
        from zarr.storage import MemoryStore

        # One dict per memory:// path for the life of the process, like fsspec's memory fs.
        mapping = _MEMORY.setdefault(rest.strip("/"), {})
        return ZarrStoreBackend(MemoryStore(mapping, read_only=read_only), url, read_only=read_only)
    from zarr.storage import FsspecStore

    store = FsspecStore.from_url(url, storage_options=dict(storage_options or {}), read_only=read_only)
    return ZarrStoreBackend(store, url, read_only=read_only)
