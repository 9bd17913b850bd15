"""The ray runtime: a world actor owns the state, agent actors render synchronized views.

Per step the driver sends the joint actions to the :class:`WorldActor`, which advances the
state with the backend's state-update model and ``ray.put``s the new state's render payload;
its reply is a :class:`~multiworld.agents.actors.StateHandle` (version + ObjectRef) that the
driver passes, unresolved, to every :class:`~multiworld.agents.actors.AgentActor` -- the
state travels from the world actor's object store to the agent actors, never through the
driver. Each agent actor renders its ``agents_per_actor`` agents and tags the views with the
version it rendered; a step returns only when every view carries the world's version
(otherwise :class:`VersionMismatchError`). The world actor then commits the row (state,
actions, rewards, events and, with ``record_frames``, the views) to the store, if any.

Fault tolerance:

- an agent actor that dies is restarted by Ray (``max_restarts``); the driver waits for it,
  restores its recent frames (from the store when frames are recorded, else from the world
  actor's copy) and renders the step again. The store row is written once, by the world actor.
- a world actor that dies is restarted too; *with a store* it reloads the last committed row
  of every world and the interrupted step is run again (the oracle is deterministic, so the
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
from multiworld.runtime.base import Observation, Simulator, initial_state
from multiworld.world.dynamics import step as world_step
from multiworld.world.dynamics import validate_actions
from multiworld.world.state import WorldState


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


# --- the world side of a backend: state-update model + render payload ---------------------------


class OracleWorld:
    """The oracle's state-update model in the world actor: exact dynamics, rewards, termination."""

    def __init__(self, scenario, num_agents: int, num_worlds: int = 1, **kwargs) -> None:
        arena = {k: v for k, v in kwargs.items() if k not in ("render", "depth", "device")}
        self.scenario = scenario
        self.arena = scenario.arena_config(num_agents=num_agents, **arena)
        self.num_worlds, self.num_agents = num_worlds, num_agents
        self.agent_names = [f"agent_{i}" for i in range(num_agents)]
        self.state: WorldState | None = None

    def reset(self, seeds: list[int], start: WorldState | None = None) -> None:
        self.state = initial_state(self.arena, seeds, start, self.num_worlds, self.num_agents)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[dict]]]:
        before = self.state
        after, events = world_step(before, actions, self.arena)
        rewards = self.scenario.reward(before, after, events)
        self.state = after
        per_world = [events.as_dicts(b, self.agent_names) for b in range(self.num_worlds)]
        return rewards, self.scenario.terminated(after), per_world

    def payload(self) -> dict:
        return {"version": self.state.step.copy(), "state": self.state}

    def tokens(self) -> np.ndarray | None:
        return None

    def restore(self, state: WorldState, tokens: np.ndarray | None) -> None:
        self.state = state


class ModelWorld:
    """The learned model's state and state-update model in the world actor (a :class:`ModelSimulator`
    that never renders); renderer replicas get the packed latent state of each version.

    Only the deterministic renderer is supported (``sampler_steps=0``): the flow sampler draws
    one noise stream for all agents of a world, which a split over agent actors cannot reproduce.
    """

    def __init__(self, scenario, num_agents: int, num_worlds: int = 1, sampler_steps: int = 0, **kwargs) -> None:
        from multiworld.runtime.model import ModelSimulator

        if sampler_steps:
            raise ValueError("the ray runtime renders the model deterministically: sampler_steps must be 0")
        kwargs = {k: v for k, v in kwargs.items() if k not in ("depth", "seed")}
        self.sim = ModelSimulator(scenario, num_agents, num_worlds, **kwargs)
        self.num_worlds, self.num_agents, self.agent_names = num_worlds, num_agents, self.sim.agent_names

    @property
    def state(self) -> WorldState | None:
        return self.sim.readout

    def reset(self, seeds: list[int], start: WorldState | None = None) -> None:
        self.sim.reset_state(seeds, start)

    def step(self, actions: np.ndarray):
        return self.sim._advance(validate_actions(actions, self.num_worlds, self.num_agents))

    def tokens(self) -> np.ndarray:
        return self.sim.tokens()

    def payload(self) -> dict:
        return self.sim.payload()

    def restore(self, state: WorldState, tokens: np.ndarray | None) -> None:
        self.sim.reset_state([0] * self.num_worlds, start=state, tokens=tokens)


WORLDS = {"oracle": OracleWorld, "model": ModelWorld}


class WorldActor:
    """Owns the state of B worlds, the state-update model and the store writers (a Ray actor)."""

    def __init__(self, backend: str, spec: dict, opts: RayOptions) -> None:
        import torch

        torch.set_num_threads(1)
        if backend not in WORLDS:
            raise ValueError(f"backend {backend!r} has no world actor; have {sorted(WORLDS)}")
        self.backend, self.spec, self.opts = backend, spec, opts
        self.world = WORLDS[backend](**spec)
        self.recent: collections.deque = collections.deque(maxlen=opts.history)
        self.store = None
        self.writers: list = []
        self.world_ids: list[str] = []
        self._row: dict | None = None
        self._refs: collections.deque = collections.deque(maxlen=2)  # keep the last payloads alive

    def ping(self) -> int:
        return os.getpid()

    def pid(self) -> int:
        return os.getpid()

    def _publish(self, rewards, terminated, events) -> tuple[StateHandle, dict]:
        import ray

        state = self.world.state
        ref = ray.put(self.world.payload())
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
        self._close_writers()
        self.world.reset(seeds, start)
        self.world_ids, self._seeds = list(world_ids), list(seeds)
        b, n = self.world.num_worlds, self.world.num_agents
        self._row = {"actions": np.full((b, n), -1, np.int16), "replace": replace}
        self.recent.clear()
        return self._publish(np.zeros((b, n), np.float32), np.zeros(b, bool), [[] for _ in range(b)])

    def step(self, actions: np.ndarray):
        if self.world.state is None:
            raise RuntimeError("call reset() before step()")
        rewards, terminated, events = self.world.step(actions)
        self._row = {"actions": actions, "rewards": rewards, "terminated": terminated, "events": events}
        return self._publish(rewards, terminated, events)

    def commit(self, version: np.ndarray, *views: RenderedViews) -> int:
        """Record the row of ``version`` (after its views were rendered): store and recent frames."""
        state = self.world.state
        if not np.array_equal(version, state.step):
            raise RuntimeError(f"commit of version {version.tolist()} but the world is at {state.step.tolist()}")
        rgb = _assemble([v.rgb for v in views], [v.agents for v in views])
        self.recent.append((state.step.copy(), rgb))
        if self.opts.store:
            self._record(rgb)
        return int(state.step[0])

    def _open_store(self):
        from multiworld.state import WorldStore

        if self.store is None:
            self.store = WorldStore.open(self.opts.store, "a", storage_options=self.opts.store_options)
        return self.store

    def _record(self, rgb: np.ndarray) -> None:
        state, row = self.world.state, self._row
        frames = rgb if self.opts.record_frames else [None] * len(rgb)
        tokens = self.world.tokens()
        if int(state.step[0]) == 0:
            store = self._open_store()
            h, w = rgb.shape[2:4]
            for b, wid in enumerate(self.world_ids):
                if row.get("replace") and wid in store:
                    store.delete_world(wid)
                self.writers.append(
                    store.create_world(
                        wid,
                        state.select(b),
                        scenario=self.spec["scenario"].name,
                        seed=int(self._seeds[b]) if self._seeds[b] is not None else None,
                        config={"backend": self.backend, "runtime": "ray", "height": int(h), "width": int(w)},
                        agents=self.world.agent_names,
                        frame_shape=(h, w) if self.opts.record_frames else None,
                        frames=frames[b],
                        tokens_shape=None if tokens is None else tokens.shape[1:],
                        tokens_dtype="float32",
                        tokens=None if tokens is None else tokens[b],
                    )
                )
            return
        n = self.world.num_agents
        for b, writer in enumerate(self.writers):
            if writer.next_step != int(state.step[b]):
                raise RuntimeError(
                    f"store row {writer.next_step} of {writer.world_id!r} != state version {state.step[b]}"
                )
            writer.append(
                state.select(b),
                row["actions"][b],
                row["rewards"][b],
                np.full(n, bool(row["terminated"][b])),
                np.zeros(n, bool),
                events=row["events"][b],
                frames=frames[b],
                tokens=None if tokens is None else tokens[b],
            )

    def recover(self, world_ids: list[str], seeds: list[int]) -> int:
        """After a restart: reload the last committed row of every world from the store; returns its version."""
        if not self.opts.store:
            raise WorldActorLostError("the world actor restarted but has no store to recover from")
        store = self._open_store()
        self._close_writers()
        self.world_ids, self._seeds = list(world_ids), list(seeds)
        self.writers = [store.writer(w) for w in world_ids]
        last = {wr.steps - 1 for wr in self.writers}
        if len(last) != 1:
            raise WorldActorLostError(f"worlds {world_ids} were committed to different steps {sorted(last)}")
        t = last.pop()
        readers = [store.world(w) for w in world_ids]
        tokens = np.stack([r.tokens(t) for r in readers]) if readers[0].has_tokens else None
        self.world.restore(WorldState.concat([r.state(t) for r in readers]), tokens)
        self.recent.clear()
        if self.opts.record_frames:
            for s in range(max(0, t - self.recent.maxlen + 1), t + 1):
                self.recent.append((np.full(len(readers), s, np.int64), np.stack([r.frames(s) for r in readers])))
        return t

    def recent_frames(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(version (B,), rgb (B, N, H, W, 3))] of the last committed steps, oldest first."""
        return list(self.recent)

    def world_state(self) -> WorldState:
        return self.world.state

    def _close_writers(self) -> None:
        for w in self.writers:
            w.close()
        self.writers = []

    def close(self) -> None:
        self._close_writers()
        if self.store is not None:
            self.store.close()
            self.store = None


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
        self.agent_names = [f"agent_{i}" for i in range(self.num_agents)]
        self.depth = bool(spec.get("depth", False))
        self.opts = opts = validate_options(opts, self.num_agents)
        if backend not in WORLDS:
            raise ValueError(f"the ray runtime does not support backend {backend!r} yet; supported: {sorted(WORLDS)}")
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
        self._version: int | None = None
        self._closed = False

    # --- Simulator API
    def reset(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> Observation:
        if len(seeds) != self.num_worlds:
            raise ValueError(f"need {self.num_worlds} seeds, got {len(seeds)}")
        if tokens is not None:
            raise ValueError("the ray runtime cannot start from stored tokens yet; use the local runtime")
        self._episode += 1
        prefix = f"{self.opts.world_prefix}ep{self._episode:05d}"
        self._world_ids = [prefix] if self.num_worlds == 1 else [f"{prefix}-b{b}" for b in range(self.num_worlds)]
        self._seeds = [int(s) for s in seeds]
        self._version = None
        obs = self._run(
            lambda replace: self.world.reset.options(num_returns=2).remote(seeds, start, self._world_ids, replace)
        )
        self._version = 0
        return obs

    def step(self, actions: np.ndarray) -> Observation:
        if self._version is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_worlds, self.num_agents):
            raise ValueError(f"actions must have shape {(self.num_worlds, self.num_agents)}, got {actions.shape}")
        from multiworld.world.dynamics import validate_actions

        actions = validate_actions(actions, self.num_worlds, self.num_agents)
        obs = self._run(lambda replace: self.world.step.options(num_returns=2).remote(actions))
        self._version += 1
        return obs

    def world_state(self) -> WorldState:
        import ray

        if self._version is None:
            raise RuntimeError("call reset() first")
        return ray.get(self.world.world_state.remote()).copy()  # the object store's arrays are read-only

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
        if self.opts.record_frames and self._version is not None:
            ray.get(
                actor.restore_from_store.remote(
                    self.opts.store, self._world_ids, self._version, self.opts.store_options
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
        if self._version is None:
            return  # died during reset: the reset runs again
        try:
            t = ray.get(self.world.recover.remote(self._world_ids, self._seeds))
        except RayActorError:
            raise _WorldDied from None
        if t != self._version:
            raise WorldActorLostError(f"the store holds step {t} of {self._world_ids}, expected {self._version}")


def make_ray_simulator(backend: str, ray_options: RayOptions | dict | None = None, **spec) -> Simulator:
    """The ``RUNTIMES["ray"]`` builder: ``spec`` as for the backend, ``ray_options`` see :class:`RayOptions`."""
    if isinstance(ray_options, RayOptions):
        opts = ray_options
    else:
        opts = RayOptions(**{**_DEFAULTS[-1], **(ray_options or {})})
    return RaySimulator(backend, spec, opts)


build = make_ray_simulator  # the name factory.py registers (kept short for its one line)
