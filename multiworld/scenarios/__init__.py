"""One module per registered scenario, as PettingZoo lays out its environments.

``multiworld.scenarios.forage_v0`` (for ``forage-v0``) exposes ``parallel_env(**kw)``,
``env(**kw)`` and ``raw_env(**kw)`` with the scenario fixed; :func:`module_name` maps ids to
module names and :func:`load` imports one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType


def module_name(scenario: str) -> str:
    """``"forage-v0"`` -> ``"multiworld.scenarios.forage_v0"``."""
    return f"{__name__}.{scenario.replace('-', '_')}"


def load(scenario: str) -> ModuleType:
    """The module of a registered scenario (ValueError for an unknown one)."""
    from multiworld.world.scenarios import get_scenario

    get_scenario(scenario)
    return importlib.import_module(module_name(scenario))


def constructors(scenario: str) -> tuple[Callable, Callable, Callable]:
    """``(parallel_env, raw_env, env)`` with ``scenario`` fixed, for a scenario's module."""
    from multiworld.env.aec import env as _env
    from multiworld.env.aec import raw_env as _raw_env
    from multiworld.env.parallel import parallel_env as _parallel_env

    def parallel_env(**kwargs):
        return _parallel_env(scenario=scenario, **kwargs)

    def raw_env(**kwargs):
        return _raw_env(scenario=scenario, **kwargs)

    def env(**kwargs):
        return _env(scenario=scenario, **kwargs)

    for fn, base in ((parallel_env, _parallel_env), (raw_env, _raw_env), (env, _env)):
        fn.__doc__ = f"{base.__doc__.splitlines()[0]} ``scenario`` is {scenario!r}."
    return parallel_env, raw_env, env
