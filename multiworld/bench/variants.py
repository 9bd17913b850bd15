"""The simulators every benchmark compares, built from a small picklable spec.

- ``shared``:  the backend under test (the learned model by default) with one shared state;
- ``private``: a private state per agent (:class:`~multiworld.runtime.private.PrivateStateSimulator`).
  For the model backend its weights are the private-state checkpoint: same architecture, preset,
  data and training budget as the shipped model, trained with ``multiworld train --private-state``
  (each transition shows the model one agent's action only). With a custom ``checkpoint`` and no
  ``private_checkpoint``, the checkpoint under test runs privately instead;
- ``stacked``: the stacked-frames baseline (:mod:`multiworld.models.stacked`): no state, every
  agent's next frame from all agents' recent frames, poses and the joint actions, trained with
  ``multiworld train --stacked-frames`` on the same data and budget;
- ``persistence`` and ``mean``: the trivial bounds (:mod:`multiworld.bench.bounds`);
- ``oracle``:  the exact simulator, the upper bound (and the reference every metric uses);
- any number of **external** simulators, ``name -> "module:factory"``
  (:func:`load_factory`): a researcher's own world model behind the ``Simulator`` contract.

Benchmarks ship a :class:`SimSpec` to their workers (local or Ray tasks), which build their
own simulators from it: factories, not built objects, cross process boundaries.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pathlib
import sys

import numpy as np

from multiworld.runtime.base import Observation, Simulator

VARIANTS = ("shared", "private", "stacked", "persistence", "mean", "oracle")
LEARNED = ("shared", "private", "stacked")


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
        self.agent_names = list(getattr(inner, "agent_names", [f"agent_{i}" for i in range(num_agents)]))
        self.has_state = bool(getattr(inner, "has_state", False))

    def _check(self, obs) -> Observation:
        b, n = self.num_worlds, self.num_agents
        where = f"external simulator {self.name!r}"
        if not isinstance(obs, Observation):
            raise ValueError(f"{where} returned {type(obs).__name__}, expected multiworld.runtime.base.Observation")
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


@dataclasses.dataclass(frozen=True)
class SimSpec:
    """What to simulate: ``backend`` ("model" or "oracle"), its checkpoints, the scenario, device.

    ``checkpoint``: the shared model (None: the shipped one). ``private_checkpoint``: the private
    baseline's weights (None: the shipped private-state checkpoint when ``checkpoint`` is None,
    else ``checkpoint`` itself). ``stacked_checkpoint``: the stacked-frames baseline (None: the
    shipped one; its mean frame is also the ``mean`` bound's). ``external``: ``(name, target)``
    pairs of external simulators (``target`` as in :func:`load_factory`)."""

    backend: str = "model"
    checkpoint: str | None = None
    scenario: str = "roam-v0"
    device: str = "cpu"
    private_checkpoint: str | None = None
    stacked_checkpoint: str | None = None
    external: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        names = [n for n, _ in self.external]
        clash = [n for n in names if n in VARIANTS]
        if clash or len(set(names)) != len(names):
            raise ValueError(f"external simulator names must be unique and not one of {list(VARIANTS)}, got {names}")

    @property
    def variants(self) -> tuple[str, ...]:
        """Every variant of this spec: the built-in ones, then the external simulators."""
        return (*VARIANTS, *(n for n, _ in self.external))

    def weights(self, variant: str) -> str | None:
        """The checkpoint ``variant`` runs (None: not a model, or the shipped default)."""
        if variant in ("stacked", "mean"):
            return None if self.stacked_checkpoint is None else str(self.stacked_checkpoint)
        if self.backend != "model" or variant not in ("shared", "private"):
            return None
        if variant == "private":
            if self.private_checkpoint is not None:
                return str(self.private_checkpoint)
            if self.checkpoint is None:
                from multiworld.models.checkpoint import PRIVATE_CHECKPOINT

                return str(PRIVATE_CHECKPOINT)
        return None if self.checkpoint is None else str(self.checkpoint)

    def describe(self) -> dict:
        """Which weights each variant runs, and how they were trained (for the benchmark JSON)."""
        from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, SHIPPED, STACKED_CHECKPOINT, read_config

        out = {}
        for variant in self.variants:
            if variant in ("oracle", "persistence"):  # no weights at all
                out[variant] = {"weights": variant}
                continue
            if self.backend != "model" and variant in ("shared", "private"):
                out[variant] = {"weights": self.backend}
                continue
            if variant not in VARIANTS:
                out[variant] = {"weights": "external", "factory": dict(self.external)[variant]}
                continue
            path = self.weights(variant)
            default = STACKED_CHECKPOINT if variant in ("stacked", "mean") else DEFAULT_CHECKPOINT
            resolved = default if path is None else pathlib.Path(path)
            config = read_config(resolved)
            shipped = str(resolved).startswith(str(SHIPPED))
            training = config.get("training", {})
            out[variant] = {
                "weights": f"shipped:{resolved.name}" if shipped else str(path),
                "weights_sha256": config.get("weights_sha256"),
                "trained_private_state": bool(training.get("private_state", False)),
                "trained_stacked_frames": bool(training.get("stacked_frames", False)),
            }
        return out

    def build(self, variant: str, num_agents: int, num_worlds: int) -> Simulator:
        """A simulator of ``variant`` (see :attr:`variants`) with ``num_worlds`` x ``num_agents``."""
        from multiworld.runtime.factory import make_simulator

        if variant not in self.variants:
            raise ValueError(f"unknown variant {variant!r}; valid: {list(self.variants)}")
        if variant == "oracle":
            return make_simulator("oracle", scenario=self.scenario, num_agents=num_agents, num_worlds=num_worlds)
        if variant == "stacked":
            from multiworld.runtime.stacked import StackedFramesSimulator

            return StackedFramesSimulator(self.scenario, num_agents, num_worlds, self.device, self.weights(variant))
        if variant == "persistence":
            from multiworld.bench.bounds import PersistenceSimulator

            return PersistenceSimulator(self.scenario, num_agents, num_worlds)
        if variant == "mean":
            from multiworld.bench.bounds import MeanFrameSimulator

            return MeanFrameSimulator(self.scenario, num_agents, num_worlds, self.weights(variant))
        if variant not in VARIANTS:
            factory = load_factory(dict(self.external)[variant])
            inner = factory(scenario=self.scenario, num_agents=num_agents, num_worlds=num_worlds)
            return CheckedSimulator(variant, inner, num_agents, num_worlds)
        weights = self.weights(variant)
        kwargs = {"device": self.device, **({"checkpoint": weights} if weights is not None else {})}

        def make(worlds: int) -> Simulator:
            return make_simulator(
                self.backend, scenario=self.scenario, num_agents=num_agents, num_worlds=worlds, **kwargs
            )

        if variant == "shared":
            return make(num_worlds)
        from multiworld.runtime.private import PrivateStateSimulator

        return PrivateStateSimulator(make, num_agents, num_worlds)
