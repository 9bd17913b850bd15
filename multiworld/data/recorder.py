"""Record any PettingZoo parallel env into the world-state store: the contract of a world.

``multiworld data --env MODULE:FACTORY [--env-kwargs JSON]`` calls ``MODULE.FACTORY(**kwargs)``
and records episodes of it with a seeded random policy. The arena and ViZDoom go through the
same code; a third world needs only a factory whose env keeps this contract:

1. **Parallel API.** A PettingZoo ``ParallelEnv`` with ``Discrete`` actions; every agent stays
   until the episode ends for all at once (the store keeps a fixed set of agents per world).
2. **Egocentric RGB observations:** uint8 ``(H, W, 3)``, or ``(H, W, 4)`` whose first three
   channels are RGB (rgbd), or a dict with an ``"rgb"`` entry; the same size for every agent.
3. **Poses:** ``infos[agent]["pose"]``, float ``(x, y, heading)`` at reset and after every step,
   in cells of the world's grid: x east and y south in ``[0, grid_size]``, heading in radians
   (0 along +x, pi/2 along +y).
4. **Metadata:** ``env.unwrapped.world_metadata()`` returns a JSON-able dict with at least
   ``world`` (a name, stored as the world's scenario), ``grid_size`` (S), ``bounds``
   (``[x_min, y_min, x_max, y_max]`` that the grid covers, in the world's own units),
   ``cell_size`` (those units per cell), ``units``, and ``camera``: ``height``, ``width``,
   ``fov_degrees`` (horizontal), ``eye_height`` (cells), ``near``, ``far`` (cells); optional
   ``fov_vertical_degrees`` when pixels are not square. The arena's envs get this from their
   arena and camera without a method (:func:`world_metadata`).
5. **Optional:** ``env.unwrapped.world_state()`` (a one-world ``WorldState``: the arena's full
   symbolic state, or ViZDoom's solid cells and poses) is stored as the rows' state; without
   it the recorder stores an empty S x S grid and the poses. ``env.unwrapped.last_events()``
   (a list of JSON-able dicts) is stored as each row's events.

Each episode becomes one store world ``{world}-n{N}-s{seed}`` (episode e is ``reset(seed=seed
+ e)``), with the frames (``frames`` array), poses, actions, rewards and flags, in the arena's
schema (``multiworld/state/SCHEMA.md``), and ``config = {"world_metadata": ..., "recorder":
...}``. :func:`read_recordings` reads them back.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from tqdm import tqdm

CAMERA_KEYS = ("height", "width", "fov_degrees", "eye_height", "near", "far")
METADATA_KEYS = ("world", "grid_size", "bounds", "cell_size", "units", "camera")


def load_factory(spec: str) -> Callable[..., Any]:
    """``"package.module:factory"`` -> the callable; ValueError naming what is wrong."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"--env must be MODULE:FACTORY (e.g. multiworld.games.vizdoom:parallel_env), got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--env {spec}: cannot import module {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"--env {spec}: module {module_name!r} has no callable {attr!r}")
    return factory


def parse_env_kwargs(text: str | None) -> dict[str, Any]:
    """The ``--env-kwargs`` JSON object (empty if None)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--env-kwargs must be a JSON object, e.g. '{{\"num_agents\": 2}}': {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--env-kwargs must be a JSON object, got {type(value).__name__}")
    return value


def world_metadata(env) -> dict[str, Any]:
    """The contract's metadata of ``env`` (see the module docstring), checked."""
    base = getattr(env, "unwrapped", env)
    if hasattr(base, "world_metadata"):
        meta = dict(base.world_metadata())
    else:
        meta = _arena_metadata(base)
    missing = [k for k in METADATA_KEYS if k not in meta]
    cam = meta.get("camera")
    if missing or not isinstance(cam, Mapping) or any(k not in cam for k in CAMERA_KEYS):
        raise ValueError(
            f"{type(base).__name__}.world_metadata() must give {list(METADATA_KEYS)} and camera {list(CAMERA_KEYS)}; "
            f"missing {missing or [k for k in CAMERA_KEYS if not isinstance(cam, Mapping) or k not in cam]}"
        )
    try:
        json.dumps(meta)
    except TypeError as exc:
        raise ValueError(f"world_metadata() must be JSON-able: {exc}") from None
    return meta


def _arena_metadata(base) -> dict[str, Any]:
    from multiworld.env.parallel import MultiWorldParallelEnv

    if not isinstance(base, MultiWorldParallelEnv):
        raise ValueError(
            f"{type(base).__name__} has no world_metadata(): the recorder needs the world's bounds, grid and "
            "camera (see multiworld.data.recorder)"
        )
    cfg, size = base.render_config, base.arena.size
    return {
        "world": base.scenario.name,
        "grid_size": size,
        "bounds": [0.0, 0.0, float(size), float(size)],
        "cell_size": 1.0,
        "units": "cells",
        "camera": cfg.metadata(far=base.max_depth),
    }


def _rgb(obs, agent: str) -> np.ndarray:
    image = obs["rgb"] if isinstance(obs, Mapping) else obs
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(
            f"observation of {agent}: the recorder needs uint8 (H, W, 3) RGB (or rgbd, or a dict with 'rgb'), "
            f"got {image.dtype} {image.shape}"
        )
    return image[..., :3]


def _pose(info, agent: str) -> np.ndarray:
    if not isinstance(info, Mapping) or "pose" not in info:
        raise ValueError(f"infos[{agent!r}] has no 'pose' (the recorder needs (x, y, heading) in cells)")
    pose = np.asarray(info["pose"], np.float32)
    if pose.shape != (3,):
        raise ValueError(f"infos[{agent!r}]['pose'] must be (x, y, heading), got shape {pose.shape}")
    return pose


def _state(base, poses: np.ndarray, grid: int, step: int):
    from multiworld.world.state import WorldState

    if hasattr(base, "world_state"):
        state = base.world_state()
        if isinstance(state, WorldState) and state.num_worlds == 1:
            return state
    n = len(poses)
    return WorldState(
        walls=np.zeros((1, grid, grid), np.uint8),
        floor=np.zeros((1, grid, grid), np.uint8),
        goals=np.zeros((1, grid, grid), bool),
        boxes=np.zeros((1, 0, 2), np.int16),
        items=np.zeros((1, 0, 2), np.int16),
        items_alive=np.zeros((1, 0), bool),
        poses=poses[None],
        colors=np.arange(n, dtype=np.uint8)[None],
        step=np.array([step], np.int64),
    )


def _events(base) -> list:
    if hasattr(base, "last_events"):
        try:
            return list(base.last_events())
        except RuntimeError:
            return []
    return []


def record_env(
    factory: Callable[..., Any],
    out: str | pathlib.Path,
    episodes: int,
    steps: int,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    spec: str | None = None,
    commit_every: int = 50,
    progress: bool = False,
) -> int:
    """Record ``episodes`` episodes of at most ``steps`` steps of ``factory(**env_kwargs)`` with a
    seeded random policy into the store at ``out``; returns the rows written (resets excluded)."""
    from multiworld.state import WorldStore

    env = factory(**dict(env_kwargs or {}))
    rows = 0
    try:
        base = getattr(env, "unwrapped", env)
        meta = world_metadata(env)
        agents = list(env.possible_agents)
        n, grid = len(agents), int(meta["grid_size"])
        for a in agents:
            space = env.action_space(a)
            if not hasattr(space, "n"):
                raise ValueError(f"action space of {a} is {space}; the recorder stores Discrete actions")
        config = {
            "world_metadata": meta,
            "recorder": {"env": spec, "env_kwargs": dict(env_kwargs or {}), "policy": "random", "seed": seed},
        }
        bar = tqdm(total=episodes * steps, desc=f"record {meta['world']}", unit="step", disable=not progress)
        with WorldStore.open(str(out), mode="a") as store, bar:
            for e in range(episodes):
                world_seed = seed + e
                rng = np.random.Generator(np.random.PCG64(world_seed))
                obs, infos = env.reset(seed=world_seed)
                frames = np.stack([_rgb(obs[a], a) for a in agents])
                poses = np.stack([_pose(infos[a], a) for a in agents])
                writer = store.create_world(
                    f"{meta['world']}-n{n}-s{world_seed}",
                    _state(base, poses, grid, 0),
                    scenario=str(meta["world"]),
                    seed=world_seed,
                    config=config,
                    agents=agents,
                    frame_shape=frames.shape[1:3],
                    frames=frames,
                    events=_events(base),
                )
                with writer:
                    for t in range(1, steps + 1):
                        actions = {a: int(rng.integers(env.action_space(a).n)) for a in env.agents}
                        obs, rewards, terms, truncs, infos = env.step(actions)
                        if set(obs) != set(agents):
                            raise ValueError(
                                f"step {t}: observations for {sorted(obs)}, expected every agent {agents} "
                                "(the recorder needs all agents until the episode ends)"
                            )
                        frames = np.stack([_rgb(obs[a], a) for a in agents])
                        poses = np.stack([_pose(infos[a], a) for a in agents])
                        writer.append(
                            _state(base, poses, grid, t),
                            np.array([actions.get(a, -1) for a in agents], np.int16),
                            np.array([rewards[a] for a in agents], np.float32),
                            np.array([bool(terms[a]) for a in agents]),
                            np.array([bool(truncs[a]) for a in agents]),
                            events=_events(base),
                            frames=frames,
                            commit=t % commit_every == 0,
                        )
                        rows += 1
                        bar.update()
                        if not env.agents:
                            break
    finally:
        env.close()
    return rows


@dataclasses.dataclass
class Recording:
    """One recorded world read back: row t is the state after t steps (row 0 the reset)."""

    world_id: str
    world: str
    seed: int | None
    agents: list[str]
    metadata: dict[str, Any]
    frames: np.ndarray  # (T, N, H, W, 3) uint8
    poses: np.ndarray  # (T, N, 3) float32, cells
    actions: np.ndarray  # (T, N) int16; row 0 is -1, row t the action that led to it
    rewards: np.ndarray  # (T, N) float32
    terminations: np.ndarray  # (T, N) bool
    truncations: np.ndarray  # (T, N) bool


def stored_worlds(paths: list[str | pathlib.Path]):
    """``(path, reader)`` of every world in the stores at ``paths`` (a missing local store is an
    error); each store stays open while its readers are in use."""
    from multiworld.state import WorldStore

    for path in paths:
        if not pathlib.Path(path).exists() and "://" not in str(path):
            raise FileNotFoundError(f"no data store at {path}")
        with WorldStore.open(str(path), mode="r") as store:
            for wid in store.worlds():
                yield path, store.world(wid)


def read_recordings(paths: list[str | pathlib.Path] | str | pathlib.Path, world: str | None = None) -> list[Recording]:
    """Every recorded world (of ``world``, if given) in the stores at ``paths``."""
    if isinstance(paths, (str, pathlib.Path)):
        paths = [paths]
    out = []
    for path, r in stored_worlds(paths):
        wid = r.world_id
        meta = r.config.get("world_metadata")
        if meta is None or (world is not None and r.scenario != world):
            continue
        if not r.has_frames:
            raise ValueError(f"world {wid!r} in {path} has no frames; recorded worlds store them")
        t = r.steps
        out.append(
            Recording(
                wid,
                r.scenario,
                r.seed,
                list(r.agents),
                meta,
                np.stack([r.frames(i) for i in range(t)]),
                np.asarray(r.poses(0, t)),
                np.asarray(r.actions(0, t)),
                np.asarray(r.rewards(0, t)),
                np.asarray(r.terminations(0, t)),
                np.asarray(r.truncations(0, t)),
            )
        )
    return out
