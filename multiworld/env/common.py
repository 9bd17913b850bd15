"""Pieces shared by the PettingZoo env and the batched vector env: observation formats,
action checking, seeds and frames.

Observation formats (``obs_type``), per agent:

- ``"rgb"`` (default): the egocentric view, ``uint8 (H, W, 3)``.
- ``"rgbd"``: ``uint8 (H, W, 4)``: the RGB view plus a depth channel,
  ``depth_u8 = round(255 * min(depth, max_depth) / max_depth)`` where ``depth`` is the distance
  along the view axis in cells and ``max_depth = size * sqrt(2)`` is the arena's diagonal (16x16
  arena: 22.6 cells, 0.089 cells per level; ``env.unwrapped.depth_scale`` gives cells per
  level). One dtype and one Box keep it CNN- and SuperSuit-friendly, at 1/4 the bytes of float32.
- ``"dict"``: ``{"rgb": uint8 (H, W, 3), "pose": float32 (3,)}`` with pose ``(x, y, heading)``.

Events in infos (``info_events``): by default (``"numeric"``) this step's pushes and pickups are
reported as fixed-shape integers (:data:`EVENT_FIELDS`), so every training stack can batch the
infos; ``"dicts"`` adds the event dicts (``events``, ``world_events``) as well. The dicts of the
last step are always available from the env's ``last_events()``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import pathlib
import sys
import tempfile

import numpy as np
from gymnasium import spaces

from multiworld.runtime.factory import make_simulator
from multiworld.sim.base import Simulator
from multiworld.world.arena import ArenaConfig
from multiworld.world.render import RenderConfig
from multiworld.world.scenarios import Scenario
from multiworld.world.state import NUM_ACTIONS

OBS_TYPES = ("rgb", "rgbd", "dict")
INFO_EVENTS = ("numeric", "dicts")
# The numeric event fields of the infos: per agent, then per world (all int64, -1 = none).
AGENT_EVENT_FIELDS = {
    "pushed": "pushes this agent made this step (0 or 1)",
    "picked": "items this agent picked up this step (0 or 1)",
    "pushed_box": "index of the box this agent pushed this step, -1 if none",
    "picked_item": "index of the item this agent picked up this step, -1 if none",
}
WORLD_EVENT_FIELDS = {
    "push_count": "pushes in the whole world this step",
    "pickup_count": "pickups in the whole world this step",
}
EVENT_FIELDS = {**AGENT_EVENT_FIELDS, **WORLD_EVENT_FIELDS}
RENDER_MODES = ("human", "rgb_array")
TOPDOWN_CELL_PX = 8  # pixels per cell of multiworld.world.topdown.top_down's default map
MAX_SEED = 2**31 - 1


def check_obs_type(obs_type: str) -> str:
    if obs_type not in OBS_TYPES:
        raise ValueError(f"unknown obs_type {obs_type!r}; valid: {list(OBS_TYPES)}")
    return obs_type


def check_info_events(info_events: str) -> str:
    if info_events not in INFO_EVENTS:
        raise ValueError(f"unknown info_events {info_events!r}; valid: {list(INFO_EVENTS)}")
    return info_events


def event_arrays(events: list[list[dict]], agent_names: list[str]) -> dict[str, np.ndarray]:
    """The numeric event fields of a batch of worlds' event dicts: ``(B, N)`` int64 per-agent fields
    (``pushed``, ``picked``, ``pushed_box``, ``picked_item``) and ``(B,)`` world counts
    (``push_count``, ``pickup_count``)."""
    b, n = len(events), len(agent_names)
    out = {
        "pushed": np.zeros((b, n), np.int64),
        "picked": np.zeros((b, n), np.int64),
        "pushed_box": np.full((b, n), -1, np.int64),
        "picked_item": np.full((b, n), -1, np.int64),
    }
    index = {a: i for i, a in enumerate(agent_names)}
    for w, world in enumerate(events):
        for event in world:
            i = index[event["agent"]]
            if event["type"] == "push":
                out["pushed"][w, i] += 1
                out["pushed_box"][w, i] = int(event["box"])
            elif event["type"] == "pickup":
                out["picked"][w, i] += 1
                out["picked_item"][w, i] = int(event["item"])
    out["push_count"] = out["pushed"].sum(axis=1)
    out["pickup_count"] = out["picked"].sum(axis=1)
    return out


def check_render_mode(render_mode: str | None) -> str | None:
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(f"unknown render_mode {render_mode!r}; valid: None or one of {list(RENDER_MODES)}")
    return render_mode


def check_seed(seed) -> int:
    """A world seed: a non-negative Python or numpy integer (not bool)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    if not 0 <= seed <= 2**63 - 1:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return int(seed)


def new_rng(seed: int | None) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def draw_seeds(rng: np.random.Generator, n: int) -> list[int]:
    return [int(s) for s in rng.integers(0, MAX_SEED, size=n)]


def max_depth(size: int) -> float:
    return size * math.sqrt(2.0)


def observation_space(
    obs_type: str, height: int, width: int, size: int, shape_prefix: tuple[int, ...] = ()
) -> spaces.Space:
    """The space of one agent's observation (or of a batch, with ``shape_prefix``)."""
    channels = 4 if obs_type == "rgbd" else 3
    image = spaces.Box(0, 255, (*shape_prefix, height, width, channels), np.uint8)
    if obs_type != "dict":
        return image
    low = np.broadcast_to(np.array([0.0, 0.0, -np.pi], np.float32), (*shape_prefix, 3))
    high = np.broadcast_to(np.array([size, size, np.pi], np.float32), (*shape_prefix, 3))
    return spaces.Dict({"rgb": image, "pose": spaces.Box(low, high, dtype=np.float32)})


def depth_to_uint8(depth: np.ndarray, max_d: float) -> np.ndarray:
    scaled = np.clip(depth, 0.0, max_d) * (255.0 / max_d)
    return np.rint(scaled, out=scaled).astype(np.uint8)


def batch_images(obs, obs_type: str, max_d: float) -> np.ndarray:
    """(B, N, H, W, C) uint8 image observations of a simulator Observation.

    RGB is passed through without a copy (the oracle's is a strided view of its RGBA render,
    fresh on every call; a copy would cost ~2% of a step): simulators must not reuse the arrays
    they return.
    """
    if obs_type == "rgbd":
        if obs.depth is None:
            raise RuntimeError("the simulator returned no depth; rgbd needs a simulator built with depth=True")
        return np.concatenate([obs.rgb, depth_to_uint8(obs.depth, max_d)[..., None]], axis=-1)
    return obs.rgb


def check_action(agent, action) -> int:
    """One agent's action as an int in [0, NUM_ACTIONS), or ValueError.

    Accepted: Python ints (and IntEnum members such as ``Action.FORWARD``), numpy integer
    scalars, 0-d integer numpy arrays and 0-d integer torch tensors (as TorchRL-based stacks
    send). Rejected: bools, floats (even whole ones like ``3.0``, as ``Discrete.contains`` does),
    NaN, strings, arrays or tensors of other shapes or dtypes, out-of-range values.
    """
    if isinstance(action, (int, np.integer)) and not isinstance(action, (bool, np.bool_)):
        value = int(action)
    elif isinstance(action, np.ndarray) and action.ndim == 0 and action.dtype.kind in "iu":
        value = int(action)
    elif _is_int_scalar_tensor(action):
        value = int(action.item())
    else:
        kind = f"{type(action).__name__} {action!r}"
        if isinstance(action, np.ndarray):
            kind = f"array of dtype {action.dtype} and shape {action.shape}"
        elif _is_tensor(action):
            kind = f"tensor of dtype {action.dtype} and shape {tuple(action.shape)}"
        raise ValueError(
            f"action for {agent!r} must be an integer in [0, {NUM_ACTIONS}), got {kind} "
            "(ints, numpy integer scalars, 0-d integer arrays and 0-d integer tensors are accepted; "
            "floats and bools are not)"
        )
    if not 0 <= value < NUM_ACTIONS:
        raise ValueError(f"action {value} for {agent!r} is out of range: actions must be in [0, {NUM_ACTIONS})")
    return value


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")  # a torch tensor can only exist if torch was imported
    return torch is not None and isinstance(x, torch.Tensor)


def _is_int_scalar_tensor(x) -> bool:
    if not _is_tensor(x) or x.ndim != 0:
        return False
    import torch

    return not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool


def check_action_array(actions, shape: tuple[int, int]) -> np.ndarray:
    """A batch of joint actions ``shape = (E, N)`` as int64, or ValueError (same rules as ``check_action``;
    numpy arrays, nested lists and CPU torch tensors are accepted)."""
    if _is_tensor(actions):
        actions = actions.detach().cpu().numpy()
    a = np.asarray(actions)
    if a.dtype.kind not in "iu":
        raise ValueError(f"actions must be an integer array in [0, {NUM_ACTIONS}), got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"actions must have shape {shape}, got {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= NUM_ACTIONS):
        bad = a[(a < 0) | (a >= NUM_ACTIONS)].flat[0]
        raise ValueError(f"action {int(bad)} is out of range: actions must be in [0, {NUM_ACTIONS})")
    return a.astype(np.int64)


_RENDER_IDS = itertools.count()


def build_simulator(
    scenario: Scenario,
    backend: str,
    runtime: str,
    num_agents: int,
    num_worlds: int,
    render: RenderConfig,
    depth: bool,
    device: str,
    options: dict,
) -> tuple[ArenaConfig, Simulator]:
    """The arena config and simulator of an env. ``options`` holds arena overrides (ArenaConfig fields,
    e.g. ``size=12``) and backend/runtime options (anything else, e.g. ``ray_options=...``), which
    go to the factory untouched."""
    arena_fields = {f.name for f in dataclasses.fields(ArenaConfig)} - {"num_agents"}
    overrides = {k: v for k, v in options.items() if k in arena_fields}
    arena = scenario.arena_config(num_agents=num_agents, **overrides)
    try:
        sim = make_simulator(
            backend,
            runtime,
            scenario=scenario,
            num_agents=num_agents,
            num_worlds=num_worlds,
            render=render,
            depth=depth,
            device=device,
            **options,
        )
    except TypeError as e:
        other = sorted(set(options) - arena_fields)
        if not other:
            raise
        raise ValueError(
            f"option(s) {other} are neither ArenaConfig fields nor accepted by the {backend} backend "
            f"on the {runtime} runtime: {e}"
        ) from None
    return arena, sim


def default_render_path(name: str) -> pathlib.Path:
    """``<tmp>/multiworld-frames/<name>-<pid>-<k>.png``: one file per env instance, overwritten every frame."""
    return pathlib.Path(tempfile.gettempdir()) / "multiworld-frames" / f"{name}-{os.getpid()}-{next(_RENDER_IDS)}.png"


def write_png(path: pathlib.Path | str, frame: np.ndarray, index: int) -> pathlib.Path:
    """Write ``frame``; ``{frame}`` in the path is replaced by ``index`` (keeps every frame)."""
    import imageio.v3 as iio

    out = pathlib.Path(str(path).replace("{frame}", f"{index:06d}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, frame, extension=".png")
    return out
