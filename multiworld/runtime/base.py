"""Moved to :mod:`multiworld.sim.base`."""

from multiworld.runtime import _moved

_moved(__name__, "multiworld.sim.base")
