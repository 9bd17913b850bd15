"""The simulators every benchmark compares: a registry of variants, built from a small picklable spec.

Each **variant** is registered beside its simulator class, ``register(Variant(...))``: its name
(its column in every table, its key in every JSON), label, kind, weights and how to build it from
a :class:`SimSpec`. The benchmarks, the report, the plots and ``multiworld bench --help`` read the
registry; ``tests/test_baselines.py`` builds every registered variant. The built-in ones:
``shared``, the backend under test with one shared state, and ``oracle``, the exact simulator
(the upper bound and the reference of every metric), here; the ``private`` and ``stacked``
baselines in :mod:`multiworld.sim.private` and :mod:`multiworld.sim.stacked`; the
``persistence`` and ``mean`` bounds in :mod:`multiworld.sim.bounds`. Besides them, any number
of **external** simulators, ``name -> "module:factory"`` (:mod:`multiworld.sim.external`): a
researcher's own world model behind the ``Simulator`` contract.

Benchmarks ship a :class:`SimSpec` to their workers (local or Ray tasks), which build their
own simulators from it: factories, not built objects, cross process boundaries.
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
from collections.abc import Callable

from multiworld.sim.base import Simulator
from multiworld.sim.external import CheckedSimulator, load_factory

KINDS = ("learned", "bound", "reference")  # every table lists the learned variants, the bounds, the reference
# The modules that register the other built-in variants beside their classes.
PROVIDERS = ("multiworld.sim.private", "multiworld.sim.stacked", "multiworld.sim.bounds")


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
    reads_map: bool = False  # it can start from the top-down map too (``SimSpec.init == "map"``)

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
    # What the learned variants start from: "views" (every agent's first view and pose: what every
    # variant can be given, the headline) or "map" (also the top-down map, for the variants that
    # read it; the others are left out of such a run, so a table never mixes the two).
    init: str = "views"

    def __post_init__(self) -> None:
        if self.init not in ("views", "map"):
            raise ValueError(f"init must be 'views' or 'map', got {self.init!r}")
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
        if self.backend == "model":
            kwargs["init"] = self.init
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
        reads_map=True,
    )
)
register(Variant("oracle", "oracle (upper bound)", "reference", _oracle, reads_map=True))
