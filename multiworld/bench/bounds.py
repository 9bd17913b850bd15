"""Moved to :mod:`multiworld.sim.bounds`."""

from multiworld.runtime import _moved

_moved(__name__, "multiworld.sim.bounds")
