"""The ray runtime: a world actor owns the state, agent actors render synchronized views.

Per step the driver sends the joint actions to the :class:`WorldActor`, which advances the
state with the backend's own in-process simulator (the one the local runtime runs, driven through
its public non-rendering methods) and ``ray.put``s the new state's render payload;
its reply is a :class:`~multiworld.agents.actors.StateHandle` (version + ObjectRef) that the
driver passes, unresolved, to every :class:`~multiworld.agents.actors.AgentActor` -- the
state travels from the world actor's object store to the agent actors, never through the
driver. Each agent actor renders its ``agents_per_actor`` agents and tags the views with the
version it rendered; a step returns only when every view carries the world's version
(otherwise :class:`VersionMismatchError`). The world actor then commits the row (state,
actions, rewards, events and, with ``record_frames``, the views) to the store, if any, through
the same :class:`~multiworld.runtime.recording.EpisodeRecorder` as a local run.

A vector env's autoreset (:meth:`RaySimulator.step_and_restart`) runs in the world actor as
locally: the running worlds step, the restarted ones are encoded from their fresh reset (nothing
decoded goes back), all in one published version. Store worlds: a reset starts episode ``k``
for every world, ``f"{world_prefix}ep{k:05d}"`` (``-b{b}`` appended when B > 1); an autoreset
starts the next episode number for the restarted worlds only, the running ones keep theirs.

Fault tolerance:

- an agent actor that dies is restarted by Ray (``max_restarts``); the driver waits for it,
  restores its recent frames (from the store when frames are recorded, else from the world
  actor's copy) and renders the step again. The store row is written once, by the world actor.
- a world actor that dies is restarted too; *with a store* it resumes every world exactly from
  its last committed row (the simulator's ``resume_state``: for the model the stored tokens and
  static scene) and the interrupted step is run again (both backends are deterministic, so the
  result is identical); *without a store* the state is gone and :class:`WorldActorLostError`
  says so.

Options (:class:`RayOptions`) come from ``make_simulator(..., runtime="ray", ray_options=...)``
or, for envs built by ``parallel_env``, from the :func:`ray_options` context manager.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from multiworld.agents.actors import AgentActor, RenderedViews, StateHandle
from multiworld.sim.base import Observation, Simulator, restart_inputs
from multiworld.world.dynamics import validate_actions
from multiworld.world.state import WorldState, agent_names


class VersionMismatchError(RuntimeError):
    """The views of one step were rendered from different state versions."""


class WorldActorLostError(RuntimeError):
    """The world actor died and its state cannot be recovered (no store, or restarts exhausted)."""


class AgentActorLostError(RuntimeError):
    """An agent actor died and did not come back within the restart budget."""


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """How the ray runtime places and protects its actors.

    agents_per_actor: agents rendered by one agent actor (default: N split over two actors)
    num_gpus / num_cpus: resources of each agent actor; world_num_gpus: of the world actor
    max_restarts: restarts Ray grants each actor; history: recent frames kept per agent
    store / store_options / record_frames / world_prefix: record every world to ``store`` (a path
        or fsspec URL, with fsspec ``store_options``) as
        ``f"{world_prefix}ep{k:05d}"`` (``-b{b}`` appended when B > 1), with the views if asked
    address: Ray cluster to join when Ray is not initialised yet (None: RAY_ADDRESS or a local one)
    recover_timeout: seconds to wait for a restarted actor
    """

    agents_per_actor: int | None = None
    num_gpus: float = 0.0
    num_cpus: float = 0.0
    world_num_gpus: float = 0.0
    max_restarts: int = 3
    history: int = 4
    store: str | None = None
    store_options: dict | None = None
    record_frames: bool = False
    world_prefix: str = ""
    address: str | None = None
    recover_timeout: float = 60.0


_DEFAULTS: list[dict] = [{}]


@contextlib.contextmanager
def ray_options(**overrides) -> Iterator[None]:
    """Defaults for ray simulators built inside the block (e.g. by ``parallel_env(runtime="ray")``)."""
    RayOptions(**overrides)  # unknown names fail here
    _DEFAULTS.append({**_DEFAULTS[-1], **overrides})
    try:
        yield
    finally:
        _DEFAULTS.pop()


def _number(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def validate_options(opts: RayOptions, num_agents: int) -> RayOptions:
    """Check the options before anything starts; fills in the default ``agents_per_actor``."""
    k = opts.agents_per_actor
    if k is None:
        k = max(1, math.ceil(num_agents / 2))
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"agents_per_actor must be a positive integer, got {k!r}")
    for name in ("num_gpus", "num_cpus", "world_num_gpus", "recover_timeout"):
        _number(name, getattr(opts, name))
    if isinstance(opts.max_restarts, bool) or not isinstance(opts.max_restarts, int) or opts.max_restarts < 0:
        raise ValueError(f"max_restarts must be an integer >= 0, got {opts.max_restarts!r}")
    if isinstance(opts.history, bool) or not isinstance(opts.history, int) or opts.history < 1:
        raise ValueError(f"history must be a positive integer, got {opts.history!r}")
    if opts.record_frames and not opts.store:
        raise ValueError("record_frames needs a store")
    return dataclasses.replace(opts, agents_per_actor=min(int(k), num_agents))


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise ConnectionError naming ``address`` (HOST:PORT) if nothing accepts connections there."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a Ray address is 'local', 'auto' or HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConnectionError(f"cannot reach a Ray cluster at {address}: {e}") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Initialise Ray once: ``"local"`` starts a local instance, ``"auto"`` or HOST:PORT join a cluster,
    ``None`` joins RAY_ADDRESS if set, else starts a local instance.

    A local instance started before Ray is imported listens on 127.0.0.1 only (Ray reads
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import; it is left alone when set).
    """
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or "local"
    if address == "local" and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if address == "local":
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
        return
    if address != "auto":
        check_reachable(address.removeprefix("ray://"))
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise ConnectionError(f"cannot connect to the Ray cluster at {address}: {e}") from None


def check_resources(opts: RayOptions, num_actors: int) -> None:
    """Refuse GPU requests the cluster cannot satisfy (before any actor is created)."""
    import ray

    want = opts.num_gpus * num_actors + opts.world_num_gpus
    have = ray.cluster_resources().get("GPU", 0.0)
    if want > have:
        raise ValueError(
            f"the ray runtime asks for {want:g} GPUs ({num_actors} agent actors), the cluster has {have:g}"
        )


# --- the world side: the backend's in-process simulator, driven without rendering -----------------


def world_simulator(backend: str, spec: dict):
    """The in-process simulator a world actor drives through its public non-rendering methods
    (``reset_state``, ``resume_state``, ``advance``, ``advance_and_restart``, ``payload``, ``world_state``,
    ``tokens``): the very simulator the local runtime runs, so ray == local bit for bit, autoreset
    included. It never renders (agent actors do), so it is built without depth."""
    from multiworld.runtime.factory import BACKENDS

    if backend not in WORLD_BACKENDS:
        raise ValueError(f"backend {backend!r} has no world actor; have {sorted(WORLD_BACKENDS)}")
    sim = BACKENDS[backend](**{**spec, "depth": False})
    missing = [
        m for m in ("reset_state", "resume_state", "advance", "advance_and_restart", "payload") if not hasattr(sim, m)
    ]
    if missing:
        raise ValueError(f"the {backend} backend's simulator lacks {missing}, which a world actor needs")
    return sim


# Backends whose simulator a world actor can drive. The model renders deterministically on the ray
# runtime: the flow sampler conditions each view on the agent's previous one, which agent actors
# holding a subset of the agents do not share.
WORLD_BACKENDS = ("oracle", "model")


class WorldActor:
    """Owns the state of B worlds, the state-update model and the store writers (a Ray actor).

    It drives the backend's in-process simulator (:func:`world_simulator`) and records through
    :class:`~multiworld.runtime.recording.EpisodeRecorder`, like a local run."""

    def __init__(self, backend: str, spec: dict, opts: RayOptions) -> None:
        import torch

        torch.set_num_threads(1)
        self.backend, self.spec, self.opts = backend, spec, opts
        self.sim = world_simulator(backend, spec)
        self.recent: collections.deque = collections.deque(maxlen=opts.history)
        self.store = None
        self.recorders: list = []
        self.world_ids: list[str] = []
        self._seeds: list[int] = []
        self._new: dict[int, str] = {}  # worlds whose store world is created at the next commit
        self._replace = False
        self._actions: np.ndarray | None = None
        self._outcome = None
        self._started = False
        self._refs: collections.deque = collections.deque(maxlen=2)  # keep the last payloads alive

    def ping(self) -> int:
        return os.getpid()

    def pid(self) -> int:
        return os.getpid()

    def _publish(self, outcome) -> tuple[StateHandle, dict]:
        import ray

        rewards, terminated, events = self._outcome = outcome
        state = self.sim.world_state()
        ref = ray.put(self.sim.payload())
        self._refs.append(ref)
        meta = {
            "version": state.step.copy(),
            "poses": state.poses.copy(),
            "rewards": rewards,
            "terminated": terminated,
            "events": events,
        }
        return StateHandle(version=state.step.copy(), ref=ref), meta

    def reset(self, seeds: list[int], start: WorldState | None, world_ids: list[str], replace: bool = False):
        self._close_recorders()
        self.sim.reset_state(seeds, start)
        self._started = True
        self.world_ids, self._seeds = list(world_ids), list(seeds)
        self._new, self._replace = dict(enumerate(world_ids)), replace
        b, n = self.sim.num_worlds, self.sim.num_agents
        self._actions = np.full((b, n), -1, np.int16)
        self.recent.clear()
        return self._publish((np.zeros((b, n), np.float32), np.zeros(b, bool), [[] for _ in range(b)]))

    def step(self, actions: np.ndarray):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        outcome = self.sim.advance(actions)
        self._actions, self._new = np.asarray(actions), {}
        return self._publish(outcome)

    def step_and_restart(
        self,
        actions: np.ndarray,
        restart: np.ndarray,
        start: WorldState,
        seeds: list[int],
        world_ids: list[str],
        replace: bool = False,
    ):
        """A step in which the worlds of ``restart`` start over from ``start`` (their fresh reset:
        encoded from its observations, as locally) as new store worlds ``world_ids[b]``."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        outcome = self.sim.advance_and_restart(actions, restart, start, seeds)
        restarted = np.flatnonzero(restart)
        for b in restarted:  # the ended worlds' records are complete
            if b < len(self.recorders) and self.recorders[b] is not None:
                self.recorders[b].close()
                self.recorders[b] = None
        self._actions = np.asarray(actions)
        self.world_ids, self._seeds = list(world_ids), list(seeds)
        self._new, self._replace = {int(b): world_ids[b] for b in restarted}, replace
        return self._publish(outcome)

    def commit(self, version: np.ndarray, *views: RenderedViews) -> np.ndarray:
        """Record the row of ``version`` (after its views were rendered): store and recent frames."""
        state = self.sim.world_state()
        if not np.array_equal(version, state.step):
            raise RuntimeError(f"commit of version {version.tolist()} but the world is at {state.step.tolist()}")
        rgb = _assemble([v.rgb for v in views], [v.agents for v in views])
        self.recent.append((state.step.copy(), rgb))
        if self.opts.store:
            self._record(rgb)
        return state.step.copy()

    def _open_store(self):
        from multiworld.state import WorldStore

        if self.store is None:
            self.store = WorldStore.open(self.opts.store, "a", storage_options=self.opts.store_options)
        return self.store

    def _recorder(self, b: int, world_id: str):
        from multiworld.runtime.recording import EpisodeRecorder

        h, w = self.spec["render"].height, self.spec["render"].width
        seed = self._seeds[b]
        return EpisodeRecorder(
            self._open_store(),
            world_id,
            self.sim,
            scenario=self.spec["scenario"].name,
            seed=None if seed is None else int(seed),
            config={"backend": self.backend, "runtime": "ray", "height": int(h), "width": int(w)},
            world_index=b,
            frames=self.opts.record_frames,
        )

    def _record(self, rgb: np.ndarray) -> None:
        """Append this version's row to every running world; create the store worlds of the worlds
        that (re)started, with this version as their row 0."""
        from multiworld.sim.base import Observation

        state = self.sim.world_state()
        if len(self.recorders) != self.sim.num_worlds:
            self.recorders = [None] * self.sim.num_worlds
        rewards, terminated, events = self._outcome
        obs = Observation(rgb, state.poses, rewards, terminated, events, state.step)
        store = self._open_store()
        for b in range(self.sim.num_worlds):
            if b in self._new:
                wid = self._new[b]
                if self._replace and wid in store:
                    store.delete_world(wid)
                rec = self._recorder(b, wid)
                rec.start(obs)
                self.recorders[b] = rec
                continue
            rec = self.recorders[b]
            if rec is None:
                raise RuntimeError(f"world {b} has no store world to append version {state.step[b]} to")
            if rec.writer.next_step != int(state.step[b]):
                raise RuntimeError(
                    f"store row {rec.writer.next_step} of {rec.world_id!r} != state version {state.step[b]}"
                )
            rec.step(obs, self._actions)
        self._new = {}

    def recover(self, world_ids: list[str], seeds: list[int], versions: list[int]) -> list[int]:
        """After a restart: reload the last committed row of every world from the store (exactly, through
        the simulator's ``resume_state``); returns each world's version, which must be ``versions``."""
        if not self.opts.store:
            raise WorldActorLostError("the world actor restarted but has no store to recover from")
        store = self._open_store()
        self._close_recorders()
        self.world_ids, self._seeds = list(world_ids), list(seeds)
        self.recorders = [self._recorder(b, w) for b, w in enumerate(world_ids)]
        for rec in self.recorders:
            rec.writer = store.writer(rec.world_id)
        last = [rec.writer.steps - 1 for rec in self.recorders]
        if [int(v) for v in versions] != last:
            raise WorldActorLostError(
                f"worlds {world_ids} were committed to steps {last}, the driver is at versions {list(versions)}"
            )
        readers = [store.world(w) for w in world_ids]
        self.sim.resume_state(list(zip(readers, last, strict=True)), seeds)
        self._started, self._new = True, {}
        self.recent.clear()
        if self.opts.record_frames:
            self.recent.extend(_stored_frames(readers, last, self.recent.maxlen))
        return last

    def recent_frames(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(version (B,), rgb (B, N, H, W, 3))] of the last committed steps, oldest first."""
        return list(self.recent)

    def world_state(self) -> WorldState:
        return self.sim.world_state()

    def oracle_guard(self, on: bool, fresh: bool = True) -> dict:
        """Test hook: arm (or disarm) :mod:`multiworld.runtime.oracle_guard` in this actor's process;
        returns the calls the guard allowed since it was armed."""
        from multiworld.runtime import oracle_guard

        allowed = dict(oracle_guard.ALLOWED)
        oracle_guard.arm(fresh) if on else oracle_guard.disarm()
        return allowed

    def _close_recorders(self) -> None:
        for rec in self.recorders:
            if rec is not None:
                rec.close()
        self.recorders = []

    def close(self) -> None:
        self._close_recorders()
        if self.store is not None:
            self.store.close()
            self.store = None


def _stored_frames(readers, last: list[int], history: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(version (B,), rgb (B, N, H, W, 3))] of the last ``history`` stored rows of every world, oldest
    first; world b's newest row is ``last[b]`` (worlds may be at different versions)."""
    last = np.asarray(last, np.int64)
    k = int(min(history or 1, last.min() + 1))
    rows = [last - (k - 1 - j) for j in range(k)]
    return [(v.copy(), np.stack([r.frames(int(t)) for r, t in zip(readers, v, strict=True)])) for v in rows]


def _assemble(parts: list[np.ndarray], agents: list[np.ndarray]) -> np.ndarray:
    """Per-actor arrays (B, V_i, ...) -> (B, N, ...) in agent order."""
    order = np.argsort(np.concatenate(agents), kind="stable")
    return np.concatenate(parts, axis=1)[:, order]


# --- the driver side ---------------------------------------------------------------------------


class _WorldDied(Exception):
    pass


class RaySimulator(Simulator):
    """B worlds stepped by a world actor, their views rendered by agent actors (see module docstring)."""

    def __init__(self, backend: str, spec: dict, opts: RayOptions) -> None:
        self.backend = backend
        self.num_worlds, self.num_agents = spec["num_worlds"], spec["num_agents"]
        self.agent_names = agent_names(self.num_agents)
        self.depth = bool(spec.get("depth", False))
        self.opts = opts = validate_options(opts, self.num_agents)
        if backend not in WORLD_BACKENDS:
            raise ValueError(
                f"the ray runtime does not support backend {backend!r} yet; supported: {sorted(WORLD_BACKENDS)}"
            )
        if backend == "model" and spec.get("sampler_steps", 0):
            raise ValueError("the ray runtime renders the model deterministically: sampler_steps must be 0")
        k = opts.agents_per_actor
        self.groups = [list(range(i, min(i + k, self.num_agents))) for i in range(0, self.num_agents, k)]
        connect(opts.address)
        import ray

        check_resources(opts, len(self.groups))
        self.spec = spec
        self.world = (
            ray.remote(WorldActor)
            .options(max_restarts=opts.max_restarts, max_task_retries=0, num_cpus=0, num_gpus=opts.world_num_gpus)
            .remote(backend, spec, opts)
        )
        render_spec = {
            "render": spec.get("render"),
            "device": spec.get("device", "cpu"),
            "checkpoint": spec.get("checkpoint"),
        }
        remote_agent = ray.remote(AgentActor).options(
            max_restarts=opts.max_restarts, max_task_retries=0, num_cpus=opts.num_cpus, num_gpus=opts.num_gpus
        )
        self.actors = [remote_agent.remote(backend, render_spec, g, opts.history, self.depth) for g in self.groups]
        try:
            ray.get([self.world.ping.remote()] + [a.ping.remote() for a in self.actors])
        except Exception:
            for actor in [self.world, *self.actors]:
                ray.kill(actor)
            raise
        self.restarts = {"agent": 0, "world": 0}
        self._episode = -1
        self._world_ids: list[str] = []
        self._seeds: list[int] = []
        self._versions: np.ndarray | None = None  # (B,) the state version of every world
        self._closed = False
        self.checkpoint_sha256 = None
        if backend == "model":
            from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, read_config

            path = spec.get("checkpoint") or DEFAULT_CHECKPOINT
            self.checkpoint_sha256 = read_config(path)["weights_sha256"]

    # --- Simulator API
    def reset(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> Observation:
        if len(seeds) != self.num_worlds:
            raise ValueError(f"need {self.num_worlds} seeds, got {len(seeds)}")
        if tokens is not None:
            raise ValueError("the ray runtime cannot start from stored tokens yet; use the local runtime")
        self._episode += 1
        self._world_ids = [self._world_id(self._episode, b) for b in range(self.num_worlds)]
        self._seeds = [int(s) for s in seeds]
        self._versions = None
        obs = self._run(
            lambda replace: self.world.reset.options(num_returns=2).remote(seeds, start, self._world_ids, replace)
        )
        self._versions = np.array(obs.version, np.int64)
        return obs

    def _world_id(self, episode: int, b: int) -> str:
        """Store id of world ``b`` started at episode ``episode`` (a reset starts one episode for every
        world; an autoreset one for each restarted world, which the others keep)."""
        prefix = f"{self.opts.world_prefix}ep{episode:05d}"
        return prefix if self.num_worlds == 1 else f"{prefix}-b{b}"

    def step(self, actions: np.ndarray) -> Observation:
        if self._versions is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_worlds, self.num_agents):
            raise ValueError(f"actions must have shape {(self.num_worlds, self.num_agents)}, got {actions.shape}")
        actions = validate_actions(actions, self.num_worlds, self.num_agents)
        obs = self._run(lambda replace: self.world.step.options(num_returns=2).remote(actions))
        self._versions = np.array(obs.version, np.int64)
        return obs

    def step_and_restart(
        self, actions: np.ndarray, restart: np.ndarray, start: WorldState, seeds: list[int]
    ) -> Observation:
        """The world actor steps the running worlds and restarts the others from ``start`` in one call
        (their fresh reset encoded from its observations, as locally; nothing decoded goes back).
        Every restarted world becomes a new store world; the running ones keep theirs."""
        if self._versions is None:
            raise RuntimeError("call reset() before step()")
        joint, mask = restart_inputs(actions, restart, start, self.num_worlds, self.num_agents)
        if len(seeds) != self.num_worlds:
            raise ValueError(f"need {self.num_worlds} seeds, got {len(seeds)}")
        if not mask.any():
            return self.step(joint)
        seeds = [int(s) for s in seeds]
        self._episode += 1
        ids = [self._world_id(self._episode, b) if mask[b] else w for b, w in enumerate(self._world_ids)]
        obs = self._run(
            lambda replace: self.world.step_and_restart.options(num_returns=2).remote(
                joint, mask, start, seeds, ids, replace
            )
        )
        self._world_ids, self._seeds = ids, seeds
        self._versions = np.array(obs.version, np.int64)
        return obs

    def resume(self, sources, seeds: list[int]) -> Observation:
        if self.backend == "model" and any(reader.has_tokens for reader, _ in sources):
            raise ValueError(
                "the ray runtime cannot resume a model world from its stored tokens yet; use the local runtime"
            )
        return super().resume(sources, seeds)

    def world_state(self) -> WorldState:
        import ray

        if self._versions is None:
            raise RuntimeError("call reset() first")
        return ray.get(self.world.world_state.remote()).copy()  # the object store's arrays are read-only

    def oracle_guard(self, on: bool, fresh: bool = True) -> dict:
        """Test hook: arm (or disarm) the oracle guard in the world actor and every agent actor;
        returns the calls the world actor's guard allowed (restarts' encodings)."""
        import ray

        ray.get([a.oracle_guard.remote(on, fresh) for a in self.actors])
        return ray.get(self.world.oracle_guard.remote(on, fresh))

    def actor_pids(self) -> dict:
        """{"world": pid, "agents": [pid per agent actor]} (tests kill them)."""
        import ray

        return {"world": ray.get(self.world.pid.remote()), "agents": ray.get([a.pid.remote() for a in self.actors])}

    def close(self) -> None:
        import ray

        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            ray.get(self.world.close.remote(), timeout=30)
        for actor in [self.world, *self.actors]:
            with contextlib.suppress(Exception):
                ray.kill(actor)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # --- one published version: render, check, commit, with recovery
    def _run(self, publish) -> Observation:
        replace = False
        for _ in range(self.opts.max_restarts + 1):
            try:
                return self._attempt(publish(replace))
            except _WorldDied:
                replace = True
                self._recover_world()
        raise WorldActorLostError(f"the world actor died more than {self.opts.max_restarts} times in one step")

    def _attempt(self, published) -> Observation:
        import ray
        from ray.exceptions import ObjectLostError, RayActorError

        handle_ref, meta_ref = published
        view_refs = [a.render.remote(handle_ref) for a in self.actors]
        try:
            meta = ray.get(meta_ref)
        except RayActorError:
            raise _WorldDied from None
        version = np.asarray(meta["version"])
        views: list[RenderedViews] = []
        for i in range(len(self.actors)):
            for attempt in range(self.opts.max_restarts + 1):
                try:
                    views.append(ray.get(view_refs[i]))
                    break
                except ObjectLostError:
                    raise _WorldDied from None  # the payload's owner (the world actor) is gone
                except RayActorError:
                    if attempt == self.opts.max_restarts:
                        raise AgentActorLostError(f"agent actor {i} (agents {self.groups[i]}) died too often") from None
                    self._recover_agent(i)
                    view_refs[i] = self.actors[i].render.remote(handle_ref)
        for i, v in enumerate(views):
            if not np.array_equal(v.version, version):
                raise VersionMismatchError(
                    f"agent actor {i} (agents {self.groups[i]}) rendered state version {v.version.tolist()}, "
                    f"the world is at version {version.tolist()}"
                )
        try:
            ray.get(self.world.commit.remote(version, *view_refs))
        except RayActorError:
            raise _WorldDied from None
        rgb = _assemble([v.rgb for v in views], [v.agents for v in views])
        depth = _assemble([v.depth for v in views], [v.agents for v in views]) if self.depth else None
        return Observation(
            rgb=rgb,
            depth=depth,
            poses=np.array(meta["poses"]),
            rewards=np.array(meta["rewards"]),
            terminated=np.array(meta["terminated"]),
            events=meta["events"],
            version=np.array(version),
        )

    def _wait_alive(self, actor, what: str) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        deadline = time.monotonic() + self.opts.recover_timeout
        while True:
            try:
                ray.get(actor.ping.remote(), timeout=5)
                return
            except (RayActorError, GetTimeoutError) as e:
                if time.monotonic() > deadline:
                    raise (WorldActorLostError if what == "world" else AgentActorLostError)(
                        f"the {what} actor did not come back within {self.opts.recover_timeout:g} s: {e}"
                    ) from None
                time.sleep(0.2)

    def _recover_agent(self, i: int) -> None:
        import ray

        self.restarts["agent"] += 1
        self._wait_alive(self.actors[i], f"agent {i}")
        actor = self.actors[i]
        if self.opts.record_frames and self._versions is not None:
            ray.get(
                actor.restore_from_store.remote(
                    self.opts.store, self._world_ids, self._versions.tolist(), self.opts.store_options
                )
            )
        else:
            ray.get(actor.restore.remote(self.world.recent_frames.remote()))

    def _recover_world(self) -> None:
        import ray
        from ray.exceptions import RayActorError

        self.restarts["world"] += 1
        if not self.opts.store:
            raise WorldActorLostError(
                "the world actor died and its state is lost: no store is configured to recover from "
                "(pass ray_options store=... to make the ray runtime resume from the last committed step)"
            )
        self._wait_alive(self.world, "world")
        if self._versions is None:
            return  # died during reset: the reset runs again
        try:
            t = ray.get(self.world.recover.remote(self._world_ids, self._seeds, self._versions.tolist()))
        except RayActorError:
            raise _WorldDied from None
        if list(t) != self._versions.tolist():
            raise WorldActorLostError(
                f"the store holds steps {t} of {self._world_ids}, expected {self._versions.tolist()}"
            )


def make_ray_simulator(backend: str, ray_options: RayOptions | dict | None = None, **spec) -> Simulator:
    """The ``RUNTIMES["ray"]`` builder: ``spec`` as for the backend, ``ray_options`` see :class:`RayOptions`."""
    if isinstance(ray_options, RayOptions):
        opts = ray_options
    else:
        opts = RayOptions(**{**_DEFAULTS[-1], **(ray_options or {})})
    return RaySimulator(backend, spec, opts)


build = make_ray_simulator  # the name factory.py registers (kept short for its one line)
