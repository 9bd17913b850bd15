"""Generative sampler: a flow-matching residual refiner on top of the deterministic render.

It models the residual ``frame - render`` with rectified flow: ``x_t = (1 - t) * noise + t * residual``,
the network predicts the velocity ``residual - noise`` from ``x_t``, ``t``, the deterministic
render and the agent's previous frame (its own recent view). Sampling integrates 1 to 8 Euler steps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class RefinerConfig:
    channels: int = 32
    layers: int = 4
    noise: float = 0.1  # std of the source distribution (residuals are small)
    steps: int = 4  # default Euler steps at sampling time
    train_views: int = 16  # views per batch used to train it (it is the expensive part)


class FlowRefiner(nn.Module):
    def __init__(self, cfg: RefinerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        layers: list[nn.Module] = [nn.Conv2d(3 + 3 + 3 + 1, c, 3, padding=1), nn.GELU()]
        for _ in range(cfg.layers - 2):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.GELU()]
        layers.append(nn.Conv2d(c, 3, 3, padding=1))
        self.net = nn.Sequential(*layers)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, render: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """x, render, prev (V, 3, H, W); t (V,) -> velocity (V, 3, H, W)."""
        tt = t[:, None, None, None].expand(-1, 1, *x.shape[2:])
        return self.net(torch.cat([x, render, prev, tt], 1))

    def forward(self, render: torch.Tensor, prev: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Flow-matching loss. render, prev, target (V, H, W, 3) in [0, 1] (render is detached here)."""
        r, p, y = (a.permute(0, 3, 1, 2) for a in (render.detach(), prev, target))
        res = y - r
        noise = torch.randn_like(res) * self.cfg.noise
        t = torch.rand(res.shape[0], device=res.device)
        xt = (1 - t[:, None, None, None]) * noise + t[:, None, None, None] * res
        loss = F.mse_loss(self.velocity(xt, t, r, p), res - noise)
        return loss, {"flow_loss": loss.item()}

    @torch.no_grad()
    def sample(
        self, render: torch.Tensor, prev: torch.Tensor, steps: int | None = None, generator=None
    ) -> torch.Tensor:
        """render, prev (V, H, W, 3) -> sampled frame (V, H, W, 3) in [0, 1]."""
        steps = steps or self.cfg.steps
        r, p = render.permute(0, 3, 1, 2), prev.permute(0, 3, 1, 2)
        x = torch.randn(r.shape, generator=generator, device=r.device) * self.cfg.noise
        for i in range(steps):
            t = torch.full((r.shape[0],), i / steps, device=r.device)
            x = x + self.velocity(x, t, r, p) / steps
        return (r + x).clamp(0, 1).permute(0, 2, 3, 1)


def noise_key(seed: int, world_seed: int) -> int:
    """The key of one world's sampler noise (63 bits), from the simulator's ``seed`` and the world's seed."""
    words = [int(seed) % 2**64, int(world_seed) % 2**64]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0]) >> 1


def noise_generator(key: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of a world's sampler noise at state version ``step``: a function of the world's
    key and the step only, so a world resumed from a stored row draws exactly the noise it would
    have drawn (whatever batch it runs in)."""
    seed = int(np.random.SeedSequence([int(key), int(step) % 2**64]).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(seed)
