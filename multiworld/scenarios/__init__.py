"""One module per registered scenario, as PettingZoo lays out its environments.

``multiworld.scenarios.forage_v0`` (for ``forage-v0``) exposes ``parallel_env(**kw)``,
``env(**kw)`` and ``raw_env(**kw)`` with the scenario fixed; :func:`module_name` maps ids to
module names and :func:`load` imports one.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def module_name(scenario: str) -> str:
    """``"forage-v0"`` -> ``"multiworld.scenarios.forage_v0"``."""
    return f"{__name__}.{scenario.replace('-', '_')}"


def load(scenario: str) -> ModuleType:
    """The module of a registered scenario (ValueError for an unknown one)."""
    from multiworld.world.scenarios import get_scenario

    get_scenario(scenario)
    return importlib.import_module(module_name(scenario))
