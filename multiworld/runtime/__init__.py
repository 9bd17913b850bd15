"""Where a simulator runs: in this process (:mod:`~multiworld.runtime.factory`'s ``local``) or on Ray
(:mod:`~multiworld.runtime.ray_options`, :mod:`~multiworld.runtime.ray_world`,
:mod:`~multiworld.runtime.ray_simulator`). The simulators themselves are in :mod:`multiworld.sim`."""


def _moved(old: str, new: str) -> None:
    """Make module ``old`` an alias of ``new`` (its old import path keeps working for one release)."""
    import importlib
    import sys
    import warnings

    warnings.warn(f"{old} moved to {new}; the old path goes away in the next release", DeprecationWarning, 3)
    sys.modules[old] = importlib.import_module(new)
