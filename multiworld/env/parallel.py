"""The PettingZoo ``ParallelEnv``: one world of N agents on top of any :class:`Simulator`.

Rules (also in the project README):

- **Seeds.** ``reset(seed=s)`` builds the world of seed ``s``: the same world in every backend
  and runtime. ``reset()`` without a seed draws the world seed from the env's RNG, which a seeded
  reset re-seeds with ``s``; so everything after the first seeded reset is reproducible.
- **Agents** are ``agent_0 .. agent_{N-1}`` (``possible_agents``, fixed). A scenario ends for
  all agents at once: on termination (the scenario's rule) or truncation (``max_cycles`` steps)
  every agent gets its final observation, reward and flags in that step's dicts and leaves
  ``agents``; the next ``step`` raises RuntimeError until ``reset``.
- **Missing agents.** A live agent missing from the action dict, or mapped to ``None``, takes
  ``NOOP`` (0) this step.
- **Bad input** raises ValueError and changes nothing (everything is checked before the
  simulator moves): an action for an unknown or finished agent, a non-integer action (floats
  are rejected even when whole, like ``3.0``; NaN, ``2.5``, bools and strings too), an
  out-of-range action, a non-dict. Python ints, ``Action`` members, numpy integer scalars and
  0-d integer arrays are accepted. ``step`` before ``reset`` or after the episode ended raises
  RuntimeError.
- **Infos** per agent hold only fixed-shape numbers, the same keys at reset and at every step,
  so TorchRL, BenchMARL, RLlib and SuperSuit can batch them: ``pose`` float32 (x, y, heading);
  ``version`` the state version (steps since reset) the observation was rendered from; this
  step's events as ints: ``pushed`` and ``picked`` (0 or 1, this agent), ``pushed_box`` and
  ``picked_item`` (the index, -1 if none), ``push_count`` and ``pickup_count`` (the whole
  world). The event dicts: ``last_events()`` (every event of the last reset or step), or
  ``info_events="dicts"``, which adds ``events`` (this agent's) and ``world_events`` (the
  world's, one list shared by all agents: do not mutate it) to the infos.
- **State** ``state()`` is the top-down map of the world, uint8 ``(8 S, 8 S, 3)``.
- **Render.** ``"rgb_array"``: ``render()`` returns one uint8 image of every agent's view tiled
  beside the map. ``"human"``: reset, step and ``render()`` write that image as a PNG to
  ``render_path`` (default ``<tmp>/multiworld-frames/<scenario>-<pid>-<k>.png``, overwritten; put
  ``{frame}`` in the path to keep every frame) and return None; no display is needed.
- **Copies.** ``copy.deepcopy`` and (cloud)pickle-based copies, as SuperSuit's vector wrappers
  make, rebuild a fresh, not-yet-reset env from the constructor arguments: a simulator (maybe a
  remote one) is never serialized.
"""

from __future__ import annotations

import copy
import pathlib
from typing import ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from multiworld.env.common import (
    TOPDOWN_CELL_PX,
    batch_images,
    build_simulator,
    check_action,
    check_info_events,
    check_obs_type,
    check_render_mode,
    check_seed,
    default_render_path,
    draw_seeds,
    event_arrays,
    max_depth,
    new_rng,
    observation_space,
    write_png,
)
from multiworld.runtime.factory import check_names, positive_int
from multiworld.sim.base import Observation
from multiworld.world.render import RenderConfig
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import NUM_ACTIONS, WorldState, agent_names
from multiworld.world.topdown import mosaic


def _rebuild(cls, kwargs):
    return cls(**kwargs)


class MultiWorldParallelEnv(ParallelEnv):
    """N agents in one world of a scenario; see the module docstring for the rules."""

    metadata: ClassVar[dict] = {
        "name": "multiworld",
        "render_modes": ["human", "rgb_array"],
        "render_fps": 15,
        "is_parallelizable": True,
    }

    def __init__(
        self,
        scenario: str = "forage-v0",
        num_agents: int = 4,
        backend: str = "oracle",
        runtime: str = "local",
        max_cycles: int = 500,
        render_mode: str | None = None,
        obs_type: str = "rgb",
        height: int = 64,
        width: int = 64,
        fov_degrees: float = 90.0,
        device: str = "cpu",
        render_path: str | pathlib.Path | None = None,
        info_events: str = "numeric",
        **options,
    ) -> None:
        self._init_kwargs = dict(
            scenario=scenario,
            num_agents=num_agents,
            backend=backend,
            runtime=runtime,
            max_cycles=max_cycles,
            render_mode=render_mode,
            obs_type=obs_type,
            height=height,
            width=width,
            fov_degrees=fov_degrees,
            device=device,
            render_path=render_path,
            info_events=info_events,
            **options,
        )
        self.obs_type = check_obs_type(obs_type)
        self.info_events = check_info_events(info_events)
        self.render_mode = check_render_mode(render_mode)
        check_names(backend, runtime)
        self.scenario = get_scenario(scenario)
        self.max_cycles = positive_int("max_cycles", max_cycles)
        n = positive_int("num_agents", num_agents)
        self.render_config = RenderConfig(height=height, width=width, fov_degrees=fov_degrees)
        self.backend, self.runtime = backend, runtime
        self.arena, self.sim = build_simulator(
            self.scenario, backend, runtime, n, 1, self.render_config, obs_type == "rgbd", device, options
        )
        self.possible_agents = agent_names(n)
        if list(self.sim.agent_names) != self.possible_agents:
            raise RuntimeError(f"simulator agent names {self.sim.agent_names} != {self.possible_agents}")
        self.metadata = {**type(self).metadata, "name": "multiworld_" + self.scenario.name.replace("-", "_")}
        size = self.arena.size
        self.max_depth = max_depth(size)
        self.depth_scale = self.max_depth / 255.0  # cells per depth level of "rgbd"
        self.observation_spaces = {a: observation_space(obs_type, height, width, size) for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(NUM_ACTIONS) for a in self.possible_agents}
        self.state_space = spaces.Box(0, 255, (size * TOPDOWN_CELL_PX, size * TOPDOWN_CELL_PX, 3), np.uint8)
        self._agent_index = {a: i for i, a in enumerate(self.possible_agents)}
        self.render_path = (
            pathlib.Path(render_path) if render_path is not None else default_render_path(self.metadata["name"])
        )
        self._frame_index = 0
        self._rng = new_rng(None)
        self.world_seed: int | None = None
        self.agents: list[str] = []
        self._last: Observation | None = None
        self._cycles = 0

    # --- spaces (the same object on every call)
    def observation_space(self, agent: str) -> spaces.Space:
        try:
            return self.observation_spaces[agent]
        except KeyError:
            raise ValueError(f"unknown agent {agent!r}; agents are {self.possible_agents}") from None

    def action_space(self, agent: str) -> spaces.Space:
        try:
            return self.action_spaces[agent]
        except KeyError:
            raise ValueError(f"unknown agent {agent!r}; agents are {self.possible_agents}") from None

    # --- episode
    def reset(self, seed: int | None = None, options: dict | None = None):
        """Start a new episode.

        ``options={"from": {"store": URL, "world": ID, "step": T}}`` continues from row T of a
        stored world exactly (the simulator's ``resume``: the symbolic state for the oracle; the
        scene tokens and static scene for the model backend, whose checkpoint
        must be the one that wrote the world); ``options={"start_state": WorldState}`` (one
        world) starts from a given state. Other option keys are ignored."""
        start = source = None
        if options and options.get("from") is not None:
            source = options["from"]
        elif options and options.get("start_state") is not None:
            start = options["start_state"]
            if not isinstance(start, WorldState) or start.num_worlds != 1:
                raise ValueError("options['start_state'] must be a WorldState of exactly one world")
        if source is not None:
            obs, seed, rng = self._resume_stored(source, seed)
        else:
            seed, rng = self._seed_and_rng(seed)
            obs = self.sim.reset([seed], start=start)
        self._rng = rng
        self.world_seed = seed
        self._cycles = 0
        self.agents = self.possible_agents[:]
        self._last = obs
        observations, infos = self._observations(obs, self.agents), self._infos(obs, self.agents)
        if self.render_mode == "human":
            self.render()
        return observations, infos

    def _seed_and_rng(self, seed) -> tuple[int, np.random.Generator]:
        if seed is not None:
            seed = check_seed(seed)
            return seed, new_rng(seed)
        return draw_seeds(self._rng, 1)[0], self._rng

    def _resume_stored(self, source, seed) -> tuple[Observation, int, np.random.Generator]:
        """Resume row ``step`` of a stored world (clear errors for a mismatch); the world's stored
        seed unless ``seed`` is given."""
        from multiworld.state import WorldStore

        if not isinstance(source, dict) or not {"store", "world", "step"} <= set(source):
            raise ValueError('options["from"] must be a dict with keys "store", "world" and "step"')
        with WorldStore.open(source["store"], mode="r", storage_options=source.get("storage_options")) as store:
            world = store.world(source["world"])
            if world.scenario != self.scenario.name:
                raise ValueError(
                    f"stored world {world.world_id!r} is {world.scenario}, this env is {self.scenario.name}"
                )
            if len(world.agents) != len(self.possible_agents):
                raise ValueError(
                    f"stored world {world.world_id!r} has {len(world.agents)} agents, this env has "
                    f"{len(self.possible_agents)}"
                )
            step = source["step"]
            if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
                raise ValueError(f'options["from"]["step"] must be an integer, got {step!r}')
            step = int(step)
            if not 0 <= step < world.steps:
                raise ValueError(
                    f"step {step} is outside world {world.world_id!r}'s committed steps [0, {world.steps})"
                )
            seed, rng = self._seed_and_rng(world.seed if seed is None else seed)
            return self.sim.resume([(world, step)], [seed]), seed, rng

    def _joint_actions(self, actions) -> np.ndarray:
        """(1, N) int64 joint actions from the action dict; raises before anything changes."""
        if self._last is None:
            raise RuntimeError("call reset() before step()")
        if not self.agents:
            raise RuntimeError("the episode is over (every agent terminated or truncated); call reset()")
        if not isinstance(actions, dict):
            raise ValueError(f"actions must be a dict of agent name -> action, got {type(actions).__name__}")
        joint = np.zeros((1, len(self.possible_agents)), np.int64)
        index = self._agent_index
        live = self.agents
        all_live = len(live) == len(self.possible_agents)
        for agent, action in actions.items():
            i = index.get(agent)
            if i is None:
                raise ValueError(f"action for unknown agent {agent!r}; agents are {self.possible_agents}")
            if not all_live and agent not in live:
                raise ValueError(f"action for {agent!r}, which has already terminated or truncated")
            if action is not None:
                joint[0, i] = check_action(agent, action)
        return joint

    def step(self, actions: dict):
        joint = self._joint_actions(actions)
        obs = self.sim.step(joint)
        self._cycles += 1
        self._last = obs
        agents = self.agents
        terminated = bool(obs.terminated[0])
        truncated = self._cycles >= self.max_cycles
        observations = self._observations(obs, agents)
        rewards = dict(zip(agents, obs.rewards[0].tolist()))
        terminations = dict.fromkeys(agents, terminated)
        truncations = dict.fromkeys(agents, truncated)
        infos = self._infos(obs, agents)
        if terminated or truncated:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

    def _observations(self, obs: Observation, agents: list[str]) -> dict:
        images = batch_images(obs, self.obs_type, self.max_depth)[0]
        if self.obs_type == "dict":
            return {a: {"rgb": images[i], "pose": obs.poses[0, i]} for i, a in enumerate(agents)}
        if len(agents) == len(images):
            return dict(zip(agents, images))
        return {a: images[self._agent_index[a]] for a in agents}

    def _infos(self, obs: Observation, agents: list[str]) -> dict:
        version = int(obs.version[0])
        world_events = obs.events[0]
        arrays = event_arrays([world_events], self.possible_agents)
        pushed, picked = arrays["pushed"][0].tolist(), arrays["picked"][0].tolist()
        box, item = arrays["pushed_box"][0].tolist(), arrays["picked_item"][0].tolist()
        push_count, pickup_count = int(arrays["push_count"][0]), int(arrays["pickup_count"][0])
        poses = obs.poses[0]
        index = self._agent_index
        infos = {}
        for a in agents:
            i = index[a]
            infos[a] = {
                "pose": poses[i],
                "version": version,
                "pushed": pushed[i],
                "picked": picked[i],
                "pushed_box": box[i],
                "picked_item": item[i],
                "push_count": push_count,
                "pickup_count": pickup_count,
            }
        if self.info_events == "dicts":
            own: dict[str, list] = {}
            for event in world_events:
                own.setdefault(event["agent"], []).append(event)
            for a in agents:
                infos[a]["events"] = own.get(a, [])
                infos[a]["world_events"] = world_events
        return infos

    def last_events(self) -> list[dict]:
        """Every push/pickup event of the last reset or step, as dicts (``{"type": "push", "agent",
        "box", "from", "to"}``, ``{"type": "pickup", "agent", "item"}``); a fresh list per call."""
        if self._last is None:
            raise RuntimeError("call reset() first")
        return copy.deepcopy(self._last.events[0])

    # --- global views
    def world_state(self) -> WorldState:
        """The symbolic state of the world (a batch of one), e.g. for scripted policies."""
        if self._last is None:
            raise RuntimeError("call reset() first")
        return self.sim.world_state()

    def state(self) -> np.ndarray:
        """The top-down map of the world: uint8 ``(8 S, 8 S, 3)`` (``state_space``)."""
        if self._last is None:
            raise RuntimeError("call reset() before state()")
        return self.sim.top_down()[0]

    def frame(self) -> np.ndarray:
        """One uint8 image: every agent's view tiled beside the top-down map."""
        if self._last is None:
            raise RuntimeError("call reset() before render()")
        return mosaic(np.asarray(self._last.rgb[0]), self.sim.top_down()[0])

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        frame = self.frame()
        if self.render_mode == "rgb_array":
            return frame
        write_png(self.render_path, frame, self._frame_index)
        self._frame_index += 1
        return None

    def close(self) -> None:
        self.sim.close()

    # --- copies rebuild from the constructor arguments (SuperSuit copies envs with cloudpickle)
    def __reduce__(self):
        return (_rebuild, (type(self), dict(self._init_kwargs)))

    def __deepcopy__(self, memo):
        return _rebuild(type(self), dict(self._init_kwargs))


def parallel_env(scenario: str = "forage-v0", **kwargs) -> MultiWorldParallelEnv:
    """A PettingZoo ParallelEnv of N agents in one world of ``scenario`` (rules: module docstring).

    scenario:     a registered scenario id (``multiworld.world.scenarios.SCENARIOS``)
    num_agents:   1..16, named ``agent_0 .. agent_{N-1}``
    backend:      ``"oracle"`` or ``"model"``; runtime: ``"local"`` or ``"ray"`` (see runtime.factory)
    max_cycles:   steps before every agent is truncated (default 500)
    render_mode:  None, ``"rgb_array"`` or ``"human"`` (PNG to ``render_path``)
    obs_type:     ``"rgb"`` (uint8 H x W x 3), ``"rgbd"`` (uint8 H x W x 4, depth scaled, see
                  ``multiworld.env.common``) or ``"dict"`` ({"rgb", "pose"})
    height, width, fov_degrees: the egocentric camera; device: torch device of the renderer
    info_events:  ``"numeric"`` (default: events as fixed-shape ints in the infos) or ``"dicts"``
                  (also the event dicts, ``events`` and ``world_events``)
    **options:    ArenaConfig overrides (``size=12``, ``num_items=4``...) and backend/runtime
                  options (``ray_options=...``), passed to ``make_simulator``
    """
    return MultiWorldParallelEnv(scenario=scenario, **kwargs)
