"""The ray runtime's simulator: a world actor owns the state, agent actors render synchronized views.

Per step :class:`RaySimulator` has the :class:`~multiworld.runtime.ray_world.WorldActor` publish the
next state version (the in-process simulator's ``advance``, or ``advance_and_restart`` for a vector
env's autoreset) and passes its :class:`~multiworld.agents.actors.StateHandle` (version + ObjectRef
of the render payload), unresolved, to every :class:`~multiworld.agents.actors.AgentActor`: the state
goes from the world actor's object store to the agent actors, never through the driver. A step
returns only when every view carries the world's version (otherwise :class:`VersionMismatchError`);
the world actor then commits the row to the store, if any. Store worlds: a reset starts episode
``k`` for every world, ``f"{world_prefix}ep{k:05d}"`` (``-b{b}`` appended when B > 1); an autoreset
starts the next episode for the restarted worlds only.

Fault tolerance: an agent actor that dies is restarted by Ray (``max_restarts``); the driver waits
for it, restores its recent frames (from the store when frames are recorded, else from the world
actor's copy) and renders the step again. A world actor that dies is restarted too; *with a store*
it resumes every world exactly from its last committed row and the interrupted step runs again
(both backends are deterministic); *without a store* the state is gone and
:class:`WorldActorLostError` says so.
"""

from __future__ import annotations

import contextlib

import numpy as np

from multiworld.agents.actors import RenderedViews
from multiworld.runtime.ray_options import (
    AgentActorLostError,
    RayOptions,
    VersionMismatchError,
    WorldActorLostError,
    connect,
    ray_defaults,
    validate_options,
    wait_alive,
)
from multiworld.runtime.ray_world import assemble, check_backend, start_actors
from multiworld.runtime.recording import episode_world_id
from multiworld.sim.base import Observation, Simulator, restart_inputs
from multiworld.world.dynamics import validate_actions
from multiworld.world.state import WorldState, agent_names


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
        check_backend(backend)
        connect(opts.address)
        import ray

        self.world, self.actors, self.groups = start_actors(backend, spec, opts, self.depth)
        self.checkpoint_sha256 = ray.get(self.world.checkpoint_sha256.remote())
        self.restarts = {"agent": 0, "world": 0}
        self._episode = -1
        self._world_ids: list[str] = []
        self._seeds: list[int] = []
        self._versions: np.ndarray | None = None  # (B,) the state version of every world
        self._closed = False

    # --- Simulator API: each call publishes one state version through the world actor
    def reset(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> Observation:
        if len(seeds) != self.num_worlds:
            raise ValueError(f"need {self.num_worlds} seeds, got {len(seeds)}")
        if tokens is not None:
            raise ValueError("the ray runtime cannot start from stored tokens yet; use the local runtime")
        self._episode, self._versions = self._episode + 1, None
        seeds = [int(s) for s in seeds]
        ids = [self._world_id(b) for b in range(self.num_worlds)]
        return self._publish("reset_state", (seeds, start), ids, seeds, dict(enumerate(ids)))

    def step(self, actions: np.ndarray) -> Observation:
        if self._versions is None:
            raise RuntimeError("call reset() before step()")
        actions = validate_actions(actions, self.num_worlds, self.num_agents)
        return self._publish("advance", (actions,), self._world_ids, self._seeds, {})

    def step_and_restart(
        self, actions: np.ndarray, restart: np.ndarray, start: WorldState, seeds: list[int]
    ) -> Observation:
        """The world actor runs the in-process simulator's ``advance_and_restart``, as locally: the running
        worlds step, the others restart from ``start`` (encoded from its observations; nothing decoded goes
        back). Every restarted world becomes a new store world; the running ones keep theirs."""
        if self._versions is None:
            raise RuntimeError("call reset() before step()")
        joint, mask = restart_inputs(actions, restart, start, self.num_worlds, self.num_agents)
        if len(seeds) != self.num_worlds:
            raise ValueError(f"need {self.num_worlds} seeds, got {len(seeds)}")
        if not mask.any():
            return self.step(joint)
        self._episode += 1
        seeds = [int(s) for s in seeds]
        new = {int(b): self._world_id(int(b)) for b in np.flatnonzero(mask)}
        ids = [new.get(b, w) for b, w in enumerate(self._world_ids)]
        return self._publish("advance_and_restart", (joint, mask, start, seeds), ids, seeds, new)

    def _world_id(self, b: int) -> str:
        """Store id of world ``b`` starting now (a reset starts an episode for every world, an autoreset
        one for the restarted worlds, which the others do not share)."""
        return episode_world_id(self.opts.world_prefix, self._episode, b, self.num_worlds)

    def _publish(self, method: str, args: tuple, ids: list[str], seeds: list[int], new: dict) -> Observation:
        """One state version, ``method`` of the world actor's simulator, store worlds ``new`` starting."""
        obs = self._run(
            lambda replace: self.world.publish.options(num_returns=2).remote(method, args, new, seeds, replace)
        )
        self._world_ids, self._seeds = list(ids), list(seeds)
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
        meta = self._from_world(meta_ref)
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
        self._from_world(self.world.commit.remote(version, *view_refs))
        rgb, depth = assemble(views), assemble(views, "depth") if self.depth else None
        poses, rewards, terminated = (np.array(meta[k]) for k in ("poses", "rewards", "terminated"))
        return Observation(rgb, poses, rewards, terminated, meta["events"], np.array(version), depth)

    def _recover_agent(self, i: int) -> None:
        import ray

        self.restarts["agent"] += 1
        wait_alive(self.actors[i], f"agent {i}", self.opts.recover_timeout)
        actor, opts = self.actors[i], self.opts
        if opts.record_frames and self._versions is not None:
            args = (opts.store, self._world_ids, self._versions.tolist(), opts.store_options)
            ray.get(actor.restore_from_store.remote(*args))
        else:
            ray.get(actor.restore.remote(self.world.recent_frames.remote()))

    def _from_world(self, ref):
        """``ray.get(ref)`` of a world actor call; :class:`_WorldDied` if the world actor died."""
        import ray
        from ray.exceptions import RayActorError

        try:
            return ray.get(ref)
        except RayActorError:
            raise _WorldDied from None

    def _recover_world(self) -> None:
        self.restarts["world"] += 1
        if not self.opts.store:
            raise WorldActorLostError(
                "the world actor died and its state is lost: no store is configured to recover from "
                "(pass ray_options store=... to make the ray runtime resume from the last committed step)"
            )
        wait_alive(self.world, "world", self.opts.recover_timeout)
        if self._versions is None:
            return  # died during reset: the reset runs again
        # resumes every world from its last committed row (WorldActorLostError unless that is this version)
        self._from_world(self.world.recover.remote(self._world_ids, self._seeds, self._versions.tolist()))


def make_ray_simulator(backend: str, ray_options: RayOptions | dict | None = None, **spec) -> Simulator:
    """The ``RUNTIMES["ray"]`` builder: ``spec`` as for the backend, ``ray_options`` see :class:`RayOptions`
    (over the defaults of the enclosing :func:`~multiworld.runtime.ray_options.ray_options` block)."""
    return RaySimulator(backend, spec, ray_defaults(ray_options))


build = make_ray_simulator  # the name factory.py registers (kept short for its one line)
