"""Schema v1 layout: array specifications, Zarr v3 metadata documents and chunk codecs.

The store writes Zarr v3 itself (metadata JSON and chunk bytes) instead of going through
``zarr.Array.__setitem__``: each zarr write costs about a millisecond of event-loop and
codec-pipeline overhead, and a step touches a dozen arrays. The formats produced here are
the ones zarr-python 3.1 produces for the same arrays (checked by the interop tests, which
read every array back with plain ``zarr.open_group``):

* codec ``bytes`` (little endian): a chunk is the C-order bytes of the row;
* ``bytes`` + ``zstd``: the same bytes, one zstd frame (numcodecs' Zstd, as zarr uses);
* ``vlen-bytes``: numcodecs' VLenBytes layout, ``u32 count`` then ``u32 length, bytes`` per item.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from typing import Any

import numpy as np

from .errors import CorruptStoreError

SCHEMA_VERSION = 1
FORMAT = "multiworld-store"
FRAMES_ZSTD_LEVEL = 3

# Array roles inside a world group.
STATIC_FIELDS = ("walls", "floor", "goals", "items", "colors")
STATE_STEP_FIELDS = ("boxes", "items_alive", "poses", "step")
TRANSITION_FIELDS = ("actions", "rewards", "terminations", "truncations")
# Always present, in write order; "tokens" and "frames" are optional per world.
STEP_ARRAYS = ("poses", "actions", "rewards", "terminations", "truncations", "boxes", "items_alive", "step", "events")
OPTIONAL_STEP_ARRAYS = ("tokens", "frames")

_ZARR_DTYPE = {
    np.dtype("bool"): "bool",
    np.dtype("uint8"): "uint8",
    np.dtype("int16"): "int16",
    np.dtype("int64"): "int64",
    np.dtype("float16"): "float16",
    np.dtype("float32"): "float32",
}
_NUMPY_DTYPE = {v: k for k, v in _ZARR_DTYPE.items()}
VLEN = "variable_length_bytes"


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """One array of a world group: per-step (rows along axis 0) or static (one chunk)."""

    name: str
    dtype: np.dtype | None  # None for variable-length bytes
    shape: tuple[int, ...]  # per-row shape (per-step arrays) or full shape (static arrays)
    per_step: bool
    codec: str = "raw"  # "raw", "zstd" or "vlen"
    fill: Any = 0
    dims: tuple[str, ...] | None = None  # Zarr v3 dimension_names (xarray's dims), "step" first if per-step
    shard_rows: int = 1  # per-step arrays: rows per stored object (1: a plain chunk per row)

    @property
    def row_nbytes(self) -> int:
        return 0 if self.dtype is None else math.prod(self.shape) * self.dtype.itemsize

    @property
    def empty(self) -> bool:
        """A zero-size row (no boxes or no items): no chunk is ever written or read."""
        return self.dtype is not None and math.prod(self.shape) == 0

    @property
    def sharded(self) -> bool:
        return self.per_step and self.shard_rows > 1

    @property
    def index_nbytes(self) -> int:
        """Size of a shard's index (at its start): ``(offset, nbytes)`` as two u64 per row."""
        return 16 * self.shard_rows

    def chunk_key(self, row: int | None = None) -> str:
        """Key of the object holding row ``row`` (per-step: its chunk or shard) or the static chunk."""
        if self.per_step:
            return "c." + ".".join([str(row // self.shard_rows)] + ["0"] * len(self.shape))
        return "c." + ".".join(["0"] * max(1, len(self.shape)))

    def fixed_offset(self, slot: int) -> int | None:
        """Offset of a row's chunk in its shard when rows have a fixed size (raw codec), else None."""
        return self.index_nbytes + slot * self.row_nbytes if self.codec == "raw" else None

    def metadata(self, length: int | None = None) -> dict[str, Any]:
        """The array's Zarr v3 ``zarr.json`` document (``length`` rows for a per-step array)."""
        if self.per_step:
            shape = [int(length or 0), *self.shape]
            chunks = [1, *(max(1, d) for d in self.shape)]
        else:
            shape = list(self.shape) if self.shape else [1]
            chunks = [max(1, d) for d in shape]
        if self.codec == "vlen":
            codecs: list[dict[str, Any]] = [{"name": "vlen-bytes", "configuration": {}}]
            data_type = VLEN
            fill: Any = ""
        else:
            assert self.dtype is not None
            data_type = _ZARR_DTYPE[self.dtype]
            bytes_codec: dict[str, Any] = {"name": "bytes"}
            if self.dtype.itemsize > 1:
                bytes_codec["configuration"] = {"endian": "little"}
            codecs = [bytes_codec]
            if self.codec == "zstd":
                codecs.append({"name": "zstd", "configuration": {"level": FRAMES_ZSTD_LEVEL, "checksum": False}})
            fill = _json_fill(self.fill, self.dtype)
        if self.sharded:
            codecs = [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": chunks,
                        "codecs": codecs,
                        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                        "index_location": "start",
                    },
                }
            ]
            chunks = [self.shard_rows, *chunks[1:]]
        return {
            "shape": shape,
            "data_type": data_type,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "."}},
            "fill_value": fill,
            "codecs": codecs,
            "attributes": {},
            "dimension_names": list(self.dims) if self.dims else None,
            "zarr_format": 3,
            "node_type": "array",
            "storage_transformers": [],
        }

    # ------------------------------------------------------------------ codecs
    def encode(self, value: Any) -> bytes:
        """Chunk bytes of one row (``value`` already validated: right dtype and shape)."""
        if self.codec == "vlen":
            data = bytes(value)
            return struct.pack("<II", 1, len(data)) + data
        raw = np.ascontiguousarray(value, dtype=self.dtype.newbyteorder("<")).tobytes()
        if self.codec == "zstd":
            return _zstd().encode(raw)
        return raw

    def decode(self, data: bytes, where: str) -> Any:
        if self.codec == "vlen":
            if len(data) < 8:
                raise CorruptStoreError(f"{where}: truncated vlen-bytes chunk")
            count, size = struct.unpack_from("<II", data, 0)
            if count != 1 or len(data) != 8 + size:
                raise CorruptStoreError(f"{where}: malformed vlen-bytes chunk")
            return bytes(data[8:])
        if self.codec == "zstd":
            data = bytes(_zstd().decode(data))
        if len(data) != self.row_nbytes:
            raise CorruptStoreError(f"{where}: chunk has {len(data)} bytes, expected {self.row_nbytes}")
        return np.frombuffer(data, dtype=self.dtype.newbyteorder("<")).astype(self.dtype).reshape(self.shape)

    def fill_row(self) -> Any:
        if self.codec == "vlen":
            return b""
        return np.full(self.shape, self.fill, dtype=self.dtype)


def _json_fill(fill: Any, dtype: np.dtype) -> Any:
    if dtype.kind == "b":
        return bool(fill)
    if dtype.kind == "f":
        f = float(fill)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "Infinity" if f > 0 else "-Infinity"
        return f
    return int(fill)


_ZSTD = None


def _zstd():
    global _ZSTD
    if _ZSTD is None:
        from numcodecs.zstd import Zstd  # numcodecs ships with zarr

        _ZSTD = Zstd(level=FRAMES_ZSTD_LEVEL)
    return _ZSTD


def spec_from_metadata(name: str, meta: dict[str, Any], per_step: bool) -> ArraySpec:
    """Parse an array ``zarr.json`` written by schema v1 (refuses layouts this code cannot decode)."""
    try:
        shape = [int(d) for d in meta["shape"]]
        chunks = [int(d) for d in meta["chunk_grid"]["configuration"]["chunk_shape"]]
        data_type = meta["data_type"]
        codec_docs = meta["codecs"]
        shard_rows = 1
        if per_step and len(codec_docs) == 1 and codec_docs[0]["name"] == "sharding_indexed":
            conf = codec_docs[0]["configuration"]
            index_codecs = [
                (c["name"], c.get("configuration", {}).get("endian", "little")) for c in conf["index_codecs"]
            ]
            if conf.get("index_location", "end") != "start" or index_codecs != [("bytes", "little")]:
                raise CorruptStoreError(f"array {name!r}: shard index layout is not schema v1's")
            shard_rows = chunks[0]
            chunks = [int(d) for d in conf["chunk_shape"]]
            codec_docs = conf["codecs"]
        codecs = [c["name"] for c in codec_docs]
        sep = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
        enc = meta["chunk_key_encoding"]["name"]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CorruptStoreError(f"array {name!r}: unreadable zarr.json ({exc})") from exc
    if enc != "default" or sep != ".":
        raise CorruptStoreError(f"array {name!r}: chunk key encoding {enc}/{sep!r} is not schema v1's default/'.'")
    if data_type == VLEN:
        if codecs != ["vlen-bytes"]:
            raise CorruptStoreError(f"array {name!r}: codecs {codecs} are not schema v1's")
        dims = tuple(meta["dimension_names"]) if meta.get("dimension_names") else None
        row = tuple(shape[1:]) if per_step else tuple(shape)
        return ArraySpec(name, None, row, per_step, "vlen", b"", dims, shard_rows)
    if data_type not in _NUMPY_DTYPE:
        raise CorruptStoreError(f"array {name!r}: data type {data_type!r} is not used by schema v1")
    dtype = _NUMPY_DTYPE[data_type]
    if codecs == ["bytes"]:
        codec = "raw"
    elif codecs == ["bytes", "zstd"]:
        codec = "zstd"
    else:
        raise CorruptStoreError(f"array {name!r}: codecs {codecs} are not schema v1's")
    if dtype.itemsize > 1 and codec_docs[0].get("configuration", {}).get("endian", "little") != "little":
        raise CorruptStoreError(f"array {name!r}: big-endian chunks are not schema v1's")
    if per_step:
        row = tuple(shape[1:])
        if chunks[0] != 1 or any(c != max(1, d) for c, d in zip(chunks[1:], row)):
            raise CorruptStoreError(f"array {name!r}: chunks {chunks} are not one row per chunk")
    else:
        row = tuple(shape)
        if any(c != max(1, d) for c, d in zip(chunks, row)):
            raise CorruptStoreError(f"array {name!r}: static arrays must be one chunk")
    fill = meta.get("fill_value", 0)
    dims = tuple(meta["dimension_names"]) if meta.get("dimension_names") else None
    if isinstance(fill, str):
        fill = float(fill.replace("Infinity", "inf"))
    return ArraySpec(name, dtype, row, per_step, codec, fill, dims, shard_rows)


def group_document(attributes: dict[str, Any]) -> bytes:
    """A Zarr v3 group ``zarr.json`` with these attributes."""
    doc = {"attributes": attributes, "zarr_format": 3, "node_type": "group"}
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()


def array_document(spec: ArraySpec, length: int | None = None) -> bytes:
    return json.dumps(spec.metadata(length), allow_nan=False, separators=(",", ":")).encode()


def parse_document(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptStoreError(f"{where}: unreadable zarr.json ({exc})") from exc
    if not isinstance(doc, dict):
        raise CorruptStoreError(f"{where}: zarr.json is not an object")
    return doc


def world_specs(
    *,
    size: int,
    num_agents: int,
    num_boxes: int,
    num_items: int,
    tokens_shape: tuple[int, ...] | None = None,
    tokens_dtype: np.dtype | None = None,
    frame_shape: tuple[int, ...] | None = None,
    shard_rows: int = 1,
) -> dict[str, ArraySpec]:
    """Every array of a schema-v1 world group, per-step ones first."""
    S, N, M, K = size, num_agents, num_boxes, num_items
    u8, i16, i64, f32, b = (np.dtype(t) for t in ("uint8", "int16", "int64", "float32", "bool"))
    nan = float("nan")
    specs = [
        ArraySpec("poses", f32, (N, 3), True, fill=nan, dims=("step", "agent", "pose")),
        ArraySpec("actions", i16, (N,), True, fill=-1, dims=("step", "agent")),
        ArraySpec("rewards", f32, (N,), True, fill=nan, dims=("step", "agent")),
        ArraySpec("terminations", b, (N,), True, fill=False, dims=("step", "agent")),
        ArraySpec("truncations", b, (N,), True, fill=False, dims=("step", "agent")),
        ArraySpec("boxes", i16, (M, 2), True, fill=-1, dims=("step", "box", "cell")),
        ArraySpec("items_alive", b, (K,), True, fill=False, dims=("step", "item")),
        ArraySpec("step", i64, (), True, fill=-1, dims=("step",)),
        ArraySpec("events", None, (), True, codec="vlen", fill=b"", dims=("step",)),
    ]
    if tokens_shape is not None:
        dims = ("step", *(f"token_{i}" for i in range(len(tokens_shape))))
        specs.append(
            ArraySpec("tokens", np.dtype(tokens_dtype or "float16"), tuple(tokens_shape), True, fill=nan, dims=dims)
        )
    if frame_shape is not None:
        dims = ("step", "agent", "y", "x", "rgb")
        specs.append(ArraySpec("frames", u8, tuple(frame_shape), True, codec="zstd", fill=0, dims=dims))
    specs += [
        ArraySpec("walls", u8, (S, S), False, dims=("row", "col")),
        ArraySpec("floor", u8, (S, S), False, dims=("row", "col")),
        ArraySpec("goals", b, (S, S), False, fill=False, dims=("row", "col")),
        ArraySpec("items", i16, (K, 2), False, fill=-1, dims=("item", "cell")),
        ArraySpec("colors", u8, (N,), False, dims=("agent",)),
    ]
    specs = [dataclasses.replace(s, shard_rows=shard_rows) if s.per_step else s for s in specs]
    return {s.name: s for s in specs}


# ----------------------------------------------------------------------------- shards
MISSING = 2**64 - 1  # index entry of a row never written (zarr reads the fill value)


def empty_index(spec: ArraySpec) -> bytes:
    return b"\xff" * spec.index_nbytes


def read_index(data: bytes, spec: ArraySpec, where: str) -> np.ndarray:
    """The ``(shard_rows, 2)`` index ``(offset, nbytes)`` at the start of a shard."""
    if len(data) < spec.index_nbytes:
        raise CorruptStoreError(f"{where}: shard is shorter than its index")
    return np.frombuffer(data, dtype="<u8", count=2 * spec.shard_rows).reshape(spec.shard_rows, 2)


def patch_shard(data: bytes | None, spec: ArraySpec, slots: dict[int, bytes]) -> bytes:
    """A whole shard with rows ``slots`` (slot -> chunk bytes) written in (object stores: read-modify-write)."""
    buf = bytearray(data if data and len(data) >= spec.index_nbytes else empty_index(spec))
    index = np.frombuffer(bytes(buf[: spec.index_nbytes]), dtype="<u8").reshape(spec.shard_rows, 2).copy()
    for slot, chunk in sorted(slots.items()):
        offset = spec.fixed_offset(slot)
        if offset is None:
            offset = len(buf)
        if len(buf) < offset + len(chunk):
            buf.extend(b"\0" * (offset + len(chunk) - len(buf)))
        buf[offset : offset + len(chunk)] = chunk
        index[slot] = (offset, len(chunk))
    buf[: spec.index_nbytes] = index.astype("<u8").tobytes()
    return bytes(buf)


def shard_chunks(data: bytes | None, spec: ArraySpec, slots: list[int], where: str) -> list[bytes | None]:
    """Chunk bytes of rows ``slots`` of a whole shard (None: never written)."""
    if data is None:
        return [None] * len(slots)
    index = read_index(data, spec, where)
    out: list[bytes | None] = []
    for slot in slots:
        offset, nbytes = (int(x) for x in index[slot])
        if offset == MISSING:
            out.append(None)
        elif offset + nbytes > len(data):
            raise CorruptStoreError(f"{where}: row chunk past the end of its shard (torn)")
        else:
            out.append(data[offset : offset + nbytes])
    return out
