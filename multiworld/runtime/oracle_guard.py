"""A behavioural check that the oracle stays out of a simulator's run-time loop.

:func:`arm` makes the oracle's run-time machinery raise :class:`OracleInTheLoopError`, however
it is reached (any import, alias or stored reference: the functions' code objects are swapped,
not module attributes; the renderer, a method, is replaced on its class):

- the renderer, ``multiworld.world.render.Raycaster.render``;
- the dynamics, ``multiworld.world.dynamics.step``;
- the map generator, ``multiworld.world.arena.generate``;
- the top-down map, ``multiworld.world.topdown.top_down``;
- the scenarios' reward and ending rules.

What a reset uses stays allowed for a world that starts over (an autoreset): with
``fresh=True`` the renderer and the top-down map may draw states whose worlds are *all* at
version 0 (the reset states of the restarting worlds, never a running world), and inside
:func:`generating` the map generator may draw new worlds (the vector env draws the worlds it
restarts). The dynamics and the scenario rules are never allowed. Allowed calls are counted in
:data:`ALLOWED`; :func:`disarm` restores everything.

The tests arm it after ``reset`` in process, and in the Ray runtime's actors through their
``oracle_guard`` hooks. Arm it only in a process you own: it changes functions process-wide.
"""

from __future__ import annotations

import collections
import contextlib
import types
from collections.abc import Iterator

import numpy as np


class OracleInTheLoopError(RuntimeError):
    """The oracle's renderer, dynamics, map generator, top-down map or rules ran while guarded."""


ALLOWED: collections.Counter = collections.Counter()
_MODE = {"armed": False, "fresh": False, "generating": False}
_SAVED: dict[str, tuple[types.FunctionType, types.CodeType, types.FunctionType]] = {}
_METHODS: dict[str, tuple[type, str, types.FunctionType]] = {}


def _targets() -> dict[str, types.FunctionType]:
    from multiworld.world import arena, dynamics, scenarios, topdown

    out = {
        "dynamics": dynamics.step,
        "generate": arena.generate,
        "top_down": topdown.top_down,
    }
    for scenario in scenarios.SCENARIOS.values():
        for rule in ("reward", "terminated"):
            fn = getattr(scenario, rule)
            out.setdefault(f"rule {fn.__module__}.{fn.__qualname__}", fn)
    return out


def _state_arg(name: str, args: tuple, kwargs: dict):
    if "state" in kwargs:
        return kwargs["state"]
    return args[1] if name == "render" else args[0]


def _allowed(name: str, args: tuple, kwargs: dict) -> bool:
    if name in ("render", "top_down"):
        state = _state_arg(name, args, kwargs)
        return _MODE["fresh"] and bool(np.all(np.asarray(state.step) == 0))
    if name == "generate":
        return _MODE["generating"]
    return False


def _dispatch(name: str, args: tuple, kwargs: dict):
    """What a guarded function runs instead of its own code."""
    _, _, original = _SAVED[name]
    if _MODE["armed"] and not _allowed(name, args, kwargs):
        what = "" if name.startswith("rule") else " (only a restarting world's reset may use it)"
        raise OracleInTheLoopError(f"the oracle's {name} ran while the oracle guard was armed{what}")
    ALLOWED[name] += 1
    return original(*args, **kwargs)


def _stub(name: str) -> types.CodeType:
    """Code of a closure-free function that hands its call to :func:`_dispatch` (it runs with the
    guarded function's globals, so it imports this module itself)."""
    source = (
        "def guarded(*args, **kwargs):\n"
        "    from multiworld.runtime import oracle_guard\n"
        f"    return oracle_guard._dispatch({name!r}, args, kwargs)\n"
    )
    scope: dict = {}
    exec(compile(source, f"<oracle guard {name}>", "exec"), scope)
    return scope["guarded"].__code__


def arm(fresh: bool = True) -> None:
    """Guard the oracle's run-time functions in this process (see the module docstring)."""
    if not _SAVED:
        from multiworld.world.render import Raycaster

        original = Raycaster.render

        def render(*args, **kwargs):
            return _dispatch("render", args, kwargs)

        _METHODS["render"] = (Raycaster, "render", original)
        _SAVED["render"] = (original, original.__code__, original)
        Raycaster.render = render
        for name, fn in _targets().items():
            copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
            copy.__kwdefaults__ = fn.__kwdefaults__
            _SAVED[name] = (fn, fn.__code__, copy)
            fn.__code__ = _stub(name)
    _MODE.update(armed=True, fresh=bool(fresh), generating=False)
    ALLOWED.clear()


def disarm() -> None:
    """Give the oracle's functions their own code back."""
    for name, (fn, code, _) in _SAVED.items():
        if name in _METHODS:
            owner, attr, original = _METHODS[name]
            setattr(owner, attr, original)
        else:
            fn.__code__ = code
    _SAVED.clear()
    _METHODS.clear()
    _MODE.update(armed=False, fresh=False, generating=False)


def armed() -> bool:
    return bool(_MODE["armed"])


@contextlib.contextmanager
def generating(allow: bool = True) -> Iterator[None]:
    """Inside the block the map generator may run (the vector env drawing the worlds it restarts)."""
    before = _MODE["generating"]
    _MODE["generating"] = bool(allow)
    try:
        yield
    finally:
        _MODE["generating"] = before


@contextlib.contextmanager
def guarded(fresh: bool = True) -> Iterator[None]:
    """:func:`arm` for the duration of the block."""
    arm(fresh)
    try:
        yield
    finally:
        disarm()
