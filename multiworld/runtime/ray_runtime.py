"""Moved: the options and errors to :mod:`multiworld.runtime.ray_options`, the world actor to
:mod:`multiworld.runtime.ray_world`, the simulator to :mod:`multiworld.runtime.ray_simulator`."""

import warnings

from multiworld.runtime.ray_options import *  # noqa: F403
from multiworld.runtime.ray_simulator import *  # noqa: F403
from multiworld.runtime.ray_world import *  # noqa: F403

warnings.warn(f"{__name__} moved to multiworld.runtime.ray_*; it goes away in the next release", DeprecationWarning, 2)
