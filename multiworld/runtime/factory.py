"""Build a :class:`~multiworld.sim.base.Simulator` from a backend name and a runtime name.

Two registries make the plug-in points; the env layer only ever calls :func:`make_simulator`:

- ``BACKENDS[name](scenario, num_agents, num_worlds, render, depth, device, **kwargs) -> Simulator``
  builds the simulator in this process (the oracle, the learned model);
- ``RUNTIMES[name](backend, scenario, num_agents, num_worlds, render, depth, device, **kwargs) -> Simulator``
  decides *where* it runs. ``backend`` is the backend's registered name, so a remote runtime
  can look the builder up again on the other side; ``"local"`` just calls the builder here.

A backend or runtime that is planned but not built yet is registered with :func:`unavailable`;
asking for it raises :class:`UnavailableError`. Register a real one with
:func:`register_backend` / :func:`register_runtime` (or by assigning into the dicts); env code
needs no change, and the conformance tests pick it up through :func:`available_backends`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from multiworld.sim.base import Simulator
from multiworld.world.render import RenderConfig
from multiworld.world.scenarios import Scenario, get_scenario


class UnavailableError(NotImplementedError, ValueError):
    """A registered backend or runtime that is not built yet (also a ValueError: bad user input)."""


BackendFn = Callable[..., Simulator]
RuntimeFn = Callable[..., Simulator]


def unavailable(kind: str, name: str, message: str | None = None) -> Callable[..., Simulator]:
    """A placeholder builder that raises :class:`UnavailableError`."""

    def build(*args, **kwargs) -> Simulator:
        raise UnavailableError(message or f"the {name} {kind} is not available yet")

    build.unavailable = True  # type: ignore[attr-defined]
    build.__name__ = f"unavailable_{kind}_{name}"
    return build


def _lazy(module: str, name: str) -> Callable[..., Simulator]:
    """The builder ``name`` of ``module`` (a simulator class, a runtime's builder), imported on first use."""
    return lambda *args, **spec: getattr(importlib.import_module(module), name)(*args, **spec)


def _local(backend: str, **spec) -> Simulator:
    return BACKENDS[backend](**spec)


BACKENDS: dict[str, BackendFn] = {
    "oracle": _lazy("multiworld.sim.oracle", "OracleSimulator"),
    "model": _lazy("multiworld.sim.model", "ModelSimulator"),
}
RUNTIMES: dict[str, RuntimeFn] = {"local": _local, "ray": _lazy("multiworld.runtime.ray_simulator", "build")}


def register_backend(name: str, fn: BackendFn) -> None:
    """Add or replace a backend builder (see the module docstring for its signature)."""
    BACKENDS[name] = fn


def register_runtime(name: str, fn: RuntimeFn) -> None:
    """Add or replace a runtime builder (see the module docstring for its signature)."""
    RUNTIMES[name] = fn


def _is_available(fn: Callable) -> bool:
    return not getattr(fn, "unavailable", False)


def available_backends() -> list[str]:
    """Names of the backends that can be built now (placeholders excluded), sorted."""
    return sorted(name for name, fn in BACKENDS.items() if _is_available(fn))


def available_runtimes() -> list[str]:
    """Names of the runtimes that can be used now (placeholders excluded), sorted."""
    return sorted(name for name, fn in RUNTIMES.items() if _is_available(fn))


def check_names(backend: str, runtime: str) -> None:
    """Raise ValueError for an unknown backend or runtime name, UnavailableError for a placeholder."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {sorted(BACKENDS)}")
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; valid runtimes: {sorted(RUNTIMES)}")
    for kind, name, fn in (("backend", backend, BACKENDS[backend]), ("runtime", runtime, RUNTIMES[runtime])):
        if not _is_available(fn):
            fn()  # raises UnavailableError with the placeholder's message
            raise UnavailableError(f"the {name} {kind} is not available yet")  # pragma: no cover


def positive_int(name: str, value) -> int:
    """``value`` as an int if it is a positive integer (Python or numpy, not bool), else ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def make_simulator(
    backend: str = "oracle",
    runtime: str = "local",
    scenario: str | Scenario = "forage-v0",
    num_agents: int = 4,
    num_worlds: int = 1,
    render: RenderConfig | None = None,
    depth: bool = False,
    device: str = "cpu",
    **kwargs,
) -> Simulator:
    """A simulator of ``num_worlds`` worlds of ``scenario`` with ``num_agents`` agents each.

    ``backend`` in :data:`BACKENDS` (``"oracle"``, ``"model"``), ``runtime`` in :data:`RUNTIMES`
    (``"local"``, ``"ray"``); unknown names raise ValueError naming the valid ones, placeholders
    raise :class:`UnavailableError`. Extra ``kwargs`` go to the backend (the oracle takes arena
    overrides such as ``size=12``).
    """
    check_names(backend, runtime)
    if isinstance(scenario, str):
        scenario = get_scenario(scenario)
    elif not isinstance(scenario, Scenario):
        raise ValueError(f"scenario must be a registered name or a Scenario, got {type(scenario).__name__}")
    num_agents = positive_int("num_agents", num_agents)
    num_worlds = positive_int("num_worlds", num_worlds)
    return RUNTIMES[runtime](
        backend,
        scenario=scenario,
        num_agents=num_agents,
        num_worlds=num_worlds,
        render=render or RenderConfig(),
        depth=depth,
        device=device,
        **kwargs,
    )
