"""Benchmark your own world model: an external simulator behind the ``Simulator`` contract.

    multiworld bench all --quick --simulator turnshift=examples/external_simulator.py:make

``make(scenario=..., num_agents=..., num_worlds=...)`` is the factory the harness calls (once per
rollout or probe batch, in the worker that runs it); it returns an object with ``reset``,
``step`` and ``world_state`` as documented in ``benchmarks/README.md``. The harness then runs it
on exactly the held-out worlds, joint actions and probes of every other variant.

The model here is deliberately small and hand-written so the file stays readable: it keeps each
agent's frame observed at reset and, when the agent turns, rolls the frame sideways by the
turn's angle in pixels (a pinhole camera: ``focal * tan(angle)`` columns near the centre); it
ignores every other action. Replace ``TurnShift`` with your network: subclassing
:class:`multiworld.sim.stacked.FrameSimulator` gives you the reset observations (every
agent's view and pose of the start state) and the bookkeeping, so only three methods remain.
"""

from __future__ import annotations

import math

import numpy as np

from multiworld.sim.stacked import FrameSimulator
from multiworld.world.render import RenderConfig
from multiworld.world.state import Action


class TurnShift(FrameSimulator):
    """Each agent's reset frame, rolled sideways as the agent turns; poses turn, never move."""

    backend = "turnshift"

    def __init__(self, scenario: str, num_agents: int, num_worlds: int = 1) -> None:
        super().__init__(scenario, num_agents, num_worlds)
        cfg = RenderConfig()
        focal = (cfg.width / 2) / math.tan(math.radians(cfg.fov_degrees) / 2)
        self.turn = math.radians(self.arena.turn_degrees)
        self.shift_px = focal * math.tan(self.turn)  # columns per turn step
        self.frames: np.ndarray | None = None
        self.offset = np.zeros((num_worlds, num_agents))  # accumulated columns of shift

    def _begin(self, mask, views) -> None:
        # The worlds of ``mask`` start over from their reset views (K, N, H, W, 3) uint8.
        fresh = views.cpu().numpy()
        if self.frames is None or mask.all():
            self.frames = fresh
        else:
            self.frames = self.frames.copy()
            self.frames[mask] = fresh
        self.offset = self.offset.copy()
        self.offset[mask] = 0.0

    def _advance(self, actions: np.ndarray):
        # Checked joint actions (B, N) -> (rewards (B, N), terminated (B,), events per world).
        self._check_started()
        turn = (actions == Action.TURN_RIGHT).astype(float) - (actions == Action.TURN_LEFT)
        self.offset = self.offset - turn * self.shift_px
        self.poses = self.poses.copy()
        self.poses[..., 2] = np.angle(np.exp(1j * (self.poses[..., 2] + turn * self.turn)))
        self.version = self.version + 1
        zeros = np.zeros(actions.shape, np.float32)
        return zeros, np.zeros(self.num_worlds, bool), [[] for _ in range(self.num_worlds)]

    def _observe(self, rewards, terminated, events):
        # Every agent's view of the current state: here the rolled reset frame.
        rgb = np.empty_like(self.frames)
        for b in range(self.num_worlds):
            for i in range(self.num_agents):
                rgb[b, i] = np.roll(self.frames[b, i], int(np.rint(self.offset[b, i])), axis=1)
        return self._observation(rgb, rewards, terminated, events)


def make(scenario: str, num_agents: int, num_worlds: int) -> TurnShift:
    """The factory ``--simulator`` names: what the harness calls to build the simulator."""
    return TurnShift(scenario, num_agents, num_worlds)
