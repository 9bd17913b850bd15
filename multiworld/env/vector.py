"""Batched multi-agent vector env: E worlds of N agents, stepped by ONE simulator with E worlds
(one batched render per step), numpy in and out.

- ``reset(seed=s)``: world ``e`` gets world seed ``s + e`` (the same world as
  ``parallel_env(...).reset(seed=s + e)``). Without a seed, the constructor's ``seed`` is used the
  first time, then world seeds are drawn from the env's RNG (re-seeded by every seeded reset).
  Returns ``obs (E, N, H, W, C)`` (a dict of batched arrays for ``obs_type="dict"``) and infos.
- ``step(actions)`` takes an integer array ``(E, N)`` and returns ``obs, rewards (E, N) float32,
  terminations (E, N) bool, truncations (E, N) bool, infos``. A world's termination and
  truncation apply to all its agents. Actions are checked like the parallel env's (integers in
  [0, 8); float or bool arrays are rejected) before anything moves.

**Autoreset: next-step mode** (gymnasium's ``AutoresetMode.NEXT_STEP``). When a world ends
(terminated or truncated), the step that ends it returns its final observation, reward and flags
as usual. At the NEXT ``step`` call that world is reset instead of stepped: its actions are
ignored, it returns the first observation of a new episode (new seed from the env's RNG) with
reward 0, terminations and truncations False, and ``infos["reset"][e]`` True; the other worlds
step normally in the same call. With ``autoreset=False``, stepping after any world ended raises
RuntimeError: call ``reset()``.

``start_worlds``: a function ``(worlds: WorldState, rng) -> WorldState`` that rearranges every
world the env generates before it starts (seeded resets and autoresets; not the states given as
``options["start_state"]``), e.g. a curriculum of staged starts; ``rng`` is the env's.

infos, all fixed-shape arrays: ``pose`` (E, N, 3) float32, ``version`` (E,) state version of each
world's views, ``episode_step`` (E,) steps since that world's reset, ``seed`` (E,) world seeds,
``reset`` (E,) bool, and this step's events as int64 arrays: ``pushed``, ``picked`` (E, N) (0 or
1), ``pushed_box``, ``picked_item`` (E, N) (the index, -1 if none), ``push_count``,
``pickup_count`` (E,). The event dicts: ``last_events()`` (per world, a list of dicts), or
``info_events="dicts"``, which adds ``infos["events"]`` (the same per-world lists).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from multiworld.env.common import (
    batch_images,
    build_simulator,
    check_action_array,
    check_info_events,
    check_obs_type,
    check_seed,
    draw_seeds,
    event_arrays,
    max_depth,
    new_rng,
    observation_space,
)
from multiworld.runtime.factory import check_names, positive_int
from multiworld.sim.base import Observation
from multiworld.world.arena import generate
from multiworld.world.render import RenderConfig
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import NUM_ACTIONS, WorldState, agent_names
from multiworld.world.topdown import mosaic


class MultiWorldVectorEnv:
    """E worlds x N agents; see the module docstring for the rules."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 8,
        scenario: str = "forage-v0",
        num_agents: int = 4,
        backend: str = "oracle",
        runtime: str = "local",
        max_cycles: int = 500,
        autoreset: bool = True,
        seed: int | None = None,
        obs_type: str = "rgb",
        height: int = 64,
        width: int = 64,
        fov_degrees: float = 90.0,
        device: str = "cpu",
        info_events: str = "numeric",
        start_worlds: Callable[[WorldState, np.random.Generator], WorldState] | None = None,
        **options,
    ) -> None:
        self.obs_type = check_obs_type(obs_type)
        self.info_events = check_info_events(info_events)
        check_names(backend, runtime)
        self.scenario = get_scenario(scenario)
        self.num_envs = positive_int("num_envs", num_envs)
        self.num_agents = positive_int("num_agents", num_agents)
        self.max_cycles = positive_int("max_cycles", max_cycles)
        self.autoreset = bool(autoreset)
        if start_worlds is not None and not callable(start_worlds):
            raise TypeError(f"start_worlds must be a function (worlds, rng) -> worlds, got {start_worlds!r}")
        self.start_worlds = start_worlds
        self._pending_seed = None if seed is None else check_seed(seed)
        self.render_config = RenderConfig(height=height, width=width, fov_degrees=fov_degrees)
        self.arena, self.sim = build_simulator(
            self.scenario,
            backend,
            runtime,
            self.num_agents,
            self.num_envs,
            self.render_config,
            obs_type == "rgbd",
            device,
            options,
        )
        self.agent_names = agent_names(self.num_agents)
        self.max_depth = max_depth(self.arena.size)
        self.depth_scale = self.max_depth / 255.0
        e, n = self.num_envs, self.num_agents
        self.single_observation_space = observation_space(obs_type, height, width, self.arena.size)
        self.observation_space = observation_space(obs_type, height, width, self.arena.size, (e, n))
        self.single_action_space = spaces.Discrete(NUM_ACTIONS)
        self.action_space = spaces.MultiDiscrete(np.full((e, n), NUM_ACTIONS))
        self._rng = new_rng(None)
        self._seeds = np.zeros(e, np.int64)
        self._cycles = np.zeros(e, np.int64)
        self._done = np.zeros(e, bool)
        self._last: Observation | None = None

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Reset every world. ``options={"start_state": WorldState}`` (E worlds) starts from stored states
        (seeds are still drawn and reported, for later autoresets); other option keys are ignored."""
        start = None
        if options and options.get("start_state") is not None:
            start = options["start_state"]
            if not isinstance(start, WorldState) or start.num_worlds != self.num_envs:
                raise ValueError(f"options['start_state'] must be a WorldState of exactly {self.num_envs} worlds")
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        if seed is not None:
            seed = check_seed(seed)
            rng = new_rng(seed)
            seeds = [seed + e for e in range(self.num_envs)]
        else:
            rng = self._rng
            seeds = draw_seeds(rng, self.num_envs)
        self._rng = rng
        obs = self.sim.reset(seeds, start=self._generated(seeds) if start is None else start)
        self._seeds[:] = seeds
        self._cycles[:] = 0
        self._done[:] = False
        self._last = obs
        return self._observations(obs), self._infos(obs, np.ones(self.num_envs, bool))

    def step(self, actions):
        if self._last is None:
            raise RuntimeError("call reset() before step()")
        joint = check_action_array(actions, (self.num_envs, self.num_agents))
        done = self._done
        if done.any() and not self.autoreset:
            raise RuntimeError(f"world(s) {np.flatnonzero(done).tolist()} ended and autoreset=False; call reset()")
        zeros = np.zeros((self.num_envs, self.num_agents), np.float32)
        if done.all():
            seeds = draw_seeds(self._rng, self.num_envs)
            obs = self.sim.reset(seeds, start=self._generated(seeds))
            self._seeds[:] = seeds
            rewards, terminated = zeros, np.zeros(self.num_envs, bool)
        elif done.any():
            fresh = self._fresh_worlds(done)
            obs = self.sim.step_and_restart(joint, done, fresh, self._seeds.tolist())
            rewards, terminated = obs.rewards, obs.terminated
        else:
            obs = self.sim.step(joint)
            rewards, terminated = obs.rewards, obs.terminated
        self._cycles += 1
        self._cycles[done] = 0
        truncated = (self._cycles >= self.max_cycles) & ~done
        terminated = np.asarray(terminated, bool)
        reset_mask = done.copy()
        self._done = terminated | truncated
        self._last = obs
        n = self.num_agents
        infos = self._infos(obs, reset_mask)
        return (
            self._observations(obs),
            np.asarray(rewards, np.float32),
            np.repeat(terminated[:, None], n, axis=1),
            np.repeat(truncated[:, None], n, axis=1),
            infos,
        )

    def _fresh_worlds(self, done: np.ndarray) -> WorldState:
        """New worlds, of freshly drawn seeds, for the worlds that ended."""
        idx = np.flatnonzero(done)
        seeds = draw_seeds(self._rng, len(idx))
        self._seeds[idx] = seeds
        fresh = self._generated(seeds)
        return generate(self.arena, seeds) if fresh is None else fresh

    def _generated(self, seeds) -> WorldState | None:
        """The worlds of ``seeds`` rearranged by ``start_worlds`` (None without it: the simulator
        generates them itself)."""
        if self.start_worlds is None:
            return None
        worlds = self.start_worlds(generate(self.arena, seeds), self._rng)
        if not isinstance(worlds, WorldState) or worlds.num_worlds != len(seeds):
            raise ValueError(f"start_worlds must return a WorldState of {len(seeds)} worlds, got {worlds!r}")
        return worlds

    def _observations(self, obs: Observation):
        images = batch_images(obs, self.obs_type, self.max_depth)
        if self.obs_type == "dict":
            return {"rgb": images, "pose": obs.poses}
        return images

    def _infos(self, obs: Observation, reset_mask: np.ndarray) -> dict:
        infos = {
            "pose": obs.poses,
            "version": obs.version,
            "episode_step": self._cycles.copy(),
            "seed": self._seeds.copy(),
            "reset": reset_mask,
            **event_arrays(obs.events, self.agent_names),
        }
        if self.info_events == "dicts":
            infos["events"] = obs.events
        return infos

    def last_events(self) -> list[list[dict]]:
        """Per world, the push/pickup event dicts of the last reset or step (a fresh copy)."""
        if self._last is None:
            raise RuntimeError("call reset() first")
        return copy.deepcopy(self._last.events)

    def world_state(self) -> WorldState:
        if self._last is None:
            raise RuntimeError("call reset() first")
        return self.sim.world_state()

    def state(self) -> np.ndarray:
        """Top-down maps of every world, uint8 ``(E, 8 S, 8 S, 3)``."""
        if self._last is None:
            raise RuntimeError("call reset() first")
        return self.sim.top_down()

    def frame(self, world: int = 0) -> np.ndarray:
        """One uint8 image of world ``world``: its agents' views tiled beside its map."""
        if self._last is None:
            raise RuntimeError("call reset() first")
        return mosaic(np.asarray(self._last.rgb[world]), self.sim.top_down()[world])

    def close(self) -> None:
        self.sim.close()


def vector_env(num_envs: int = 8, scenario: str = "forage-v0", **kwargs) -> MultiWorldVectorEnv:
    """E = ``num_envs`` worlds of ``scenario`` in one batched simulator; see :class:`MultiWorldVectorEnv`."""
    return MultiWorldVectorEnv(num_envs=num_envs, scenario=scenario, **kwargs)
