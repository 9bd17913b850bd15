"""Moved to :mod:`multiworld.sim.model`."""

from multiworld.runtime import _moved

_moved(__name__, "multiworld.sim.model")
