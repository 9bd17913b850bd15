"""The model backend: the learned world model behind the :class:`Simulator` contract.

After ``reset`` no oracle is in the loop: dynamics, rewards, terminations and events come from
the model's decoded heads (the scenario's reward rule is applied to the model's decoded states
and events), and every agent's view is rendered by the model from the shared tokens, all agents
of all worlds in one batched pass from the same state version.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from multiworld.runtime.base import InProcessSimulator, Observation, initial_state
from multiworld.runtime.oracle import agent_names
from multiworld.world.render import RenderConfig
from multiworld.world.scenarios import Scenario, get_scenario
from multiworld.world.state import WorldState


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device``; asking for an accelerator that is not there is an error."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available on this machine")
    return dev


class ModelSimulator(InProcessSimulator):
    """B worlds of N agents simulated by a world-model checkpoint (default: the shipped one).

    ``refresh``: re-encode the decoded scene after every step (default, see ``WorldModel``).
    ``constrained``: decode move outcomes under validity constraints (default, see ``WorldModel``).
    ``sampler_steps``: 0 renders deterministically (default); 1..8 uses the flow sampler.
    """

    backend = "model"

    def __init__(
        self,
        scenario: Scenario | str,
        num_agents: int,
        num_worlds: int = 1,
        render: RenderConfig | None = None,
        depth: bool = False,
        device: str = "cpu",
        checkpoint: str | pathlib.Path | None = None,
        refresh: bool = True,
        constrained: bool = True,
        sampler_steps: int = 0,
        seed: int = 0,
        **arena_overrides,
    ) -> None:
        from multiworld.models.checkpoint import load_checkpoint

        self.scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
        self.arena = self.scenario.arena_config(num_agents=num_agents, **arena_overrides)
        self.num_worlds, self.num_agents = num_worlds, num_agents
        self.agent_names = agent_names(num_agents)
        self.device = resolve_device(device)
        self.model = load_checkpoint(checkpoint, self.device)
        # The renderer's geometry is analytic, so any image size and field of view works; it was
        # trained at the size in its config (64x64, 90 degrees), where its fidelity is measured.
        render = render or RenderConfig()
        self.image = (render.height, render.width, render.fov_degrees)
        if not 0 <= sampler_steps <= 8:
            raise ValueError(f"sampler_steps must be in [0, 8], got {sampler_steps}")
        self.depth, self.refresh, self.constrained, self.sampler_steps = depth, refresh, constrained, sampler_steps
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.rs = None

    def reset(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> Observation:
        state = initial_state(self.arena, seeds, start, self.num_worlds, self.num_agents)
        tok = None
        if tokens is not None:
            tok = torch.as_tensor(np.asarray(tokens, np.float32), device=self.device)
            expected = (state.num_worlds, state.size, state.size, self.model.cfg.codec.dim)
            if tuple(tok.shape) != expected:
                raise ValueError(f"tokens must have shape {expected}, got {tuple(tok.shape)}")
        self.rs = self.model.reset(state, tok)
        return self._first_observation()

    def _restart(self, mask: np.ndarray, start: WorldState) -> None:
        self.rs = self.model.restart(self.rs, mask, start, image=self.image)

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[dict]]]:
        if self.rs is None:
            raise RuntimeError("call reset() before step()")
        before = self.rs.symbolic
        self.rs, events = self.model.step(self.rs, actions, refresh=self.refresh, constrained=self.constrained)
        after = self.rs.symbolic
        rewards = self.scenario.reward(before, after, events).astype(np.float32)
        per_world = [events.as_dicts(b, self.agent_names) for b in range(self.num_worlds)]
        return rewards, self.scenario.terminated(after), per_world

    def world_state(self) -> WorldState:
        if self.rs is None:
            raise RuntimeError("call reset() first")
        return self.rs.symbolic

    def tokens(self) -> np.ndarray | None:
        return None if self.rs is None else self.rs.tokens.cpu().numpy()

    def _observe(self, rewards: np.ndarray, terminated: np.ndarray, events: list[list[dict]]) -> Observation:
        rgb, depth = self.model.render(
            self.rs, sampler_steps=self.sampler_steps, generator=self.generator, with_depth=True, image=self.image
        )
        state = self.rs.symbolic
        return Observation(
            rgb=(rgb * 255).round().to(torch.uint8).cpu().numpy(),
            depth=depth.cpu().numpy().astype(np.float32) if self.depth else None,
            poses=state.poses.copy(),
            rewards=rewards,
            terminated=np.asarray(terminated, bool),
            events=events,
            version=state.step.copy(),
        )
