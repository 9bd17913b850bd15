"""The stacked-frames baseline: no state, only every agent's recent frames (Multiverse-style).

This is the design published multi-agent world models use (Multiverse, 2025: both players'
recent frames stacked along channels, the next frames of all players predicted jointly from
them and the joint actions). There are no scene tokens and no agent tokens: the only memory is
the last ``context`` frames of every agent, and every next frame is drawn from nothing else.

Per agent ``i`` (shared weights, so permuting agents permutes the outputs and one checkpoint
serves any number of agents):

1. a conv encoder reads agent i's last ``context`` frames stacked along channels (64x64 ->
   32x32 -> 16x16 -> 8x8);
2. the other agents' bottleneck maps reach agent i as messages, each modulated (FiLM) by where
   that agent stands and looks relative to i and what it does now, averaged over the others:
   the permutation-equivariant form of stacking every player's frames into one input;
3. a U-Net decoder, modulated by agent i's action, pose features and the scenario, predicts the
   change from i's last frame to its next frame (skip connections at 32x32 and 16x16);
4. pooled bottleneck features give a learned move in the agent's frame (rotated by its heading:
   camera geometry), turn, push and pickup logits, reward and (averaged over agents) the
   world's termination logit.

It is trained by the same trainer on the same sequences as the shared model, free-running for
the same horizon (its own frames fed back as context, with noise on the context), on every
pixel of every frame. The deterministic predictor is the one-step limit of Multiverse's
denoiser; this baseline keeps the comparison about *state*, not about sampling.

``mean_frame``: the training data's mean frame (a buffer filled by ``multiworld train``), which
the ``mean`` bound of the benchmarks shows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multiworld.models.geometry import wrap_angle
from multiworld.world.state import NUM_ACTIONS

KIND = "stacked-frames"


@dataclasses.dataclass
class StackedFramesConfig:
    context: int = 4  # frames per agent the model sees (its only memory)
    channels: tuple[int, int, int] = (32, 64, 96)  # encoder widths at 32x32, 16x16, 8x8
    cond: int = 64  # width of the action / pose / scenario conditioning
    scenarios: int = 4
    image: int = 64  # trained view size (height = width)
    frame_noise: float = 0.05  # max std of the noise put on the context frames in training
    pixel_weight: float = 1.0
    pose_weight: float = 20.0
    event_weight: float = 1.0
    actions: int = NUM_ACTIONS  # the world's Discrete actions
    worlds: tuple[str, ...] = ("roam-v0", "forage-v0", "push-v0")  # scenario table rows (world_model.ARENA_WORLDS)
    kind: str = KIND

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StackedFramesConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown stacked-frames config keys: {sorted(set(d) - known)}")
        cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        if cfg.kind != KIND:
            raise ValueError(f"kind must be {KIND!r}, got {cfg.kind!r}")
        if cfg.context < 1 or len(cfg.channels) != 3:
            raise ValueError(f"need context >= 1 and three channel widths, got {cfg.context}, {cfg.channels}")
        return cfg


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if c % 8 == 0 else 1, c)


class _Block(nn.Module):
    """conv -> norm -> FiLM(cond) -> SiLU -> conv, residual when the widths match."""

    def __init__(self, cin: int, cout: int, cond: int) -> None:
        super().__init__()
        self.c1, self.n1 = nn.Conv2d(cin, cout, 3, padding=1), _gn(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.film = nn.Linear(cond, 2 * cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        g, b = self.film(c)[..., None, None].chunk(2, dim=1)
        h = F.silu(self.n1(self.c1(x)) * (1 + g) + b)
        return self.skip(x) + self.c2(h)


def pose_features(poses: torch.Tensor) -> torch.Tensor:
    """(..., 3) poses -> (..., 4): in-cell position (centred) and the heading's cos and sin."""
    frac = poses[..., :2] - torch.floor(poses[..., :2]) - 0.5
    return torch.cat([frac, torch.cos(poses[..., 2:3]), torch.sin(poses[..., 2:3])], -1)


def relative_poses(poses: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) -> (B, N, N, 5): agent j as seen from agent i (position in i's frame, scaled by
    1/4 cells, its distance, and the cos and sin of the heading difference)."""
    d = poses[:, None, :, :2] - poses[:, :, None, :2]  # (B, i, j, 2)
    h = poses[:, :, None, 2]
    c, s = torch.cos(h), torch.sin(h)
    fwd = c * d[..., 0] + s * d[..., 1]
    lat = -s * d[..., 0] + c * d[..., 1]
    dh = poses[:, None, :, 2] - poses[:, :, None, 2]
    dist = torch.sqrt(fwd**2 + lat**2 + 1e-6)
    return torch.stack([fwd / 4, lat / 4, dist / 4, torch.cos(dh), torch.sin(dh)], -1)


class StackedFramesModel(nn.Module):
    """Next frames of every agent from every agent's last frames, poses and the joint actions."""

    def __init__(self, cfg: StackedFramesConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c1, c2, c3 = cfg.channels
        k = cfg.cond
        self.action = nn.Embedding(cfg.actions, k)
        self.scenario = nn.Embedding(cfg.scenarios, k)
        self.own = nn.Sequential(nn.Linear(2 * k + 4, k), nn.SiLU(), nn.Linear(k, k))
        self.e1 = nn.Conv2d(3 * cfg.context, c1, 4, stride=2, padding=1)
        self.e2 = nn.Conv2d(c1, c2, 4, stride=2, padding=1)
        self.e3 = nn.Conv2d(c2, c3, 4, stride=2, padding=1)
        self.mid_in = _Block(c3, c3, k)
        # Messages: another agent's bottleneck, FiLM-ed by its relative pose and action.
        self.msg_proj = nn.Conv2d(c3, c3, 1)
        self.msg_film = nn.Sequential(nn.Linear(5 + k, k), nn.SiLU(), nn.Linear(k, 2 * c3))
        self.mid_out = _Block(2 * c3, c3, k)
        self.d2 = _Block(c3 + c2, c2, k)
        self.d1 = _Block(c2 + c1, c1, k)
        self.out = nn.Conv2d(c1, 12, 3, padding=1)  # 3 channels x (2 x 2) pixel shuffle -> 64x64
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.head = nn.Sequential(nn.Linear(c3 + k, 2 * k), nn.SiLU(), nn.Linear(2 * k, 7))
        self.turn = nn.Embedding(cfg.actions, 1)  # learned turn and move per action (+ the head's residual)
        self.move = nn.Embedding(cfg.actions, 2)
        for emb in (self.turn, self.move):
            nn.init.zeros_(emb.weight)
        self.register_buffer("mean_frame", torch.full((cfg.image, cfg.image, 3), 0.5))
        self.to(memory_format=torch.channels_last)  # ~15% faster convolutions on CPU

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def step(
        self, context: torch.Tensor, poses: torch.Tensor, actions: torch.Tensor, scenario: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One step of B worlds x N agents.

        context: (B, N, K, 3, H, W) float in [0, 1], oldest first; poses (B, N, 3); actions (B, N)
        long; scenario (B,) long. Returns the next frames (B, N, 3, H, W) (unclamped), the next
        poses (B, N, 3) and the heads: push, pick, reward (B, N) and done (B,) (logits)."""
        bsz, n, kk, _, h, w = context.shape
        act = self.action(actions)  # (B, N, k)
        cond = self.own(torch.cat([act, self.scenario(scenario)[:, None].expand(-1, n, -1), pose_features(poses)], -1))
        flat_c = cond.flatten(0, 1)
        x = context.reshape(bsz * n, kk * 3, h, w).contiguous(memory_format=torch.channels_last)
        f1 = F.silu(self.e1(x))
        f2 = F.silu(self.e2(f1))
        f3 = self.mid_in(F.silu(self.e3(f2)), flat_c)
        # Messages from every other agent j to agent i, averaged over j != i.
        proj = self.msg_proj(f3).unflatten(0, (bsz, n))  # (B, N_j, C, h, w)
        film = self.msg_film(torch.cat([relative_poses(poses), act[:, None].expand(-1, n, -1, -1)], -1))
        g, b = film.chunk(2, dim=-1)  # (B, N_i, N_j, C)
        others = 1.0 - torch.eye(n, device=context.device)
        weight = others / max(n - 1, 1)
        msg = torch.einsum("bij,bjchw->bichw", weight[None].expand(bsz, -1, -1), proj)
        msg = msg + torch.einsum("bij,bijc,bjchw->bichw", weight[None].expand(bsz, -1, -1), g, proj)
        msg = msg + torch.einsum("bij,bijc->bic", weight[None].expand(bsz, -1, -1), b)[..., None, None]
        mid = self.mid_out(torch.cat([f3, msg.flatten(0, 1)], 1), flat_c)
        up = F.interpolate(mid, scale_factor=2, mode="nearest")
        u2 = self.d2(torch.cat([up, f2], 1), flat_c)
        u1 = self.d1(torch.cat([F.interpolate(u2, scale_factor=2, mode="nearest"), f1], 1), flat_c)
        delta = F.pixel_shuffle(self.out(F.silu(u1)), 2)
        frames = context[:, :, -1] + delta.unflatten(0, (bsz, n))
        head = self.head(torch.cat([mid.mean((-2, -1)), flat_c], -1)).unflatten(0, (bsz, n))
        turn = self.turn(actions)[..., 0] + 0.1 * head[..., 2]
        move = self.move(actions) + 0.1 * head[..., :2]
        hd = poses[..., 2]
        dx = torch.cos(hd) * move[..., 0] - torch.sin(hd) * move[..., 1]
        dy = torch.sin(hd) * move[..., 0] + torch.cos(hd) * move[..., 1]
        nxt = torch.stack([poses[..., 0] + dx, poses[..., 1] + dy, wrap_angle(hd + turn)], -1)
        out = {"push": head[..., 3], "pick": head[..., 4], "reward": head[..., 5], "done": head[..., 6].mean(-1)}
        return frames, nxt, out

    @staticmethod
    def first_context(views: torch.Tensor, k: int) -> torch.Tensor:
        """The context at reset: each agent's one real frame repeated ``k`` times.
        views (B, N, H, W, 3) uint8 or float in [0, 1] -> (B, N, K, 3, H, W) float."""
        v = views.float() / 255 if views.dtype == torch.uint8 else views.float()
        return v.permute(0, 1, 4, 2, 3)[:, :, None].expand(-1, -1, k, -1, -1, -1).contiguous()

    # ----- training -------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Free-running over the batch's sequences from their first frames (the same batches as
        :meth:`WorldModel.forward`): MSE on every pixel of every predicted frame, L1 on poses,
        BCE / MSE on events, rewards and endings."""
        cfg = self.cfg
        views, poses, actions, scenario = batch["views"], batch["poses"], batch["actions"], batch["scenario"]
        bsz, t1 = views.shape[:2]
        dev = views.device
        ctx = self.first_context(views[:, 0], cfg.context)
        pose = poses[:, 0]
        loss = torch.zeros((), device=dev)
        roll = {k: [] for k in ("roll_psnr", "pose_err", "move_ok", "push_acc", "pick_acc")}
        pw = torch.tensor(5.0, device=dev)
        for t in range(1, t1):
            inp = ctx
            if self.training and cfg.frame_noise > 0:
                sigma = torch.rand(bsz, 1, 1, 1, 1, 1, device=dev) * cfg.frame_noise
                inp = ctx + sigma * torch.randn_like(ctx)
            frames, pose, out = self.step(inp, pose, actions[:, t - 1], scenario)
            frames = frames + (ctx[:, :, -1] - inp[:, :, -1])  # the change applies to the clean last frame
            target = views[:, t].permute(0, 1, 4, 2, 3)
            l_px = F.mse_loss(frames, target)
            p = poses[:, t]
            err_xy = (pose[..., :2] - p[..., :2]).abs()
            err_h = wrap_angle(pose[..., 2] - p[..., 2]).abs()
            push, pick = batch["push"][:, t - 1], batch["pick"][:, t - 1]
            l_e = F.binary_cross_entropy_with_logits(out["push"], push, pos_weight=pw)
            l_e = l_e + F.binary_cross_entropy_with_logits(out["pick"], pick, pos_weight=pw)
            l_e = l_e + F.mse_loss(out["reward"], batch["reward"][:, t - 1])
            l_e = l_e + F.binary_cross_entropy_with_logits(out["done"], batch["done"][:, t - 1])
            l_pose = err_xy.mean() + err_h.mean()
            step_loss = cfg.pixel_weight * l_px + cfg.pose_weight * l_pose + cfg.event_weight * l_e
            loss = loss + step_loss / (t1 - 1)
            ctx = torch.cat([ctx[:, :, 1:], frames.clamp(0, 1)[:, :, None]], 2)
            with torch.no_grad():
                roll["roll_psnr"].append(float(-10 * torch.log10(F.mse_loss(frames.clamp(0, 1), target) + 1e-10)))
                roll["pose_err"].append(float(err_xy.mean() + err_h.mean()))
                roll["move_ok"].append(float(((err_xy.amax(-1) < 0.02) & (err_h < 0.02)).float().mean()))
                roll["push_acc"].append(float(((out["push"] > 0).float() == push).float().mean()))
                roll["pick_acc"].append(float(((out["pick"] > 0).float() == pick).float().mean()))
        logs = {k: float(np.mean(v)) for k, v in roll.items()}
        logs["first_psnr"] = roll["roll_psnr"][0]
        logs["loss"] = float(loss.detach())
        return loss, logs
