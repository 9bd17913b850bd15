"""The ``forage-v0`` scenario as a PettingZoo environment module (see ``multiworld.env``)."""

from __future__ import annotations

from multiworld.env.aec import MultiWorldAECEnv
from multiworld.env.aec import env as _env
from multiworld.env.aec import raw_env as _raw_env
from multiworld.env.parallel import MultiWorldParallelEnv
from multiworld.env.parallel import parallel_env as _parallel_env

SCENARIO = "forage-v0"


def parallel_env(**kwargs) -> MultiWorldParallelEnv:
    return _parallel_env(scenario=SCENARIO, **kwargs)


def raw_env(**kwargs) -> MultiWorldAECEnv:
    return _raw_env(scenario=SCENARIO, **kwargs)


def env(**kwargs):
    return _env(scenario=SCENARIO, **kwargs)
