"""Input checks: everything a write is given is validated and converted before anything is written."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from multiworld.world.state import WorldState

from . import _layout as L
from ._world import _now_iso, _package_version, _World
from .errors import InvalidWorldIdError, ValidationError

_WORLD_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_RESERVED_IDS = {"zarr.json"}
_STATE_NDIM = {
    "walls": 2,
    "floor": 2,
    "goals": 2,
    "boxes": 2,
    "items": 2,
    "items_alive": 1,
    "poses": 2,
    "colors": 1,
    "step": 0,
}
# World attributes the store writes itself; ``create_world(attrs=...)`` may add any others.
_MANAGED_ATTRS = {
    "scenario",
    "seed",
    "config",
    "checkpoint_hash",
    "parent",
    "agents",
    "created",
    "multiworld_version",
    "rewinds",
    "committed_steps",
}


def check_world_id(world_id: Any) -> str:
    """Return ``world_id`` if it is a safe world id (``[A-Za-z0-9_.-]``, 1-128 chars, no leading dot)."""
    if not isinstance(world_id, str) or not _WORLD_ID.fullmatch(world_id) or world_id in _RESERVED_IDS:
        raise InvalidWorldIdError(
            f"invalid world id {world_id!r}: use 1-128 characters from [A-Za-z0-9_.-], not starting with '.'"
        )
    return world_id


def _coerce(name: str, value: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` and ``shape`` (a leading length-1 axis is dropped).

    Kinds must match: bool for bool; any integer for integers (values must fit); float or
    integer for floats. Anything else is a ValidationError.
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise ValidationError(f"{name}: cannot convert {type(value).__name__} to an array ({exc})") from exc
    if arr.ndim == len(shape) + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != shape:
        raise ValidationError(f"{name}: expected shape {shape}, got {arr.shape}")
    kind = arr.dtype.kind
    if dtype.kind == "b":
        ok = kind == "b"
    elif dtype.kind in "iu":
        ok = kind in "iu"
        if ok and arr.size:
            info = np.iinfo(dtype)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise ValidationError(f"{name}: values [{lo}, {hi}] do not fit {dtype}")
    else:
        ok = kind in "fiu"
    if not ok:
        raise ValidationError(f"{name}: dtype {arr.dtype} cannot be stored as {dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _unbatch_state(state: WorldState | Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """Field -> array without the batch axis (a WorldState must hold exactly one world)."""
    if isinstance(state, WorldState):
        if state.num_worlds != 1:
            raise ValidationError(f"{where}: a WorldState with {state.num_worlds} worlds; the store takes one (B=1)")
        return {k: np.asarray(v)[0] for k, v in state.arrays().items()}
    if not isinstance(state, Mapping):
        raise ValidationError(f"{where}: expected a WorldState or a dict of arrays, got {type(state).__name__}")
    out = {}
    for k, v in state.items():
        if k not in _STATE_NDIM:
            raise ValidationError(f"{where}: unknown state field {k!r}")
        arr = np.asarray(v)
        if arr.ndim == _STATE_NDIM[k] + 1:
            if arr.shape[0] != 1:
                raise ValidationError(f"{where}: field {k!r} has a batch axis of {arr.shape[0]}; the store takes one")
            arr = arr[0]
        out[k] = arr
    return out


def _per_agent(name: str, value: Any, agents: Sequence[str]) -> Any:
    """Accept a PettingZoo-style {agent: value} dict, in the world's agent order."""
    if isinstance(value, Mapping):
        if set(value) != set(agents):
            raise ValidationError(f"{name}: keys {sorted(value)} are not the world's agents {list(agents)}")
        return [value[a] for a in agents]
    return value


def _msgpack_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _pack_events(events: Iterable[Any] | None) -> bytes:
    if events is None:
        return b""
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
        raise ValidationError(f"events: expected a list of event dicts, got {type(events).__name__}")
    events = list(events)
    if not events:
        return b""
    try:
        return msgpack.packb(events, default=_msgpack_default, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"events: not serialisable with msgpack ({exc})") from exc


def _unpack_events(data: bytes) -> list[Any]:
    if not data:
        return []
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _json_attr(name: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name}: must be JSON-serialisable ({exc})") from exc


def _dims(name: str, value: Any) -> tuple[int, ...]:
    try:
        return tuple(_as_int(name, d) for d in value)
    except TypeError:
        raise ValidationError(f"{name} must be a sequence of ints, got {value!r}") from None


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValidationError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def _validate_row(
    world: _World,
    static: dict[str, np.ndarray],
    fields: dict[str, np.ndarray],
    *,
    actions: Any,
    rewards: Any,
    terminations: Any,
    truncations: Any,
    events: Any,
    tokens: Any,
    frames: Any,
    row: int,
) -> dict[str, Any]:
    """Validate and convert one row; raises ValidationError before anything is written."""
    specs, agents = world.specs, world.attrs["agents"]
    for name in L.STATIC_FIELDS:
        if name in fields:
            value = np.asarray(fields[name])
            if value.shape != static[name].shape or not np.array_equal(value, static[name]):
                raise ValidationError(f"{name}: differs from the world's static {name} (static arrays never change)")
    out: dict[str, Any] = {}
    for name in ("poses", "boxes", "items_alive"):
        if name not in fields:
            raise ValidationError(f"state is missing field {name!r}")
        out[name] = _coerce(name, fields[name], specs[name].dtype, specs[name].shape)
    out["step"] = _coerce("step", fields.get("step", row), specs["step"].dtype, ())
    for name, value in (
        ("actions", actions),
        ("rewards", rewards),
        ("terminations", terminations),
        ("truncations", truncations),
    ):
        out[name] = _coerce(name, _per_agent(name, value, agents), specs[name].dtype, specs[name].shape)
    out["events"] = _pack_events(events)
    for name, value in (("tokens", tokens), ("frames", frames)):
        if name in specs:
            out[name] = (
                specs[name].fill_row() if value is None else _coerce(name, value, specs[name].dtype, specs[name].shape)
            )
        elif value is not None:
            raise ValidationError(f"{name}: world {world.world_id!r} was created without a {name} array")
    return out


def new_world(
    world_id: str,
    initial: WorldState | Mapping[str, Any],
    *,
    scenario: str,
    seed: int | None,
    config: Mapping[str, Any] | None,
    agents: Sequence[str] | None,
    checkpoint_hash: str | None,
    tokens_shape: Sequence[int] | None,
    tokens_dtype: str | np.dtype,
    frame_shape: Sequence[int] | None,
    events: Iterable[Any] | None,
    tokens: Any,
    frames: Any,
    attrs: Mapping[str, Any] | None,
    shard_rows: int,
) -> tuple[_World, dict[str, np.ndarray], dict[str, Any]]:
    """Check the arguments of ``WorldStore.create_world``: the new world, its static arrays, its row 0."""
    fields = _unbatch_state(initial, "initial state")
    missing = [k for k in _STATE_NDIM if k != "step" and k not in fields]
    if missing:
        raise ValidationError(f"initial state is missing fields {missing}")
    walls = np.asarray(fields["walls"])
    if walls.ndim != 2 or walls.shape[0] != walls.shape[1]:
        raise ValidationError(f"walls: expected a square (S, S) grid, got shape {walls.shape}")
    size = walls.shape[0]
    num_agents = np.asarray(fields["poses"]).shape[0] if np.asarray(fields["poses"]).ndim == 2 else -1
    num_boxes = np.asarray(fields["boxes"]).shape[0] if np.asarray(fields["boxes"]).ndim == 2 else -1
    num_items = np.asarray(fields["items"]).shape[0] if np.asarray(fields["items"]).ndim == 2 else -1
    if min(num_agents, num_boxes, num_items) < 0 or num_agents == 0:
        raise ValidationError("initial state: poses must be (N, 3) with N >= 1, boxes (M, 2), items (K, 2)")
    if not isinstance(scenario, str):
        raise ValidationError(f"scenario must be a string, got {type(scenario).__name__}")
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise ValidationError(f"seed must be an int or None, got {type(seed).__name__}")
    if checkpoint_hash is not None and not isinstance(checkpoint_hash, str):
        raise ValidationError("checkpoint_hash must be a string or None")
    agents = [f"agent_{i}" for i in range(num_agents)] if agents is None else list(agents)
    if len(agents) != num_agents or len(set(agents)) != num_agents or not all(isinstance(a, str) for a in agents):
        raise ValidationError(f"agents must be {num_agents} distinct names, got {agents!r}")
    if tokens_shape is not None:
        tokens_shape = _dims("tokens_shape", tokens_shape)
        if not tokens_shape or min(tokens_shape) < 1:
            raise ValidationError(f"tokens_shape must be positive dimensions, got {tokens_shape}")
        tokens_dtype = np.dtype(tokens_dtype)
        if tokens_dtype not in (np.dtype("float16"), np.dtype("float32")):
            raise ValidationError(f"tokens_dtype must be float16 or float32, got {tokens_dtype}")
    if frame_shape is not None:
        fs = _dims("frame_shape", frame_shape)
        if len(fs) == 2:
            fs = (num_agents, *fs, 3)
        elif len(fs) == 3 and fs[2] == 3:
            fs = (num_agents, *fs)
        if len(fs) != 4 or fs[0] != num_agents or fs[3] != 3 or min(fs) < 1:
            raise ValidationError(f"frame_shape must be (H, W) or (N, H, W, 3) with N={num_agents}, got {frame_shape}")
        frame_shape = fs
    if attrs is not None and not isinstance(attrs, Mapping):
        raise ValidationError(f"attrs must be a mapping of attribute names to JSON values, got {type(attrs).__name__}")
    extra = _json_attr("attrs", dict(attrs or {}))
    clash = sorted(set(extra) & _MANAGED_ATTRS)
    if clash:
        raise ValidationError(f"attrs: {clash} are managed by the store and cannot be set through attrs")
    attrs = {
        **extra,
        "scenario": scenario,
        "seed": None if seed is None else int(seed),
        "config": _json_attr("config", dict(config or {})),
        "checkpoint_hash": checkpoint_hash,
        "parent": None,
        "agents": agents,
        "created": _now_iso(),
        "multiworld_version": _package_version(),
        "rewinds": 0,
    }
    specs = L.world_specs(
        size=size,
        num_agents=num_agents,
        num_boxes=num_boxes,
        num_items=num_items,
        tokens_shape=tokens_shape,
        tokens_dtype=tokens_dtype if tokens_shape else None,
        frame_shape=frame_shape,
        shard_rows=shard_rows,
    )
    static = {n: _coerce(n, fields[n], specs[n].dtype, specs[n].shape) for n in L.STATIC_FIELDS}
    world = _World(world_id, attrs, specs, {})
    row0 = _validate_row(
        world,
        static,
        fields,
        actions=np.full(num_agents, -1, np.int16),
        rewards=np.zeros(num_agents, np.float32),
        terminations=np.zeros(num_agents, bool),
        truncations=np.zeros(num_agents, bool),
        events=events,
        tokens=tokens,
        frames=frames,
        row=0,
    )
    return world, static, row0
