"""The learned world model: encoder + state-update model + renderer (+ decoder heads, flow sampler).

The rollout state is :class:`LatentState`: scene tokens ``(B, S, S, D)`` and agent tokens
``(B, N, D)`` (pose, then latent), tensors only. ``encode`` builds it from observations (the
agents' views and poses, optionally the top-down map), ``step`` advances it from joint actions,
``render`` draws every agent's view from it. No symbolic state is kept, and nothing decoded is
fed back: the heads read the scene out for measurement only.

``forward(batch)`` is the training objective for the generic trainer: encode the first step of
a recorded sequence, then run the state-update model free for the sequence's T steps (its own
predictions fed back, noise on the state), with losses on poses, events, rewards and endings,
the decoder heads, latent targets (the encoder's reading of the true observations at each step,
not differentiated) and pixels through the renderer (a random subset of columns of every view).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multiworld.models.dynamics import StateUpdateConfig, StateUpdateModel
from multiworld.models.encoder import EncoderConfig, SceneEncoder
from multiworld.models.geometry import Camera, wrap_angle
from multiworld.models.heads import DecoderHeads, HeadsConfig
from multiworld.models.refiner import FlowRefiner, RefinerConfig
from multiworld.models.renderer import RayRenderer, RendererConfig

# Scenario conditioning: the state-update model learns rewards and endings per scenario.
SCENARIO_IDS = {"roam-v0": 0, "forage-v0": 1, "push-v0": 2}


def scenario_id(name: str) -> int:
    try:
        return SCENARIO_IDS[name]
    except KeyError:
        raise ValueError(
            f"the world model was not trained on scenario {name!r}; it knows {sorted(SCENARIO_IDS)}"
        ) from None


@dataclasses.dataclass
class WorldModelConfig:
    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    dynamics: StateUpdateConfig = dataclasses.field(default_factory=StateUpdateConfig)
    renderer: RendererConfig = dataclasses.field(default_factory=RendererConfig)
    heads: HeadsConfig = dataclasses.field(default_factory=HeadsConfig)
    refiner: RefinerConfig = dataclasses.field(default_factory=RefinerConfig)
    map_fraction: float = 0.75  # training resets that see the map (the rest: views only)
    state_noise: float = 0.1  # max std of the noise put on the scene tokens before each step
    pose_noise: float = 0.01
    columns_first: int = 24  # image columns rendered per view at the encoded step
    columns_rollout: int = 8  # ... and at every rollout step
    latent_every: int = 2  # latent targets at every k-th rollout step
    pose_weight: float = 20.0
    event_weight: float = 1.0
    heads_weight: float = 0.5
    latent_weight: float = 1.0
    render_weight: float = 1.0
    occupancy_weight: float = 1.0
    refiner_views: int = 2

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> WorldModelConfig:
        subs = {
            "encoder": EncoderConfig,
            "dynamics": StateUpdateConfig,
            "renderer": RendererConfig,
            "heads": HeadsConfig,
            "refiner": RefinerConfig,
        }
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown world model config keys: {sorted(unknown)}")
        kwargs = {}
        for k, v in d.items():
            if k in subs:
                sub_known = {f.name for f in dataclasses.fields(subs[k])}
                if set(v) - sub_known:
                    raise ValueError(f"unknown {k} config keys: {sorted(set(v) - sub_known)}")
                kwargs[k] = subs[k](**{a: tuple(b) if isinstance(b, list) else b for a, b in v.items()})
            else:
                kwargs[k] = v
        cfg = cls(**kwargs)
        dims = {cfg.encoder.dim, cfg.dynamics.dim, cfg.renderer.dim, cfg.heads.dim}
        if len(dims) != 1:
            raise ValueError(f"encoder, dynamics, renderer and heads must share one token width, got {sorted(dims)}")
        return cfg


@dataclasses.dataclass
class LatentState:
    """The shared state of B worlds: scene tokens (B, S, S, D) and agent tokens (B, N, D).

    An agent token is (x, y, heading, latent...). Tensors only; ``pack``/``unpack`` give the
    single ``(B, S*S + N, D)`` array the store records per step."""

    scene: torch.Tensor
    agents: torch.Tensor

    @property
    def poses(self) -> torch.Tensor:
        return self.agents[..., :3]

    def pack(self) -> np.ndarray:
        b, s, _, d = self.scene.shape
        return torch.cat([self.scene.reshape(b, s * s, d), self.agents], 1).float().cpu().numpy()

    @staticmethod
    def unpack(tokens: np.ndarray | torch.Tensor, size: int, device="cpu") -> LatentState:
        t = torch.as_tensor(np.asarray(tokens, np.float32), device=device)
        if t.dim() != 3 or t.shape[1] <= size * size:
            raise ValueError(f"packed tokens must have shape (B, {size}*{size} + N, D), got {tuple(t.shape)}")
        b, _, d = t.shape
        return LatentState(t[:, : size * size].reshape(b, size, size, d).contiguous(), t[:, size * size :].contiguous())

    def select(self, mask: torch.Tensor) -> LatentState:
        return LatentState(self.scene[mask], self.agents[mask])

    def replace(self, mask: np.ndarray, other: LatentState) -> LatentState:
        idx = torch.as_tensor(np.flatnonzero(mask), device=self.scene.device)
        scene, agents = self.scene.clone(), self.agents.clone()
        scene[idx], agents[idx] = other.scene, other.agents
        return LatentState(scene, agents)


class WorldModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cam = Camera()
        self.encoder = SceneEncoder(cfg.encoder, cam)
        self.dynamics = StateUpdateModel(cfg.dynamics)
        self.renderer = RayRenderer(cfg.renderer, cam)
        self.heads = DecoderHeads(cfg.heads)
        self.refiner = FlowRefiner(cfg.refiner)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ----- the model at run time ---------------------------------------------------------------
    def encode(
        self, views: torch.Tensor, poses: torch.Tensor, size: int, map_image: torch.Tensor | None = None
    ) -> LatentState:
        """The state from observations: views (B, N, H, W, 3) uint8 or float in [0, 1], poses (B, N, 3),
        the top-down map (B, h, w, 3) or None (``init="views"``)."""
        views = _unit(views)
        scene, agents = self.encoder(views, poses.float(), size, None if map_image is None else _unit(map_image))
        return LatentState(scene, agents)

    def step(
        self, state: LatentState, actions: torch.Tensor, scenario: torch.Tensor
    ) -> tuple[LatentState, dict[str, torch.Tensor]]:
        scene, agents, out = self.dynamics(state.scene, state.agents, actions, scenario)
        return LatentState(scene, agents), out

    def render(
        self, state: LatentState, cam: Camera | None = None, views: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every agent's view (B, N, H, W, 3) in [0, 1] and depth (B, N, H, W), one batched pass
        (``views`` (V,): only these agents' views, (B, V, ...))."""
        return self.renderer(state.scene, state.agents, views=views, cam=cam)

    # ----- training -------------------------------------------------------------------------
    def _perturb(self, scene: torch.Tensor, agents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training noise on the state before each free-running step: Gaussian, with a std drawn
        per world up to ``state_noise`` on the tokens and agent latents, ``pose_noise`` cells on
        positions, none on headings."""
        cfg, bsz, dev = self.cfg, scene.shape[0], scene.device
        sigma = torch.rand(bsz, 1, 1, 1, device=dev) * cfg.state_noise
        scene = scene + sigma * torch.randn_like(scene)
        scale = torch.full((agents.shape[-1],), cfg.state_noise, device=dev)
        scale[:2], scale[2] = cfg.pose_noise, 0.0
        return scene, agents + torch.randn_like(agents) * scale * torch.rand(bsz, 1, 1, device=dev)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        views, depth, maps, poses = batch["views"], batch["depth"], batch["maps"], batch["poses"]
        cells, colors, actions, scenario = batch["cells"], batch["colors"], batch["actions"], batch["scenario"]
        bsz, t1, n = views.shape[:3]
        size = cells["wall"].shape[-1]
        width = views.shape[-2]
        dev = views.device
        use_map = torch.rand(bsz, device=dev) < cfg.map_fraction
        scene, agents = self.encoder(views[:, 0], poses[:, 0], size, maps[:, 0], use_map)
        logs: dict[str, float] = {}

        def render_loss(scene, agents, t, k):
            cols = torch.randperm(width, device=dev)[:k]
            cam_agents = torch.cat([agents[..., :3].detach(), agents[..., 3:]], -1)
            rgb, dep = self.renderer(scene, cam_agents, columns=cols)
            return self.renderer.loss(rgb, views[:, t][:, :, :, cols], dep, depth[:, t][:, :, :, cols])

        l_r, lg = render_loss(scene, agents, 0, cfg.columns_first)
        logs["render_psnr"] = lg["render_psnr"]
        logs["depth_l1"] = lg.get("depth_l1", 0.0)
        l_h, lg = self.heads.loss(scene, agents, {k: v[:, 0] for k, v in cells.items()}, colors)
        logs["cell_acc"] = lg["cell_acc"]
        occupied = (cells["wall"] > 0) | (cells["box"] > 0) | (cells["item"] > 0)  # (B, T1, S, S)
        l_o = self.renderer.occupancy_loss(scene, occupied[:, 0])
        loss = cfg.render_weight * l_r + cfg.heads_weight * l_h + cfg.occupancy_weight * l_o

        with torch.no_grad():  # latent targets: the encoder's reading of the true observations
            steps = list(range(cfg.latent_every, t1, cfg.latent_every))
            if steps:
                ts = torch.tensor(steps, device=dev)
                tv = views[:, ts].flatten(0, 1)
                tgt_scene, tgt_agents = self.encoder(
                    tv, poses[:, ts].flatten(0, 1), size, maps[:, ts].flatten(0, 1), None
                )
                tgt_scene = tgt_scene.unflatten(0, (bsz, len(steps)))
                tgt_agents = tgt_agents.unflatten(0, (bsz, len(steps)))

        roll = {k: [] for k in ("pose_err", "move_ok", "push_acc", "pick_acc", "roll_psnr", "roll_cell_acc")}
        for t in range(1, t1):
            if self.training:
                scene, agents = self._perturb(scene, agents)
            scene, agents, out = self.dynamics(scene, agents, actions[:, t - 1], scenario)
            p = poses[:, t]
            err_xy = (agents[..., :2] - p[..., :2]).abs()
            err_h = wrap_angle(agents[..., 2] - p[..., 2]).abs()
            loss = loss + cfg.pose_weight * (err_xy.mean() + err_h.mean()) / (t1 - 1)
            push, pick = batch["push"][:, t - 1], batch["pick"][:, t - 1]
            l_e = F.binary_cross_entropy_with_logits(out["push"], push, pos_weight=torch.tensor(5.0, device=dev))
            l_e = l_e + F.binary_cross_entropy_with_logits(out["pick"], pick, pos_weight=torch.tensor(5.0, device=dev))
            l_e = l_e + F.mse_loss(out["reward"], batch["reward"][:, t - 1])
            l_e = l_e + F.binary_cross_entropy_with_logits(out["done"], batch["done"][:, t - 1])
            loss = loss + cfg.event_weight * l_e / (t1 - 1)
            l_h, lg = self.heads.loss(scene, agents, {k: v[:, t] for k, v in cells.items()}, colors)
            l_o = self.renderer.occupancy_loss(scene, occupied[:, t])
            loss = loss + (cfg.heads_weight * l_h + cfg.occupancy_weight * l_o) / (t1 - 1)
            if t in steps:
                i = steps.index(t)
                l_l = F.mse_loss(scene, tgt_scene[:, i]) + F.mse_loss(agents[..., 3:], tgt_agents[:, i, :, 3:])
                loss = loss + cfg.latent_weight * l_l / len(steps)
            l_r, lr_ = render_loss(scene, agents, t, cfg.columns_rollout)
            loss = loss + cfg.render_weight * l_r / (t1 - 1)
            with torch.no_grad():
                roll["pose_err"].append(float(err_xy.mean() + err_h.mean()))
                roll["move_ok"].append(float(((err_xy.amax(-1) < 0.02) & (err_h < 0.02)).float().mean()))
                roll["push_acc"].append(float(((out["push"] > 0).float() == push).float().mean()))
                roll["pick_acc"].append(float(((out["pick"] > 0).float() == pick).float().mean()))
                roll["roll_psnr"].append(lr_["render_psnr"])
                roll["roll_cell_acc"].append(lg["cell_acc"])
        logs.update({k: float(np.mean(v)) for k, v in roll.items() if v})

        if cfg.refiner_views:  # the generative head learns the residual of full deterministic renders
            with torch.no_grad():
                v = min(cfg.refiner_views, n)
                full, _ = self.renderer(scene.detach()[:1], agents.detach()[:1], views=torch.arange(v, device=dev))
            l_f, lg = self.refiner(full[0], views[0, t1 - 2, :v], views[0, t1 - 1, :v])
            loss = loss + l_f
            logs.update(lg)
        logs["loss"] = float(loss.detach())
        return loss, logs


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()
