"""The learned world model: encoder + state-update model + renderer (+ decoder heads).

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
from multiworld.models.motion import motion_loss
from multiworld.models.quantize import snap
from multiworld.models.renderer import RayRenderer, RendererConfig

# Scenario conditioning: the state-update model learns rewards and endings per scenario (or per
# recorded world). The arena's scenarios are the default list; a model trained on recordings of
# another world lists that world's names (``WorldModelConfig.worlds``, from the data).
ARENA_WORLDS = ("roam-v0", "forage-v0", "push-v0")
SCENARIO_IDS = {name: i for i, name in enumerate(ARENA_WORLDS)}


def scenario_id(name: str, worlds: tuple[str, ...] = ARENA_WORLDS) -> int:
    """The index of scenario (or recorded world) ``name`` in the model's ``worlds``."""
    try:
        return list(worlds).index(name)
    except ValueError:
        raise ValueError(f"the world model was not trained on scenario {name!r}; it knows {sorted(worlds)}") from None


def arena_camera() -> dict:
    """The arena's camera (the default of ``WorldModelConfig.camera``)."""
    return dataclasses.asdict(Camera())


@dataclasses.dataclass
class WorldModelConfig:
    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    dynamics: StateUpdateConfig = dataclasses.field(default_factory=StateUpdateConfig)
    renderer: RendererConfig = dataclasses.field(default_factory=RendererConfig)
    heads: HeadsConfig = dataclasses.field(default_factory=HeadsConfig)
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
    payout_weight: float = 1.0
    event_pos_weight: float = 5.0  # weight of the rare positive class of events and payouts
    # Extra weight of the pose loss on moves unlike their action's typical one (blocked, pushed).
    # 0 in the shipped recipe: 20 in a 20-minute continuation raised the pose error from 0.014 to
    # 0.11 without learning the blocked moves (model card); a smaller weight is untried.
    unusual_weight: float = 0.0
    motion_weight: float = 1.0  # the gated motion's outcome (cross-entropy) and free move (L1 x pose_weight)
    detach_every: int = 0  # truncated backprop through the rollout every k steps (0: never)
    # The world the model is for: its camera (hand-given geometry, from the data's
    # metadata) and the names of its scenarios or recorded worlds (the scenario embedding's rows).
    camera: dict = dataclasses.field(default_factory=arena_camera)
    worlds: tuple[str, ...] = ARENA_WORLDS

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
                kwargs[k] = tuple(v) if k == "worlds" else v
        cfg = cls(**kwargs)
        if len(cfg.worlds) > cfg.dynamics.scenarios:
            raise ValueError(f"{len(cfg.worlds)} worlds but a scenario table of {cfg.dynamics.scenarios} rows")
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
        cam = self.camera = Camera(**cfg.camera)
        self.encoder = SceneEncoder(cfg.encoder, cam)
        self.dynamics = StateUpdateModel(cfg.dynamics)
        self.renderer = RayRenderer(cfg.renderer, cam)
        self.heads = DecoderHeads(cfg.heads)
        if cfg.dynamics.cell_judges:  # judgements that read the decoder's cell classes
            self.dynamics.cell_reader = self.heads.cell_probs

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
        per world up to ``state_noise`` on the tokens and agent latents (then snapped back to the
        lattice: most noise vanishes, some flips a level, which the model must learn to undo),
        ``pose_noise`` cells on positions, none on headings."""
        cfg, bsz, dev = self.cfg, scene.shape[0], scene.device
        sigma = torch.rand(bsz, 1, 1, 1, device=dev) * cfg.state_noise
        scene = snap(scene + sigma * torch.randn_like(scene))
        scale = torch.full((agents.shape[-1],), cfg.state_noise, device=dev)
        scale[:2], scale[2] = cfg.pose_noise, 0.0
        noisy = agents + torch.randn_like(agents) * scale * torch.rand(bsz, 1, 1, device=dev)
        return scene, torch.cat([noisy[..., :3], snap(noisy[..., 3:])], -1)

    def _render_loss(self, scene, agents, views, depth, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel loss of ``columns`` random image columns of every view (rays are independent),
        and the rendered PSNR as a tensor (for the logs)."""
        cols = torch.randperm(views.shape[-2], device=views.device)[:columns]
        cam_agents = torch.cat([agents[..., :3].detach(), agents[..., 3:]], -1)
        rgb, dep = self.renderer(scene, cam_agents, columns=cols)
        return self.renderer.loss(rgb, views[:, :, :, cols], dep, None if depth is None else depth[:, :, :, cols])

    def forward(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training objective on a :class:`~multiworld.models.data.Batch` of recorded sequences:
        encode step 0, then run the state-update model free for T steps. Named losses, each
        averaged over the steps it is taken at, times the matching ``scales`` (DreamerV3's habit);
        metrics stay tensors (no device sync) until the trainer logs them."""
        if hasattr(batch, "loss"):  # a batch kind with its own objective (transitions.TransitionBatch)
            return batch.loss(self)
        cfg = self.cfg
        views, depth, maps, poses = batch.views, batch.depth, batch.maps, batch.poses
        cells, colors, actions, scenario = batch.cells, batch.colors, batch.actions, batch.scenario
        bsz, t1 = views.shape[:2]
        size = cells["wall"].shape[-1]
        dev = views.device
        # What a recording lacks (a top-down map, depth) is not asked of the model: without maps
        # every reset is from views only; without depth the renderer learns from colours alone.
        use_map = None if maps is None else torch.rand(bsz, device=dev) < cfg.map_fraction
        first_map = None if maps is None else maps[:, 0]
        scene, agents = self.encoder(views[:, 0], poses[:, 0], size, first_map, use_map)
        occupied = (cells["wall"] > 0) | (cells["box"] > 0) | (cells["item"] > 0)  # (B, T1, S, S)
        pos_weight = torch.tensor(cfg.event_pos_weight, device=dev)
        own_w = torch.tensor([cfg.event_pos_weight, 1.0, cfg.event_pos_weight], device=dev)
        shared_w = torch.tensor([cfg.event_pos_weight] * 2 + [1.0] + [cfg.event_pos_weight] * 2, device=dev)

        losses: dict[str, torch.Tensor] = {}
        metrics: dict[str, list[torch.Tensor]] = {}

        def add(name: str, value: torch.Tensor, weight: float = 1.0) -> None:
            losses[name] = losses.get(name, 0.0) + weight * value

        def note(name: str, value: torch.Tensor) -> None:
            metrics.setdefault(name, []).append(value.detach())

        l_r, lg = self._render_loss(scene, agents, views[:, 0], _at(depth, 0), cfg.columns_first)
        add("render_first", l_r)
        note("render_psnr", lg["render_psnr"])
        if "depth_l1" in lg:
            note("depth_l1", lg["depth_l1"])
        l_h, lg = self.heads.loss(scene, agents, {k: v[:, 0] for k, v in cells.items()}, colors)
        add("heads", l_h)
        add("occupancy", self.renderer.occupancy_loss(scene, occupied[:, 0]))
        note("cell_acc", lg["cell_acc"])

        with torch.no_grad():  # latent targets: the encoder's reading of the true observations
            steps = list(range(cfg.latent_every, t1, cfg.latent_every))
            if steps:
                ts = torch.tensor(steps, device=dev)
                tgt_maps = None if maps is None else maps[:, ts].flatten(0, 1)
                tgt_scene, tgt_agents = self.encoder(
                    views[:, ts].flatten(0, 1), poses[:, ts].flatten(0, 1), size, tgt_maps, None
                )
                tgt_scene = tgt_scene.unflatten(0, (bsz, len(steps)))
                tgt_agents = tgt_agents.unflatten(0, (bsz, len(steps)))

        per_step = 1.0 / (t1 - 1)
        for t in range(1, t1):
            if self.training:
                scene, agents = self._perturb(scene, agents)
            if cfg.detach_every and t > 1 and (t - 1) % cfg.detach_every == 0:  # truncated backprop
                scene, agents = scene.detach(), agents.detach()
            scene, agents, out = self.dynamics(scene, agents, actions[:, t - 1], scenario)
            p = poses[:, t]
            err_xy = (agents[..., :2] - p[..., :2]).abs()
            err_h = wrap_angle(agents[..., 2] - p[..., 2]).abs()
            # Unusual moves (blocked, shortened, pushed) are rare in the data and weigh more.
            w_pose = 1.0 + cfg.unusual_weight * batch.unusual[:, t - 1]
            add("pose", ((err_xy.sum(-1) / 2 + err_h) * w_pose).mean() / w_pose.mean(), per_step)
            if batch.move_outcome is not None:
                l_m = motion_loss(out, batch.move_outcome[:, t - 1], batch.free_move[:, t - 1], cfg.pose_weight)
                add("motion", l_m, per_step)
            push, pick = batch.push[:, t - 1], batch.pick[:, t - 1]
            l_e = F.binary_cross_entropy_with_logits(out["push"], push, pos_weight=pos_weight)
            l_e = l_e + F.binary_cross_entropy_with_logits(out["pick"], pick, pos_weight=pos_weight)
            l_e = l_e + F.binary_cross_entropy_with_logits(out["done_logit"], batch.done[:, t - 1])
            add("events", l_e, per_step)
            own_t, shared_t = batch.own_payout[:, t - 1], batch.shared_payout[:, t - 1]
            l_p = F.cross_entropy(out["own_logits"].flatten(0, 1), own_t.flatten(), weight=own_w)
            l_p = l_p + F.cross_entropy(out["shared_logits"], shared_t, weight=shared_w)
            add("payout", l_p, per_step)
            l_h, lg = self.heads.loss(scene, agents, {k: v[:, t] for k, v in cells.items()}, colors)
            add("heads", l_h, per_step)
            add("occupancy", self.renderer.occupancy_loss(scene, occupied[:, t]), per_step)
            if t in steps:
                i = steps.index(t)
                l_l = F.mse_loss(scene, tgt_scene[:, i]) + F.mse_loss(agents[..., 3:], tgt_agents[:, i, :, 3:])
                add("latent", l_l, 1.0 / len(steps))
            l_r, lr_ = self._render_loss(scene, agents, views[:, t], _at(depth, t), cfg.columns_rollout)
            add("render_rollout", l_r, per_step)
            with torch.no_grad():
                note("pose_err", err_xy.mean() + err_h.mean())
                ok = ((err_xy.amax(-1) < 0.02) & (err_h < 0.02)).float()
                note("move_ok", ok.mean())
                u = batch.unusual[:, t - 1]
                note("unusual_ok", (ok * u).sum() / u.sum().clamp(min=1))
                note("push_acc", ((out["push"] > 0).float() == push).float().mean())
                note("pick_acc", ((out["pick"] > 0).float() == pick).float().mean())
                note("reward_err", (out["reward"] - batch.reward[:, t - 1]).abs().mean())
                note("roll_psnr", lr_["render_psnr"])
                note("roll_cell_acc", lg["cell_acc"])

        scales = self.scales()
        unknown = set(losses) - set(scales)
        if unknown:
            raise KeyError(f"losses without a scale: {sorted(unknown)}")
        loss = sum(scales[k] * v for k, v in losses.items())
        logs = {k: torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in v]).mean() for k, v in metrics.items()}
        logs.update({f"loss_{k}": v.detach() for k, v in losses.items()})
        logs["loss"] = loss.detach()
        return loss, logs

    def scales(self) -> dict[str, float]:
        """The weight of every named loss of ``forward`` (keys match its ``losses``)."""
        cfg = self.cfg
        return {
            "render_first": cfg.render_weight,
            "render_rollout": cfg.render_weight,
            "heads": cfg.heads_weight,
            "occupancy": cfg.occupancy_weight,
            "pose": cfg.pose_weight,
            "motion": cfg.motion_weight,
            "events": cfg.event_weight,
            "payout": cfg.payout_weight,
            "latent": cfg.latent_weight,
            "scene": cfg.heads_weight,  # one-step batches: where the decoder reads the boxes after a push
        }


def _at(x: torch.Tensor | None, t: int) -> torch.Tensor | None:
    return None if x is None else x[:, t]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()
