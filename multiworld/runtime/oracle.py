"""Moved to :mod:`multiworld.sim.oracle`."""

from multiworld.runtime import _moved

_moved(__name__, "multiworld.sim.oracle")
