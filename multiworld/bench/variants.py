"""The three simulators every benchmark compares, built from a small picklable spec.

- ``shared``:  the backend under test (the learned model by default) with one shared state;
- ``private``: a private state per agent (:class:`~multiworld.runtime.private.PrivateStateSimulator`).
  For the model backend its weights are the private-state checkpoint: same architecture, preset,
  data and training budget as the shipped model, trained with ``multiworld train --private-state``
  (each transition shows the model one agent's action only). With a custom ``checkpoint`` and no
  ``private_checkpoint``, the checkpoint under test runs privately instead;
- ``oracle``:  the exact simulator, the upper bound (and the reference every metric uses).

Benchmarks ship a :class:`SimSpec` to their workers (local or Ray tasks), which build their
own simulators from it: factories, not built objects, cross process boundaries.
"""

from __future__ import annotations

import dataclasses
import pathlib

from multiworld.runtime.base import Simulator

VARIANTS = ("shared", "private", "oracle")


@dataclasses.dataclass(frozen=True)
class SimSpec:
    """What to simulate: ``backend`` ("model" or "oracle"), its checkpoints, the scenario, device.

    ``checkpoint``: the shared model (None: the shipped one). ``private_checkpoint``: the private
    baseline's weights (None: the shipped private-state checkpoint when ``checkpoint`` is None,
    else ``checkpoint`` itself)."""

    backend: str = "model"
    checkpoint: str | None = None
    scenario: str = "roam-v0"
    device: str = "cpu"
    private_checkpoint: str | None = None

    def weights(self, variant: str) -> str | None:
        """The checkpoint ``variant`` runs (None: not a model, or the shipped default)."""
        if self.backend != "model" or variant == "oracle":
            return None
        if variant == "private":
            if self.private_checkpoint is not None:
                return str(self.private_checkpoint)
            if self.checkpoint is None:
                from multiworld.models.checkpoint import PRIVATE_CHECKPOINT

                return str(PRIVATE_CHECKPOINT)
        return None if self.checkpoint is None else str(self.checkpoint)

    def describe(self) -> dict:
        """Which weights each variant runs, and whether they were trained with ``--private-state``
        (for the benchmark JSON)."""
        from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, SHIPPED, read_config

        out = {}
        for variant in VARIANTS:
            if self.backend != "model" or variant == "oracle":
                out[variant] = {"weights": "oracle" if variant == "oracle" else self.backend}
                continue
            path = self.weights(variant)
            resolved = DEFAULT_CHECKPOINT if path is None else pathlib.Path(path)
            config = read_config(resolved)
            shipped = str(resolved).startswith(str(SHIPPED))
            out[variant] = {
                "weights": f"shipped:{resolved.name}" if shipped else str(path),
                "weights_sha256": config.get("weights_sha256"),
                "trained_private_state": bool(config.get("training", {}).get("private_state", False)),
            }
        return out

    def build(self, variant: str, num_agents: int, num_worlds: int) -> Simulator:
        """A simulator of ``variant`` (see :data:`VARIANTS`) with ``num_worlds`` x ``num_agents``."""
        from multiworld.runtime.factory import make_simulator

        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; valid: {list(VARIANTS)}")
        if variant == "oracle":
            return make_simulator("oracle", scenario=self.scenario, num_agents=num_agents, num_worlds=num_worlds)
        weights = self.weights(variant)
        kwargs = {"device": self.device, **({"checkpoint": weights} if weights is not None else {})}

        def make(worlds: int) -> Simulator:
            return make_simulator(
                self.backend, scenario=self.scenario, num_agents=num_agents, num_worlds=worlds, **kwargs
            )

        if variant == "shared":
            return make(num_worlds)
        from multiworld.runtime.private import PrivateStateSimulator

        return PrivateStateSimulator(make, num_agents, num_worlds)
