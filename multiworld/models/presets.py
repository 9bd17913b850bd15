"""Named training presets: a world-model config plus the trainer's settings."""

from __future__ import annotations

import dataclasses

from multiworld.models.dynamics import StateUpdateConfig
from multiworld.models.refiner import RefinerConfig
from multiworld.models.renderer import RendererConfig
from multiworld.models.scene import SceneCodecConfig
from multiworld.models.trainer import TrainConfig
from multiworld.models.world_model import WorldModelConfig


@dataclasses.dataclass
class Preset:
    model: WorldModelConfig
    train: TrainConfig


def _tiny() -> Preset:
    model = WorldModelConfig(
        codec=SceneCodecConfig(dim=16, hidden=32),
        dynamics=StateUpdateConfig(dim=16, hidden=32),
        renderer=RendererConfig(dim=16, wall_banks=6, floor_banks=6),
        refiner=RefinerConfig(channels=8, layers=3, train_views=4),
    )
    return Preset(
        model,
        TrainConfig(
            batch_size=4,
            dynamics_batch=8,
            lr=3e-3,
            warmup_steps=5,
            max_steps=40,
            minutes=2.0,
            log_every=10,
            eval_every=20,
            save_minutes=1.0,
        ),
    )


def _default() -> Preset:
    model = WorldModelConfig(
        codec=SceneCodecConfig(dim=32, hidden=64),
        dynamics=StateUpdateConfig(dim=32, hidden=96),
        renderer=RendererConfig(dim=32),
        refiner=RefinerConfig(channels=16, layers=4, train_views=8),
    )
    return Preset(
        model,
        TrainConfig(
            batch_size=6, dynamics_batch=96, lr=2e-3, max_steps=1_000_000, minutes=50.0, log_every=25, eval_every=250
        ),
    )


PRESETS = {"tiny": _tiny, "default": _default}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; valid presets: {sorted(PRESETS)}") from None
