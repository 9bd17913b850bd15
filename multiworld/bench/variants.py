"""The simulators every benchmark compares: a registry of variants, built from a small picklable spec.

Each **variant** is registered beside its simulator class, ``register(Variant(...))``: its name
(its column in every table, its key in every JSON), label, kind, weights and how to build it from
a :class:`SimSpec`. The benchmarks, the report, the plots and ``multiworld bench --help`` read the
registry; ``tests/test_baselines.py`` builds every registered variant. The built-in ones:
``shared``, the backend under test with one shared state, and ``oracle``, the exact simulator
(the upper bound and the reference of every metric), here; the ``private`` and ``stacked``
baselines in :mod:`multiworld.runtime.private` and :mod:`multiworld.runtime.stacked`; the
``persistence`` and ``mean`` bounds in :mod:`multiworld.bench.bounds`. Besides them, any number
of **external** simulators, ``name -> "module:factory"`` (:func:`load_factory`): a researcher's
own world model behind the ``Simulator`` contract.

Benchmarks ship a :class:`SimSpec` to their workers (local or Ray tasks), which build their
own simulators from it: factories, not built objects, cross process boundaries.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pathlib
import sys
from collections.abc import Callable

import numpy as np

from multiworld.runtime.base import Observation, Simulator
from multiworld.world.state import agent_names

KINDS = ("learned", "bound", "reference")  # every table lists the learned variants, the bounds, the reference
# The modules that register the other built-in variants beside their classes.
PROVIDERS = ("multiworld.runtime.private", "multiworld.runtime.stacked", "multiworld.bench.bounds")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One simulator design the benchmarks compare; ``kind`` is one of :data:`KINDS` (the plots draw
    bounds dotted and the reference dashed).

    ``build(spec, num_agents, num_worlds) -> Simulator``. ``weights(spec)``: the checkpoint it runs
    for ``spec`` (None: ``default_weights``, the name of a shipped checkpoint; with no
    ``default_weights``, no weights at all). ``on_backend``: it runs the spec's backend, so it has
    weights only with the model backend. ``order``: its place among its kind (ties: registration order).
    """

    name: str
    label: str
    kind: str
    build: Callable[[SimSpec, int, int], Simulator]
    weights: Callable[[SimSpec], str | None] = lambda spec: None
    default_weights: str | None = None
    on_backend: bool = False
    order: int = 100

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"variant {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    """Add ``variant`` to the registry (a name registered twice is an error)."""
    if variant.name in _REGISTRY:
        raise ValueError(f"variant {variant.name!r} is already registered")
    _REGISTRY[variant.name] = variant
    return variant


def registered() -> dict[str, Variant]:
    """Every registered variant by name, in table order (the built-in ones imported on first use)."""
    for module in PROVIDERS:
        importlib.import_module(module)
    return {v.name: v for v in sorted(_REGISTRY.values(), key=lambda v: (KINDS.index(v.kind), v.order))}


def __getattr__(name: str):
    if name == "VARIANTS":  # the registered variants' names, in table order
        return tuple(registered())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        builtin = list(registered())
        if any(n in builtin for n in names) or len(set(names)) != len(names):
            raise ValueError(f"external simulator names must be unique and not one of {builtin}, got {names}")

    @property
    def variants(self) -> tuple[str, ...]:
        """Every variant of this spec: the registered ones, then the external simulators."""
        return (*registered(), *(n for n, _ in self.external))

    def weights(self, variant: str) -> str | None:
        """The checkpoint ``variant`` runs (None: not a model, or the shipped default)."""
        v = registered().get(variant)
        if v is None or (v.on_backend and self.backend != "model"):
            return None
        return v.weights(self)

    def describe(self) -> dict:
        """Which weights each variant runs, and how they were trained (for the benchmark JSON)."""
        from multiworld.models.checkpoint import SHIPPED, read_config

        out = {}
        for name in self.variants:
            v = registered().get(name)
            if v is None:
                out[name] = {"weights": "external", "factory": dict(self.external)[name]}
            elif v.default_weights is None:  # no weights at all
                out[name] = {"weights": name}
            elif v.on_backend and self.backend != "model":
                out[name] = {"weights": self.backend}
            else:
                path = self.weights(name)
                resolved = SHIPPED / v.default_weights if path is None else pathlib.Path(path)
                config = read_config(resolved)
                training = config.get("training", {})
                out[name] = {
                    "weights": f"shipped:{resolved.name}" if str(resolved).startswith(str(SHIPPED)) else str(path),
                    "weights_sha256": config.get("weights_sha256"),
                    "trained_private_state": bool(training.get("private_state", False)),
                    "trained_stacked_frames": bool(training.get("stacked_frames", False)),
                }
        return out

    def build(self, variant: str, num_agents: int, num_worlds: int) -> Simulator:
        """A simulator of ``variant`` (see :attr:`variants`) with ``num_worlds`` x ``num_agents``."""
        if variant not in self.variants:
            raise ValueError(f"unknown variant {variant!r}; valid: {list(self.variants)}")
        external = dict(self.external)
        if variant in external:
            inner = load_factory(external[variant])(
                scenario=self.scenario, num_agents=num_agents, num_worlds=num_worlds
            )
            return CheckedSimulator(variant, inner, num_agents, num_worlds)
        return registered()[variant].build(self, num_agents, num_worlds)

    def backend_simulator(self, num_agents: int, num_worlds: int, weights: str | None = None) -> Simulator:
        """The backend under test with ``weights`` (None: its default)."""
        from multiworld.runtime.factory import make_simulator

        kwargs = {"device": self.device, **({"checkpoint": weights} if weights is not None else {})}
        return make_simulator(
            self.backend, scenario=self.scenario, num_agents=num_agents, num_worlds=num_worlds, **kwargs
        )


def _oracle(spec: SimSpec, num_agents: int, num_worlds: int) -> Simulator:
    from multiworld.runtime.factory import make_simulator

    return make_simulator("oracle", scenario=spec.scenario, num_agents=num_agents, num_worlds=num_worlds)


register(
    Variant(
        "shared",
        "shared state",
        "learned",
        lambda spec, n, b: spec.backend_simulator(n, b, spec.weights("shared")),
        weights=lambda spec: None if spec.checkpoint is None else str(spec.checkpoint),
        default_weights="default",
        on_backend=True,
        order=0,
    )
)
register(Variant("oracle", "oracle (upper bound)", "reference", _oracle))
