"""The ``roam-v0`` scenario as a PettingZoo environment module (see ``multiworld.env``)."""

from __future__ import annotations

from multiworld.scenarios import constructors

SCENARIO = "roam-v0"

parallel_env, raw_env, env = constructors(SCENARIO)
