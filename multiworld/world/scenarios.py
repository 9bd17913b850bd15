"""Versioned scenario registry: an arena preset plus a reward and termination rule.

A scenario id never changes meaning: a change of rules or defaults gets a new version
(``forage-v1``) and the old one stays, so stored worlds and published numbers stay valid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from multiworld.world.arena import ArenaConfig
from multiworld.world.dynamics import StepEvents
from multiworld.world.state import WorldState

RewardFn = Callable[[WorldState, WorldState, StepEvents], np.ndarray]
DoneFn = Callable[[WorldState], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """``reward(before, after, events) -> (B, N) float32``; ``terminated(state) -> (B,) bool``."""

    name: str
    description: str
    arena: ArenaConfig
    reward: RewardFn
    terminated: DoneFn

    def arena_config(self, **overrides) -> ArenaConfig:
        return dataclasses.replace(self.arena, **overrides)


def boxes_on_goals(state: WorldState) -> np.ndarray:
    """(B,) int: how many boxes stand on goal tiles."""
    b = np.arange(state.num_worlds)[:, None]
    return state.goals[b, state.boxes[..., 0], state.boxes[..., 1]].sum(axis=1)


def _no_reward(before: WorldState, after: WorldState, events: StepEvents) -> np.ndarray:
    return np.zeros(after.poses.shape[:2], np.float32)


def _never(state: WorldState) -> np.ndarray:
    return np.zeros(state.num_worlds, bool)


def _forage_reward(before: WorldState, after: WorldState, events: StepEvents) -> np.ndarray:
    return (events.picked >= 0).astype(np.float32)


def _forage_done(state: WorldState) -> np.ndarray:
    return ~state.items_alive.any(axis=1)


def _push_reward(before: WorldState, after: WorldState, events: StepEvents) -> np.ndarray:
    gained = (boxes_on_goals(after) - boxes_on_goals(before)).astype(np.float32)
    return np.repeat(gained[:, None], after.num_agents, axis=1)


def _push_done(state: WorldState) -> np.ndarray:
    return boxes_on_goals(state) == state.boxes.shape[1]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "roam-v0",
            "Free roam, no reward: the data-collection scenario.",
            ArenaConfig(num_boxes=3, num_items=6),
            _no_reward,
            _never,
        ),
        Scenario(
            "forage-v0",
            "Mixed motive: +1 to the agent that picks up an item; ends when all items are taken.",
            ArenaConfig(num_boxes=2, num_items=10),
            _forage_reward,
            _forage_done,
        ),
        Scenario(
            "push-v0",
            "Cooperative: every agent gets +1 when a box lands on a goal tile (-1 when one leaves); "
            "ends when every box is on a goal.",
            ArenaConfig(num_boxes=3, num_items=0, num_goals=3),
            _push_reward,
            _push_done,
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; registered: {sorted(SCENARIOS)}") from None
