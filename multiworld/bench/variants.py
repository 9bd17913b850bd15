"""The three simulators every benchmark compares, built from a small picklable spec.

- ``shared``:  the backend under test (the learned model by default) with one shared state;
- ``private``: the same backend and weights with a private state per agent
  (:class:`~multiworld.runtime.private.PrivateStateSimulator`);
- ``oracle``:  the exact simulator, the upper bound (and the reference every metric uses).

Benchmarks ship a :class:`SimSpec` to their workers (local or Ray tasks), which build their
own simulators from it: factories, not built objects, cross process boundaries.
"""

from __future__ import annotations

import dataclasses

from multiworld.runtime.base import Simulator

VARIANTS = ("shared", "private", "oracle")


@dataclasses.dataclass(frozen=True)
class SimSpec:
    """What to simulate: ``backend`` ("model" or "oracle"), its checkpoint, the scenario, device."""

    backend: str = "model"
    checkpoint: str | None = None
    scenario: str = "roam-v0"
    device: str = "cpu"

    def _kwargs(self) -> dict:
        return {"checkpoint": self.checkpoint} if self.backend == "model" and self.checkpoint else {}

    def build(self, variant: str, num_agents: int, num_worlds: int) -> Simulator:
        """A simulator of ``variant`` (see :data:`VARIANTS`) with ``num_worlds`` x ``num_agents``."""
        from multiworld.runtime.factory import make_simulator

        if variant == "oracle":
            return make_simulator("oracle", scenario=self.scenario, num_agents=num_agents, num_worlds=num_worlds)
        if variant == "shared":
            return make_simulator(
                self.backend,
                scenario=self.scenario,
                num_agents=num_agents,
                num_worlds=num_worlds,
                device=self.device,
                **self._kwargs(),
            )
        if variant == "private":
            from multiworld.runtime.private import PrivateStateSimulator

            def inner(worlds: int) -> Simulator:
                return make_simulator(
                    self.backend,
                    scenario=self.scenario,
                    num_agents=num_agents,
                    num_worlds=worlds,
                    device=self.device,
                    **self._kwargs(),
                )

            return PrivateStateSimulator(inner, num_agents, num_worlds)
        raise ValueError(f"unknown variant {variant!r}; valid: {list(VARIANTS)}")
