"""The oracle backend: exact dynamics and the raycast renderer, in process."""

from __future__ import annotations

import numpy as np

from multiworld.runtime.base import Observation, Simulator, check_restart, initial_state, restarted
from multiworld.world.dynamics import step as world_step
from multiworld.world.dynamics import validate_actions
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import Scenario
from multiworld.world.state import Action, WorldState


def agent_names(n: int) -> list[str]:
    return [f"agent_{i}" for i in range(n)]


class OracleSimulator(Simulator):
    backend = "oracle"

    def __init__(
        self,
        scenario: Scenario,
        num_agents: int,
        num_worlds: int = 1,
        render: RenderConfig | None = None,
        depth: bool = False,
        device: str = "cpu",
        compile: bool = False,
        **arena_overrides,
    ) -> None:
        self.scenario = scenario
        self.arena = scenario.arena_config(num_agents=num_agents, **arena_overrides)
        self.num_worlds, self.num_agents = num_worlds, num_agents
        self.agent_names = agent_names(num_agents)
        self.renderer = Raycaster(render, device=device, compile=compile)
        self.depth = depth
        self.state: WorldState | None = None

    def reset(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> Observation:
        state = initial_state(self.arena, seeds, start, self.num_worlds, self.num_agents)
        self.state = state
        zeros = np.zeros((self.num_worlds, self.num_agents), np.float32)
        return self._observe(zeros, np.zeros(self.num_worlds, bool), [[] for _ in range(self.num_worlds)])

    def step(self, actions: np.ndarray) -> Observation:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        before = self.state
        after, events = world_step(before, actions, self.arena)
        rewards = self.scenario.reward(before, after, events)
        self.state = after
        per_world = [events.as_dicts(b, self.agent_names) for b in range(self.num_worlds)]
        return self._observe(rewards, self.scenario.terminated(after), per_world)

    def step_and_restart(
        self, actions: np.ndarray, restart: np.ndarray, start: WorldState, seeds: list[int]
    ) -> Observation:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        restart = check_restart(restart, start, self.num_worlds)
        joint = validate_actions(actions, self.num_worlds, self.num_agents).copy()
        joint[restart] = Action.NOOP
        before = self.state
        after, events = world_step(before, joint, self.arena)
        rewards = self.scenario.reward(before, after, events)
        terminated = self.scenario.terminated(after)
        per_world = [events.as_dicts(b, self.agent_names) for b in range(self.num_worlds)]
        self.state = after.replace_worlds(restart, start)
        return restarted(self._observe(rewards, terminated, per_world), restart, rewards, terminated, per_world)

    def world_state(self) -> WorldState:
        if self.state is None:
            raise RuntimeError("call reset() first")
        return self.state

    def _observe(self, rewards: np.ndarray, terminated: np.ndarray, events: list[list[dict]]) -> Observation:
        views = self.renderer.render(self.state, buffers=self.depth)
        return Observation(
            rgb=views.rgb.cpu().numpy(),
            depth=None if views.depth is None else views.depth.cpu().numpy(),
            poses=self.state.poses.copy(),
            rewards=rewards,
            terminated=terminated,
            events=events,
            version=self.state.step.copy(),
        )
