"""The Ray runtime's world actor: it owns the state of B worlds, the state-update model and the store.

It drives the backend's in-process simulator, the very one the local runtime runs, through its
public non-rendering methods (``reset_state``, ``advance``, ``advance_and_restart``, ``resume_state``,
``payload``), so ray == local bit for bit, autoreset included; it ``ray.put``s each state version's
render payload for the agent actors, and once their views are back (:meth:`WorldActor.commit`) it
records the row through the :class:`~multiworld.runtime.recording.WorldsRecorder` a local run
records with.
"""

from __future__ import annotations

import collections
import os

import numpy as np

from multiworld.agents.actors import AgentActor, RenderedViews, StateHandle
from multiworld.runtime.ray_options import RayOptions, WorldActorLostError, check_resources
from multiworld.runtime.recording import WorldsRecorder, stored_frames
from multiworld.sim.base import Observation, Outcome
from multiworld.world.state import WorldState

# Backends whose simulator a world actor can drive.
WORLD_BACKENDS = ("oracle", "model")
# The in-process simulator's public methods that publish a new state version.
STEPS = ("reset_state", "advance", "advance_and_restart")


def check_backend(backend: str) -> None:
    """Refuse a backend the ray runtime cannot run, before anything starts."""
    if backend not in WORLD_BACKENDS:
        raise ValueError(
            f"the ray runtime does not support backend {backend!r} yet; supported: {sorted(WORLD_BACKENDS)}"
        )


def world_simulator(backend: str, spec: dict):
    """The in-process simulator a world actor drives (without rendering: built without depth)."""
    from multiworld.runtime.factory import BACKENDS

    check_backend(backend)
    sim = BACKENDS[backend](**{**spec, "depth": False})
    missing = [m for m in (*STEPS, "resume_state", "payload", "reset_outcome") if not hasattr(sim, m)]
    if missing:
        raise ValueError(f"the {backend} backend's simulator lacks {missing}, which a world actor needs")
    return sim


def start_actors(backend: str, spec: dict, opts: RayOptions, depth: bool) -> tuple:
    """``(world actor, agent actors, their groups of agents)``, every actor started and answering (else
    all killed); ``opts`` validated, Ray connected."""
    import ray

    n, k = spec["num_agents"], opts.agents_per_actor
    groups = [list(range(i, min(i + k, n))) for i in range(0, n, k)]
    check_resources(opts, len(groups))
    world = (
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
    actors = [remote_agent.remote(backend, render_spec, g, opts.history, depth) for g in groups]
    try:
        ray.get([a.ping.remote() for a in (world, *actors)])
    except Exception:
        for actor in (world, *actors):
            ray.kill(actor)
        raise
    return world, actors, groups


class WorldActor:
    """Owns the state of B worlds, the state-update model and the store writers (a Ray actor)."""

    def __init__(self, backend: str, spec: dict, opts: RayOptions) -> None:
        import torch

        torch.set_num_threads(1)
        self.opts = opts
        self.sim = world_simulator(backend, spec)
        self.recent: collections.deque = collections.deque(maxlen=opts.history)
        self.recorder: WorldsRecorder | None = None
        if opts.store:
            from multiworld.state import WorldStore

            store = WorldStore.open(opts.store, "a", storage_options=opts.store_options)
            self.recorder = WorldsRecorder(store, self.sim, spec["scenario"].name, frames=opts.record_frames)
        self._actions: np.ndarray | None = None
        self._outcome: Outcome | None = None
        self._refs: collections.deque = collections.deque(maxlen=2)  # keep the last payloads alive

    def ping(self) -> int:
        return os.getpid()

    pid = ping

    def checkpoint_sha256(self) -> str | None:
        return self.sim.checkpoint_sha256

    def publish(
        self, method: str, args: tuple, worlds: dict[int, str], seeds: list[int], replace: bool = False
    ) -> tuple[StateHandle, dict]:
        """The next state version, ``self.sim.<method>(*args)`` (one of :data:`STEPS`), published for the
        agent actors; the worlds ``worlds`` (index -> store world id) start new store worlds with it
        (``replace``: the step runs again after a crash, so a store world of that id is debris)."""
        import ray

        if method not in STEPS:
            raise ValueError(f"a world actor publishes {STEPS}, not {method!r}")
        outcome = getattr(self.sim, method)(*args)
        if method == "reset_state":
            outcome, self._actions = self.sim.reset_outcome(), None
            self.recent.clear()
        else:
            self._actions = np.asarray(args[0])
        if self.recorder is not None:
            self.recorder.begin(worlds, seeds, replace)
        rewards, terminated, events = self._outcome = outcome
        state = self.sim.world_state()
        ref = ray.put(self.sim.payload())
        self._refs.append(ref)
        version = state.step.copy()
        meta = {"version": version, "poses": state.poses.copy(), "rewards": rewards, "terminated": terminated}
        return StateHandle(version=version, ref=ref), {**meta, "events": events}

    def commit(self, version: np.ndarray, *views: RenderedViews) -> np.ndarray:
        """Record the row of ``version`` (after its views were rendered): store and recent frames."""
        state = self.sim.world_state()
        if not np.array_equal(version, state.step):
            raise RuntimeError(f"commit of version {version.tolist()} but the world is at {state.step.tolist()}")
        rgb = assemble(views)
        self.recent.append((state.step.copy(), rgb))
        if self.recorder is not None:
            self.recorder.record(Observation(rgb, state.poses, *self._outcome, state.step), self._actions)
        return state.step.copy()

    def recover(self, world_ids: list[str], seeds: list[int], versions: list[int]) -> list[int]:
        """After a restart: resume every world exactly from its last committed row (the simulator's
        ``resume_state``); returns each world's version, which must be ``versions``."""
        if self.recorder is None:
            raise WorldActorLostError("the world actor restarted but has no store to recover from")
        last = self.recorder.reopen(world_ids)
        if [int(v) for v in versions] != last:
            raise WorldActorLostError(
                f"worlds {world_ids} were committed to steps {last}, the driver is at versions {list(versions)}"
            )
        readers = [self.recorder.store.world(w) for w in world_ids]
        self.sim.resume_state(list(zip(readers, last, strict=True)), seeds)
        self.recent.clear()
        if self.opts.record_frames:
            self.recent.extend(stored_frames(readers, last, self.recent.maxlen))
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

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder.store.close()
            self.recorder = None


def assemble(views: list[RenderedViews], field: str = "rgb") -> np.ndarray:
    """The agent actors' views' ``field`` (B, V_i, ...) as one array (B, N, ...) in agent order."""
    order = np.argsort(np.concatenate([v.agents for v in views]), kind="stable")
    return np.concatenate([getattr(v, field) for v in views], axis=1)[:, order]
