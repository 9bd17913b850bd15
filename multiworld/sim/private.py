"""The private-state baseline: every agent simulates its own copy of the world.

This is what running a single-agent world model once per agent amounts to. Agent i's copy is
advanced with agent i's own action only (the other agents' actions are replaced by NOOP: a
private model cannot know them), and agent i's view is rendered from copy i. Nothing that
another agent does ever reaches agent i's view, so pushes, pickups and other agents' motion
are missing or stale; the benchmarks measure how much the shared state buys over this.

All B x N copies run batched in one inner simulator of ``B * N`` worlds (copy ``(b, i)`` is
inner world ``b * N + i``). An inner simulator with ``render_only`` (the model) renders only
the owner's view of each copy; others render every view and the rest are not used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from multiworld.bench.variants import SimSpec, Variant, register
from multiworld.sim.base import Observation, Simulator, restart_inputs
from multiworld.world.dynamics import validate_actions
from multiworld.world.state import Action, WorldState


class PrivateStateSimulator(Simulator):
    """Wrap any backend: ``make_sim(num_worlds) -> Simulator`` builds the inner simulator.

    ``make_sim`` is called once with ``num_worlds * num_agents``; the inner simulator must have
    ``num_agents`` agents. ``world_state()`` returns agent i's pose from copy i and everything
    else (boxes, items, walls) from copy 0; :meth:`copies` gives every private world.
    """

    def __init__(self, make_sim: Callable[[int], Simulator], num_agents: int, num_worlds: int = 1) -> None:
        self.num_worlds, self.num_agents = num_worlds, num_agents
        self.inner = make_sim(num_worlds * num_agents)
        if self.inner.num_worlds != num_worlds * num_agents or self.inner.num_agents != num_agents:
            raise ValueError(
                f"make_sim({num_worlds * num_agents}) built {self.inner.num_worlds} worlds x "
                f"{self.inner.num_agents} agents, expected {num_worlds * num_agents} x {num_agents}"
            )
        self.backend = f"private-{self.inner.backend}"
        self.agent_names = list(self.inner.agent_names)
        b, n = np.meshgrid(np.arange(num_worlds), np.arange(num_agents), indexing="ij")
        self._copy = (b * num_agents + n).ravel()  # inner world of copy (b, i), in (b, i) order
        self._own = n.ravel()  # the agent that owns that copy
        if callable(getattr(self.inner, "render_only", None)):  # only the owner's view is ever shown
            owner = np.empty(num_worlds * num_agents, np.int64)
            owner[self._copy] = self._own
            self.inner.render_only(owner)

    def reset(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> Observation:
        if len(seeds) != self.num_worlds:
            raise ValueError(f"need {self.num_worlds} seeds, got {len(seeds)}")
        n = self.num_agents
        if start is not None:
            if start.num_worlds != self.num_worlds or start.num_agents != n:
                raise ValueError(
                    f"start state has {start.num_worlds} worlds x {start.num_agents} agents, "
                    f"expected {self.num_worlds} x {n}"
                )
            start = self._per_copy(start)
        if tokens is not None:
            tokens = np.repeat(np.asarray(tokens), n, axis=0)
        return self._gather(self.inner.reset(self._per_copy_seeds(seeds), start=start, tokens=tokens))

    def step(self, actions: np.ndarray) -> Observation:
        return self._gather(self.inner.step(self._inner_actions(actions)))

    def step_and_restart(
        self, actions: np.ndarray, restart: np.ndarray, start: WorldState, seeds: list[int]
    ) -> Observation:
        # Every private copy of a restarted world starts over; the other copies stay private.
        _, restart = restart_inputs(actions, restart, start, self.num_worlds, self.num_agents)
        inner = self._inner_actions(actions)
        copies = np.repeat(restart, self.num_agents)
        return self._gather(
            self.inner.step_and_restart(inner, copies, self._per_copy(start), self._per_copy_seeds(seeds))
        )

    def _per_copy(self, state: WorldState) -> WorldState:
        """Every world of ``state`` repeated once per agent: the start of its private copies."""
        return state.select(np.repeat(np.arange(state.num_worlds), self.num_agents))

    def _per_copy_seeds(self, seeds: list[int]) -> list[int]:
        return [int(s) for s in seeds for _ in range(self.num_agents)]

    def _inner_actions(self, actions: np.ndarray) -> np.ndarray:
        """Copy (b, i) gets agent i's action in world b; every other agent of it NOOP."""
        a = validate_actions(actions, self.num_worlds, self.num_agents)
        inner = np.full((self.num_worlds * self.num_agents, self.num_agents), int(Action.NOOP), np.int64)
        inner[self._copy, self._own] = a.ravel()
        return inner

    def copies(self) -> WorldState:
        """Every private world: ``(B * N)`` worlds, copy ``(b, i)`` at index ``b * N + i``."""
        return self.inner.world_state()

    def world_state(self) -> WorldState:
        n = self.num_agents
        copies = self.copies()
        out = copies.select(np.arange(self.num_worlds) * n)
        out.poses = copies.poses[self._copy, self._own].reshape(self.num_worlds, n, 3).copy()
        return out

    def tokens(self) -> np.ndarray | None:
        return self.inner.tokens()

    def close(self) -> None:
        self.inner.close()

    def _gather(self, obs: Observation) -> Observation:
        """Agent i's part of copy i, for every world: the private observation."""
        b, n = self.num_worlds, self.num_agents

        def pick(x: np.ndarray) -> np.ndarray:
            return x[self._copy, self._own].reshape(b, n, *x.shape[2:])

        events = [[] for _ in range(b)]
        for c, o in zip(self._copy, self._own, strict=True):
            name = self.agent_names[o]
            events[c // n] += [e for e in obs.events[c] if e.get("agent") == name]
        return Observation(
            rgb=pick(obs.rgb),
            depth=None if obs.depth is None else pick(obs.depth),
            poses=pick(obs.poses),
            rewards=pick(obs.rewards),
            terminated=obs.terminated.reshape(b, n).all(axis=1),
            events=events,
            version=obs.version.reshape(b, n).max(axis=1),
        )


def _private_weights(spec: SimSpec) -> str:
    """``private_checkpoint``, else the checkpoint under test run privately, else the shipped one."""
    if spec.private_checkpoint is not None or spec.checkpoint is not None:
        return str(spec.private_checkpoint if spec.private_checkpoint is not None else spec.checkpoint)
    from multiworld.models.checkpoint import PRIVATE_CHECKPOINT

    return str(PRIVATE_CHECKPOINT)


register(
    Variant(
        "private",
        "private state (baseline)",
        "learned",
        lambda s, n, b: PrivateStateSimulator(lambda w: s.backend_simulator(n, w, s.weights("private")), n, b),
        weights=_private_weights,
        default_weights="private",
        on_backend=True,
        order=1,
        reads_map=True,
    )
)
