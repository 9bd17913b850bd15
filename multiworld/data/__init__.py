"""Recording worlds into the store: :mod:`multiworld.data.recorder` (any PettingZoo env)."""
