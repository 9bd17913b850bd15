"""The oracle backend: exact dynamics and the raycast renderer, in process."""

from __future__ import annotations

import numpy as np

from multiworld.sim.base import InProcessSimulator, Observation, initial_state, stored_states
from multiworld.world.dynamics import step as world_step
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import Scenario
from multiworld.world.state import WorldState, agent_names


class OracleSimulator(InProcessSimulator):
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
        self.reset_state(seeds, start)
        return self._first_observation()

    def reset_state(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> None:
        """Reset without rendering (the Ray world actor's half of a reset)."""
        self.state = initial_state(self.arena, seeds, start, self.num_worlds, self.num_agents)

    def resume_state(self, sources, seeds: list[int]) -> None:
        """:meth:`resume` without rendering: the stored rows' states are the whole oracle state."""
        self.reset_state(seeds, stored_states(sources, self.num_worlds))

    def payload(self) -> dict:
        """What a renderer replica needs to render this state version: the state itself."""
        if self.state is None:
            raise RuntimeError("call reset() first")
        return {"version": self.state.step.copy(), "state": self.state}

    def _restart(self, mask: np.ndarray, start: WorldState) -> None:
        self.state = self.state.replace_worlds(mask, start)

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[dict]]]:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        before = self.state
        after, events = world_step(before, actions, self.arena)
        self.state = after
        per_world = [events.as_dicts(b, self.agent_names) for b in range(self.num_worlds)]
        return self.scenario.reward(before, after, events), self.scenario.terminated(after), per_world

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
