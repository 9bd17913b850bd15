"""multiworld: multi-agent shared-world simulation with generative world models."""

__version__ = "0.1.0"

# The env front door, imported on first use so `import multiworld` stays light (no torch/pettingzoo).
# `multiworld.env` is the subpackage itself: its module object is callable and returns the AEC env.
_LAZY = {
    "parallel_env": "multiworld.env.parallel",
    "raw_env": "multiworld.env.aec",
    "vector_env": "multiworld.env.vector",
    "make_simulator": "multiworld.runtime.factory",
}
__all__ = ["__version__", "env", *_LAZY]


def __getattr__(name: str):
    import importlib

    if name == "env":
        return importlib.import_module("multiworld.env")  # binds multiworld.env as a side effect
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'multiworld' has no attribute {name!r}")
