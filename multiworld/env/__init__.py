"""The PettingZoo front door: ``parallel_env`` (ParallelEnv), ``env`` (AEC), ``vector_env`` (batched).

``multiworld.env`` is both this package and the AEC constructor: the package's module object is
callable, so ``multiworld.env(scenario=..., ...)`` returns the AEC env whichever of the two
Python finds first (importing a submodule such as ``multiworld.env.parallel`` rebinds the
package attribute ``multiworld.env`` to this module).
"""

import sys
import types

from multiworld.env.aec import MultiWorldAECEnv, env, raw_env
from multiworld.env.parallel import MultiWorldParallelEnv, parallel_env
from multiworld.env.vector import MultiWorldVectorEnv, vector_env

__all__ = [
    "MultiWorldAECEnv",
    "MultiWorldParallelEnv",
    "MultiWorldVectorEnv",
    "env",
    "parallel_env",
    "raw_env",
    "vector_env",
]


class _CallableModule(types.ModuleType):
    def __call__(self, scenario: str = "forage-v0", **kwargs):
        """The AEC env of ``scenario``: same as :func:`multiworld.env.aec.env`."""
        return env(scenario=scenario, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
