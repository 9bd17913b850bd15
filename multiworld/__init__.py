"""multiworld: multi-agent shared-world simulation with generative world models."""

__version__ = "0.1.0"
