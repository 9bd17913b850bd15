"""The contract every backend (oracle, model) and runtime (local, ray) fulfils.

A :class:`Simulator` owns B worlds of N agents each and advances them all at once from
the joint actions ``(B, N)``. The env layer (PettingZoo) sits on top of this contract and
knows nothing else, so backends and runtimes are interchangeable.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from multiworld.world.arena import ArenaConfig, generate
from multiworld.world.dynamics import validate_actions
from multiworld.world.state import Action, WorldState

if TYPE_CHECKING:
    from multiworld.state import WorldReader

# What advancing the worlds by one joint step gives, before anything is rendered:
# (rewards (B, N) float32, terminated (B,) bool, per-world event dicts).
Outcome = tuple[np.ndarray, np.ndarray, list[list[dict]]]


@dataclasses.dataclass
class Observation:
    """What a simulator returns after reset or step, for B worlds and N agents.

    rgb:        (B, N, H, W, 3) uint8  each agent's egocentric view
    depth:      (B, N, H, W) float32   only when the simulator was asked for depth
    poses:      (B, N, 3) float32      (x, y, heading) of every agent
    rewards:    (B, N) float32         rewards of the step (zeros after reset)
    terminated: (B,) bool              the scenario ended in this world
    events:     per world, a list of event dicts ({"type": "push"|"pickup", "agent": name, ...})
    version:    (B,) int64             state version the views were rendered from (steps since reset)
    """

    rgb: np.ndarray
    poses: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    events: list[list[dict]]
    version: np.ndarray
    depth: np.ndarray | None = None


def initial_state(
    arena: ArenaConfig, seeds: list[int], start: WorldState | None, num_worlds: int, num_agents: int
) -> WorldState:
    """The reset state of every world: the oracle scene of its seed, or a copy of ``start``.

    Raises ValueError when the seed count or the start state's shape does not fit.
    """
    if len(seeds) != num_worlds:
        raise ValueError(f"need {num_worlds} seeds, got {len(seeds)}")
    state = generate(arena, seeds) if start is None else start.copy()
    if state.num_worlds != num_worlds or state.num_agents != num_agents:
        raise ValueError(
            f"start state has {state.num_worlds} worlds x {state.num_agents} agents, "
            f"expected {num_worlds} x {num_agents}"
        )
    return state


def restart_inputs(
    actions: np.ndarray, restart: np.ndarray, start: WorldState, num_worlds: int, num_agents: int
) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(joint actions with NOOP for the restarting worlds, restart mask)`` of a
    :meth:`Simulator.step_and_restart` call (ValueError naming the problem)."""
    mask = np.asarray(restart)
    if mask.shape != (num_worlds,) or mask.dtype != np.bool_:
        raise ValueError(f"restart must be a bool mask of shape ({num_worlds},), got {mask.dtype} {mask.shape}")
    if start.num_worlds != int(mask.sum()):
        raise ValueError(f"restart selects {int(mask.sum())} worlds but start has {start.num_worlds}")
    joint = validate_actions(actions, num_worlds, num_agents).copy()
    joint[mask] = Action.NOOP
    return joint, mask


def clear_outcome(outcome: Outcome, restart: np.ndarray) -> Outcome:
    """``outcome`` with reward 0, terminated False and no events for the restarted worlds."""
    rewards, terminated, events = outcome
    rewards = np.where(restart[:, None], 0, rewards).astype(np.float32)
    terminated = np.asarray(terminated, bool) & ~restart
    return rewards, terminated, [[] if r else list(ev) for r, ev in zip(restart, events, strict=True)]


def stored_states(sources: Sequence[tuple[WorldReader, int]], num_worlds: int) -> WorldState:
    """The stored rows ``sources`` (one ``(reader, step)`` per world) as one batch of states."""
    if len(sources) != num_worlds:
        raise ValueError(f"need one stored (world, step) per world: {num_worlds}, got {len(sources)}")
    return WorldState.concat([reader.state(int(step)) for reader, step in sources])


class Simulator(abc.ABC):
    """B worlds advanced together. Implementations: the oracle and the learned model (both
    :class:`InProcessSimulator`), the Ray runtime, and the private-state wrapper."""

    backend: str
    num_worlds: int
    num_agents: int
    agent_names: list[str]
    # sha256 of the learned model's weights (the store's ``checkpoint_hash``); None for the oracle.
    checkpoint_sha256: str | None = None

    @abc.abstractmethod
    def reset(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> Observation:
        """Start every world from the oracle scene of its seed, or from ``start`` (a stored state)."""

    @abc.abstractmethod
    def step(self, actions: np.ndarray) -> Observation:
        """Apply joint actions ``(B, N)`` (validated: a bad action raises ValueError, nothing changes)."""

    def step_and_restart(
        self, actions: np.ndarray, restart: np.ndarray, start: WorldState, seeds: list[int]
    ) -> Observation:
        """Step the batch while some worlds start over (a vector env's autoreset), in one call.

        Worlds with ``restart[b]`` (B,) True begin again from ``start`` (one world per restarted
        world, in order) and ignore their actions; every other world applies its actions. The
        restarted worlds read reward 0, terminated False and no events. ``seeds``: every world's
        seed afterwards (the restarted ones' new seeds), for simulators that record seeds.

        This default steps every world (the restarting ones with NOOP), then resets all of them
        from the merged state, rendering twice; the oracle and the model override it to render once.
        """
        joint, restart = restart_inputs(actions, restart, start, self.num_worlds, self.num_agents)
        stepped = self.step(joint)
        obs = self.reset(list(seeds), start=self.world_state().replace_worlds(restart, start))
        obs.rewards, obs.terminated, obs.events = clear_outcome(
            (stepped.rewards, stepped.terminated, stepped.events), restart
        )
        return obs

    def resume(self, sources: Sequence[tuple[WorldReader, int]], seeds: list[int]) -> Observation:
        """Continue every world from a stored row: ``sources`` holds one ``(reader, step)`` per world.

        This default restarts from the rows' symbolic states (all the oracle needs); the model
        backend also restores its latent state and its static scene (exact resume)."""
        return self.reset(list(seeds), start=stored_states(sources, self.num_worlds))

    def record_attrs(self, world: int) -> dict[str, Any]:
        """Attributes a stored copy of world ``world`` needs to be resumed exactly (JSON values)."""
        return {}

    @abc.abstractmethod
    def world_state(self) -> WorldState:
        """The symbolic state of every world (for the model: decoded from its tokens)."""

    def tokens(self) -> np.ndarray | None:
        """Scene tokens ``(B, ...)`` of the learned model; None for the oracle."""
        return None

    def top_down(self) -> np.ndarray:
        """(B, h, w, 3) uint8 map images of every world."""
        from multiworld.world.topdown import top_down

        return top_down(self.world_state())

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class InProcessSimulator(Simulator):
    """A simulator that advances and renders its worlds in this process (the oracle, the model).

    Subclasses provide :meth:`_advance` (apply checked joint actions to the state), :meth:`_restart`
    (start some worlds over) and :meth:`_observe` (render the current state); stepping, and
    stepping while some worlds restart with a single render, follow from those.

    A step is two public halves, :meth:`advance` (or :meth:`advance_and_restart`) and
    :meth:`observe`: the Ray runtime's world actor drives the same simulator through the first
    half only and leaves the rendering to its agent actors.
    """

    def advance(self, actions: np.ndarray) -> Outcome:
        """Apply joint actions ``(B, N)`` (validated first: nothing changes on bad input), without rendering."""
        return self._advance(validate_actions(actions, self.num_worlds, self.num_agents))

    def advance_and_restart(
        self, actions: np.ndarray, restart: np.ndarray, start: WorldState, seeds: list[int]
    ) -> Outcome:
        """:meth:`step_and_restart` without rendering: the restarted worlds read reward 0,
        terminated False and no events."""
        joint, restart = restart_inputs(actions, restart, start, self.num_worlds, self.num_agents)
        if len(seeds) != self.num_worlds:
            raise ValueError(f"need {self.num_worlds} seeds, got {len(seeds)}")
        outcome = self._advance(joint)
        self._restart(restart, start)
        return clear_outcome(outcome, restart)

    def observe(self, outcome: Outcome) -> Observation:
        """Render every agent's view of the current state, with ``outcome``'s rewards, flags and events."""
        return self._observe(*outcome)

    def step(self, actions: np.ndarray) -> Observation:
        return self.observe(self.advance(actions))

    def step_and_restart(
        self, actions: np.ndarray, restart: np.ndarray, start: WorldState, seeds: list[int]
    ) -> Observation:
        return self.observe(self.advance_and_restart(actions, restart, start, seeds))

    def reset_outcome(self) -> Outcome:
        """The outcome of a reset: zero rewards, nothing terminated, no events."""
        zeros = np.zeros((self.num_worlds, self.num_agents), np.float32)
        return zeros, np.zeros(self.num_worlds, bool), [[] for _ in range(self.num_worlds)]

    def _first_observation(self) -> Observation:
        """The observation right after a reset."""
        return self.observe(self.reset_outcome())

    @abc.abstractmethod
    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[dict]]]:
        """Apply checked joint actions; return the step's rewards, terminations and per-world events."""

    @abc.abstractmethod
    def _restart(self, mask: np.ndarray, start: WorldState) -> None:
        """Start the worlds where ``mask`` is True over from ``start`` (one world per True)."""

    @abc.abstractmethod
    def _observe(self, rewards: np.ndarray, terminated: np.ndarray, events: list[list[dict]]) -> Observation:
        """Render every agent's view of the current state into an :class:`Observation`."""
