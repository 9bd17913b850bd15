"""External simulators: a researcher's own world model behind the ``Simulator`` contract.

:func:`load_factory` finds the factory named by ``"module:factory"`` (or ``"file.py:factory"``);
:class:`CheckedSimulator` wraps what it builds and checks every observation against the contract
(``benchmarks/README.md``), so a wrong shape or dtype is an error naming the simulator and the field.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys

import numpy as np

from multiworld.sim.base import Observation, Simulator
from multiworld.world.state import agent_names


def load_factory(target: str):
    """The callable named by ``"module:attr"`` or ``"path/to/file.py:attr"`` (ValueError naming
    what is wrong: the form, the module, or the attribute)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"a simulator factory is 'module:factory' or 'file.py:factory', got {target!r}")
    if module_name.endswith(".py"):
        path = pathlib.Path(module_name)
        if not path.is_file():
            raise ValueError(f"simulator factory {target!r}: no file {path}")
        name = f"_multiworld_external_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"simulator factory {target!r}: cannot import {module_name!r} ({e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"simulator factory {target!r}: {module_name} has no callable {attr!r}")
    return fn


class CheckedSimulator(Simulator):
    """An external simulator with every observation checked against the contract, so a wrong shape
    or dtype is an error naming the simulator and the field instead of a wrong benchmark number."""

    def __init__(self, name: str, inner, num_agents: int, num_worlds: int) -> None:
        for method in ("reset", "step", "world_state"):
            if not callable(getattr(inner, method, None)):
                raise ValueError(f"external simulator {name!r} has no {method}() (see benchmarks/README.md)")
        if (getattr(inner, "num_worlds", None), getattr(inner, "num_agents", None)) != (num_worlds, num_agents):
            raise ValueError(
                f"external simulator {name!r} was asked for {num_worlds} worlds x {num_agents} agents but "
                f"reports {getattr(inner, 'num_worlds', None)} x {getattr(inner, 'num_agents', None)}"
            )
        self.name, self.inner = name, inner
        self.num_worlds, self.num_agents = num_worlds, num_agents
        self.backend = f"external:{name}"
        self.agent_names = list(getattr(inner, "agent_names", agent_names(num_agents)))
        self.has_state = bool(getattr(inner, "has_state", False))

    def _check(self, obs) -> Observation:
        b, n = self.num_worlds, self.num_agents
        where = f"external simulator {self.name!r}"
        if not isinstance(obs, Observation):
            raise ValueError(f"{where} returned {type(obs).__name__}, expected multiworld.sim.base.Observation")
        rgb = np.asarray(obs.rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 5 or rgb.shape[:2] != (b, n) or rgb.shape[-1] != 3:
            raise ValueError(f"{where}: rgb must be uint8 ({b}, {n}, H, W, 3), got {rgb.dtype} {rgb.shape}")
        poses = np.asarray(obs.poses)
        if poses.shape != (b, n, 3) or not np.isfinite(poses).all():
            raise ValueError(f"{where}: poses must be finite ({b}, {n}, 3), got {poses.shape}")
        if np.shape(obs.rewards) != (b, n) or np.shape(obs.terminated) != (b,) or len(obs.events) != b:
            raise ValueError(
                f"{where}: rewards must be ({b}, {n}), terminated ({b},) and events one list per world; got "
                f"{np.shape(obs.rewards)}, {np.shape(obs.terminated)}, {len(obs.events)}"
            )
        return obs

    def reset(self, seeds, start=None, tokens=None) -> Observation:
        return self._check(self.inner.reset(seeds, start=start))

    def step(self, actions) -> Observation:
        return self._check(self.inner.step(actions))

    def world_state(self):
        return self.inner.world_state()

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()
