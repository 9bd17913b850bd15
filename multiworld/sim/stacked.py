"""Simulators that keep no world state, only frames: the stacked-frames baseline and its base.

:class:`FrameSimulator` is what they share: at reset they observe every agent's view of the
start state (rendered by the sensor, as the world model observes it) and its pose; from then on
they see only the joint actions. ``world_state()`` is the start state with the simulator's own
poses and step count: there is nothing else to read out, so ``has_state`` is False and the
benchmarks do not score a decoded state for them.

:class:`StackedFramesSimulator` runs a stacked-frames checkpoint
(:mod:`multiworld.models.stacked`): every agent's next frame from all agents' last ``context``
frames, poses and the joint actions, all worlds and agents in one batched pass.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from multiworld.bench.variants import SimSpec, Variant, register
from multiworld.sim.base import InProcessSimulator, Observation, initial_state
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import Scenario, get_scenario
from multiworld.world.state import WorldState, agent_names


class FrameSimulator(InProcessSimulator):
    """Base of the stateless simulators: the reset observation, poses, versions, the start state."""

    backend = "frames"
    has_state = False

    def __init__(self, scenario: Scenario | str, num_agents: int, num_worlds: int = 1, device: str = "cpu") -> None:
        from multiworld.sim.model import resolve_device

        self.scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
        self.arena = self.scenario.arena_config(num_agents=num_agents)
        self.num_worlds, self.num_agents = num_worlds, num_agents
        self.agent_names = agent_names(num_agents)
        self.device = resolve_device(device)
        self.sensor = Raycaster(RenderConfig(), device=self.device)
        self.start: WorldState | None = None
        self.poses: np.ndarray | None = None
        self.version = np.zeros(num_worlds, np.int64)

    def reset(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> Observation:
        self.start = initial_state(self.arena, seeds, start, self.num_worlds, self.num_agents)
        self.poses = self.start.poses.astype(np.float32).copy()
        self.version = self.start.step.copy()
        self._begin(np.ones(self.num_worlds, bool), self.sensor.render(self.start).rgb)
        return self._first_observation()

    def _restart(self, mask: np.ndarray, start: WorldState) -> None:
        self.start = self.start.replace_worlds(mask, start)
        self.poses = self.poses.copy()
        self.poses[mask] = start.poses
        self.version = self.version.copy()
        self.version[mask] = start.step
        self._begin(mask, self.sensor.render(start).rgb)

    def _begin(self, mask: np.ndarray, views: torch.Tensor) -> None:
        """Start the worlds of ``mask`` from their reset views (K, N, H, W, 3) uint8 (K = mask.sum())."""
        raise NotImplementedError

    def world_state(self) -> WorldState:
        if self.start is None:
            raise RuntimeError("call reset() first")
        out = self.start.copy()
        out.poses = self.poses.copy()
        out.step = self.version.copy()
        return out

    def _check_started(self) -> None:
        if self.start is None:
            raise RuntimeError("call reset() before step()")

    def _observation(self, rgb: np.ndarray, rewards, terminated, events) -> Observation:
        return Observation(
            rgb=rgb,
            poses=self.poses.copy(),
            rewards=np.asarray(rewards, np.float32),
            terminated=np.asarray(terminated, bool),
            events=events,
            version=self.version.copy(),
        )


def head_events(push: np.ndarray, pick: np.ndarray, names: list[str]) -> list[list[dict]]:
    """Event dicts from push / pickup head decisions (B, N) bool, with no box or item identity
    (-1): a model without a state has nothing to say which one it was."""
    out = []
    for w in range(push.shape[0]):
        events = []
        for i, name in enumerate(names):
            if push[w, i]:
                events.append({"type": "push", "agent": name, "box": -1, "from": [-1, -1], "to": [-1, -1]})
            if pick[w, i]:
                events.append({"type": "pickup", "agent": name, "item": -1})
        out.append(events)
    return out


class StackedFramesSimulator(FrameSimulator):
    """B worlds of N agents simulated by a stacked-frames checkpoint (default: the shipped one)."""

    backend = "stacked"

    def __init__(
        self,
        scenario: Scenario | str,
        num_agents: int,
        num_worlds: int = 1,
        device: str = "cpu",
        checkpoint: str | pathlib.Path | None = None,
        model=None,
    ) -> None:
        from multiworld.models.checkpoint import STACKED_CHECKPOINT, CheckpointError, load_checkpoint
        from multiworld.models.stacked import StackedFramesModel
        from multiworld.models.world_model import scenario_id

        super().__init__(scenario, num_agents, num_worlds, device)
        if model is None:
            model = load_checkpoint(STACKED_CHECKPOINT if checkpoint is None else checkpoint, self.device)
        if not isinstance(model, StackedFramesModel):
            raise CheckpointError(
                f"checkpoint {checkpoint} is a {type(model).__name__}, not a stacked-frames model "
                "(train one with `multiworld train --stacked-frames`)"
            )
        self.model = model.to(self.device).eval()
        self._scen = torch.full(
            (num_worlds,), scenario_id(self.scenario.name, model.cfg.worlds), dtype=torch.long, device=self.device
        )
        self.context: torch.Tensor | None = None

    def _begin(self, mask: np.ndarray, views: torch.Tensor) -> None:
        fresh = self.model.first_context(views.to(self.device), self.model.cfg.context)
        if self.context is None or mask.all():
            self.context = fresh
        else:
            self.context = self.context.clone()
            self.context[torch.as_tensor(np.flatnonzero(mask), device=self.device)] = fresh

    @torch.no_grad()
    def _advance(self, actions: np.ndarray):
        self._check_started()
        act = torch.as_tensor(actions, device=self.device)
        poses = torch.as_tensor(self.poses, device=self.device)
        frames, poses, out = self.model.step(self.context, poses, act, self._scen)
        self.context = torch.cat([self.context[:, :, 1:], frames.clamp(0, 1)[:, :, None]], 2)
        self.poses = poses.float().cpu().numpy()
        self.version = self.version + 1
        push, pick = (out["push"] > 0).cpu().numpy(), (out["pick"] > 0).cpu().numpy()
        events = head_events(push, pick, self.agent_names)
        return out["reward"].float().cpu().numpy(), (out["done"] > 0).cpu().numpy(), events

    def _observe(self, rewards, terminated, events) -> Observation:
        rgb = (self.context[:, :, -1].permute(0, 1, 3, 4, 2) * 255).round().to(torch.uint8).cpu().numpy()
        return self._observation(rgb, rewards, terminated, events)


def stacked_weights(spec: SimSpec) -> str | None:
    """The stacked-frames checkpoint of ``spec`` (None: the shipped one)."""
    return None if spec.stacked_checkpoint is None else str(spec.stacked_checkpoint)


register(
    Variant(
        "stacked",
        "stacked frames (baseline)",
        "learned",
        lambda spec, n, b: StackedFramesSimulator(spec.scenario, n, b, spec.device, spec.weights("stacked")),
        weights=stacked_weights,
        default_weights="stacked",
        order=2,
    )
)
