"""Moved to :mod:`multiworld.sim.private`."""

from multiworld.runtime import _moved

_moved(__name__, "multiworld.sim.private")
