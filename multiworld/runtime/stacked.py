"""Moved to :mod:`multiworld.sim.stacked`."""

from multiworld.runtime import _moved

_moved(__name__, "multiworld.sim.stacked")
