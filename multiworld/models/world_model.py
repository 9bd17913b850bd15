"""The learned world model: scene codec + state-update model + renderer (+ flow refiner).

``WorldModel.forward(batch)`` returns ``(loss, logs)`` for the generic trainer (teacher forced:
every component learns from oracle transitions). ``reset``/``step``/``render`` run it free:
the rollout state is the scene tokens plus the agents' states, and a decoded symbolic copy.

Token refresh (default on): after each step, the events the model predicted are applied to the
decoded symbolic scene and the scene is re-encoded, so the tokens always encode a valid scene
(a projection of the latent onto valid scenes, like a quantizer). With ``refresh=False`` the
tokens advance in latent space (``tokens + delta``) and the symbolic state is decoded from them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from multiworld.models.dynamics import CARDINAL, StateUpdateConfig, StateUpdateModel, gather_cells
from multiworld.models.refiner import FlowRefiner, RefinerConfig
from multiworld.models.renderer import ColumnRenderer, RendererConfig
from multiworld.models.scene import SceneCodec, SceneCodecConfig, cell_maps
from multiworld.world.dynamics import StepEvents
from multiworld.world.state import Action, WorldState


@dataclasses.dataclass
class WorldModelConfig:
    codec: SceneCodecConfig = dataclasses.field(default_factory=SceneCodecConfig)
    dynamics: StateUpdateConfig = dataclasses.field(default_factory=StateUpdateConfig)
    renderer: RendererConfig = dataclasses.field(default_factory=RendererConfig)
    refiner: RefinerConfig = dataclasses.field(default_factory=RefinerConfig)
    render_weight: float = 1.0
    refiner_weight: float = 1.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> WorldModelConfig:
        subs = {
            "codec": SceneCodecConfig,
            "dynamics": StateUpdateConfig,
            "renderer": RendererConfig,
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
                kwargs[k] = subs[k](**v)
            else:
                kwargs[k] = v
        return cls(**kwargs)


@dataclasses.dataclass
class RolloutState:
    """The model's state of B worlds: tokens (B, S, S, D), and the decoded symbolic state."""

    tokens: torch.Tensor
    symbolic: WorldState
    prev_rgb: torch.Tensor | None = None  # (B, N, H, W, 3) last frames (for the refiner)


class WorldModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.codec = SceneCodec(cfg.codec)
        self.dynamics = StateUpdateModel(cfg.dynamics)
        self.renderer = ColumnRenderer(cfg.renderer)
        self.refiner = FlowRefiner(cfg.refiner)

    # ----- training ---------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        # Codec and dynamics may learn from a larger batch of transitions (``batch["dynamics"]``,
        # no views needed) than the renderer, which is the expensive part.
        dyn = batch.get("dynamics", batch)
        maps, nxt = dyn["maps"], dyn["next_maps"]
        tok, tok1 = self.codec.encode(maps), self.codec.encode(nxt)
        loss_c0, logs = self.codec.loss(tok, maps)
        loss_c1, _ = self.codec.loss(tok1, nxt)
        loss_d, logs_d = self.dynamics(dyn, tok, tok1, self.codec)
        logs.update(logs_d)
        if "dynamics" in batch:
            tok1 = self.codec.encode(batch["next_maps"])
        rgb, depth = self.render_tokens(tok1, batch["next_poses"], batch["colors"])
        loss_r, logs_r = self.renderer.loss(rgb, batch["rgb"], depth, batch.get("depth"))
        logs.update(logs_r)
        v = min(self.cfg.refiner.train_views, rgb.shape[0] * rgb.shape[1])
        loss_f, logs_f = self.refiner(
            rgb.flatten(0, 1)[:v], batch["prev_rgb"].flatten(0, 1)[:v], batch["rgb"].flatten(0, 1)[:v]
        )
        logs.update(logs_f)
        loss = loss_c0 + loss_c1 + loss_d + self.cfg.render_weight * loss_r + self.cfg.refiner_weight * loss_f
        logs["loss"] = loss.item()
        return loss, logs

    def render_tokens(self, tokens: torch.Tensor, poses: torch.Tensor, colors: torch.Tensor, views=None, image=None):
        """Deterministic views (B, V, H, W, 3) in [0, 1] and depth, read from the tokens and agent states.
        ``image``: (height, width, fov_degrees), default the trained size."""
        lg = self.codec.logits(tokens)
        solid = (lg["wall"].argmax(-1) != 0) | (lg["box"] > 0)
        return self.renderer(tokens, solid, lg["item"], poses, colors.long(), views, image)

    # ----- free-running -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode_state(self, state: WorldState) -> torch.Tensor:
        return self.codec.encode(cell_maps(state, self.device))

    @torch.no_grad()
    def reset(self, state: WorldState, tokens: torch.Tensor | None = None) -> RolloutState:
        """Start from an oracle/stored symbolic state (encoded) or from stored tokens (decoded)."""
        if tokens is None:
            tokens = self.encode_state(state)
        sym = self.decode_state(tokens, state)
        if self.dynamics.turn_table.abs().sum() == 0:
            raise ValueError("this world model has no fitted kinematics (untrained checkpoint?)")
        return RolloutState(tokens=tokens, symbolic=sym)

    @torch.no_grad()
    def restart(self, rs: RolloutState, mask: np.ndarray, start: WorldState, image=None) -> RolloutState:
        """``rs`` with the worlds where ``mask`` (B,) is True started over from ``start`` (one world
        per True, in order) exactly as :meth:`reset` starts them; the other worlds are untouched.
        ``image``: the render size, when the refiner keeps previous frames."""
        fresh = self.reset(start)
        idx = torch.as_tensor(np.flatnonzero(mask), device=self.device)
        tokens = rs.tokens.clone()
        tokens[idx] = fresh.tokens
        prev = rs.prev_rgb
        if prev is not None:  # a fresh world's first "previous frame" is its own first render
            prev = prev.clone()
            prev[idx] = self.render(fresh, image=image)
        return RolloutState(tokens=tokens, symbolic=rs.symbolic.replace_worlds(mask, fresh.symbolic), prev_rgb=prev)

    @torch.no_grad()
    def decode_state(self, tokens: torch.Tensor, ref: WorldState) -> WorldState:
        """Symbolic state decoded from tokens; agents and object identities (list order) from ``ref``.

        Boxes that are no longer on a decoded box cell move to the nearest decoded box cell
        no other box holds; items are alive where an item is decoded on their cell."""
        dec = {k: v.cpu().numpy() for k, v in self.codec.decode(tokens).items()}
        out = ref.copy()
        out.walls = dec["wall"].astype(np.uint8)
        out.floor = dec["floor"].astype(np.uint8)
        out.goals = dec["goal"].astype(bool)
        b = np.arange(ref.num_worlds)[:, None]
        if ref.items.shape[1]:
            out.items_alive = dec["item"][b, ref.items[..., 0], ref.items[..., 1]].astype(bool)
        for w in range(ref.num_worlds):
            cells = {tuple(c) for c in np.argwhere(dec["box"][w])}
            keep = [tuple(c) in cells for c in ref.boxes[w]]
            free = cells - {tuple(c) for c, k in zip(ref.boxes[w], keep) if k}
            for m in np.flatnonzero(~np.array(keep, bool)):
                if not free:
                    break
                c = min(free, key=lambda x, m=m: abs(x[0] - ref.boxes[w, m, 0]) + abs(x[1] - ref.boxes[w, m, 1]))
                out.boxes[w, m] = c
                free.discard(c)
        return out

    @torch.no_grad()
    def step(
        self, rs: RolloutState, actions: np.ndarray, refresh: bool = True, constrained: bool = True
    ) -> tuple[RolloutState, StepEvents]:
        """One free-running step of joint actions (B, N). No oracle involved.

        ``constrained``: decode the move outcomes under validity constraints (see :meth:`_decode_moves`)."""
        dev = self.device
        sym = rs.symbolic
        poses = torch.as_tensor(sym.poses, device=dev)
        act = torch.as_tensor(np.asarray(actions, np.int64), device=dev)
        dyn = self.dynamics
        q = dyn.probe(rs.tokens)
        logits = dyn.move_logits(q, poses, act)
        heading, d = dyn.nominal(poses, act)
        cands = dyn.move_candidates(poses[..., :2], d)
        move = self._decode_moves(logits, cands, poses[..., :2], rs.tokens) if constrained else logits.argmax(-1)
        xy = torch.gather(cands, 2, move[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
        new_poses = torch.cat([xy, heading[..., None]], -1)
        push_lg, pick_lg, ev = dyn.event_outputs(q, new_poses, act)
        push = (push_lg > 0) & (act == Action.INTERACT)
        pick = pick_lg > 0

        new = sym.copy()
        new.poses = new_poses.cpu().numpy().astype(np.float32)
        new.step = sym.step + 1
        events = self._apply_events(new, push.cpu().numpy(), pick.cpu().numpy())
        if refresh:
            tokens = self.encode_state(new)
        else:
            tokens = dyn.latent_update(rs.tokens, new_poses, ev, push.float(), pick.float())
            new = self.decode_state(tokens, new)
        return RolloutState(tokens=tokens, symbolic=new, prev_rgb=rs.prev_rgb), events

    def _decode_moves(self, logits, cands, xy, tokens) -> torch.Tensor:
        """Most likely move outcome per agent such that the joint result is a valid scene.

        Valid: no agent's square (half-size ``probe_radius``) overlaps a cell the codec decodes as
        solid, and no two agents' squares overlap (the oracle never produces either). An agent
        whose chosen outcome moves it into an invalid place falls back to its next most likely
        outcome; agents that stay put are never moved by this. Like the token refresh, this is a
        projection of the model's prediction onto valid states; measured with and without."""
        r = self.dynamics.cfg.probe_radius
        dec = self.codec.decode(tokens)
        solid = ((dec["wall"] != 0) | (dec["box"] > 0))[..., None].float()
        order = logits.argsort(-1, descending=True)  # (B, N, 4)
        rank = torch.zeros(logits.shape[:2], dtype=torch.long, device=logits.device)
        corners = torch.tensor([[-r, -r], [-r, r], [r, -r], [r, r]], device=xy.device)
        n = xy.shape[1]
        off_diag = ~torch.eye(n, dtype=torch.bool, device=xy.device)
        for _ in range(4):
            move = order.gather(-1, rank[..., None])[..., 0]
            pos = cands.gather(2, move[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
            moved = (pos != xy).any(-1)
            pts = pos[:, :, None] + corners
            in_wall = gather_cells(solid, pts[..., 1].floor().long(), pts[..., 0].floor().long())[..., 0].amax(-1) > 0
            gap = (pos[:, None] - pos[:, :, None]).abs().amax(-1)
            clash = ((gap < 2 * r) & off_diag).any(-1)
            bad = moved & (in_wall | clash) & (rank < 3)
            if not bad.any():
                break
            rank = rank + bad.long()
        return order.gather(-1, rank[..., None])[..., 0]

    @staticmethod
    def _apply_events(state: WorldState, push: np.ndarray, pick: np.ndarray) -> StepEvents:
        """Apply predicted pushes and pickups to ``state`` (in place) and return them as events."""
        bsz, n = push.shape
        ev = StepEvents(
            pushed=np.full((bsz, n), -1, np.int16),
            push_from=np.full((bsz, n, 2), -1, np.int16),
            push_to=np.full((bsz, n, 2), -1, np.int16),
            picked=np.full((bsz, n), -1, np.int16),
        )
        quad = np.mod(np.round(state.poses[..., 2] / (math.pi / 2)).astype(np.int64), 4)
        card = np.array(CARDINAL, np.int64)[quad]
        cell = np.stack([np.floor(state.poses[..., 1]), np.floor(state.poses[..., 0])], -1).astype(np.int64)
        s = state.size
        for b, i in zip(*np.nonzero(push)):
            front, dest = cell[b, i] + card[b, i], cell[b, i] + 2 * card[b, i]
            hit = np.flatnonzero(np.all(state.boxes[b] == front, axis=-1))
            if len(hit) == 0 or not (0 <= dest[0] < s and 0 <= dest[1] < s) or (ev.pushed[b] == hit[0]).any():
                continue
            ev.pushed[b, i], ev.push_from[b, i], ev.push_to[b, i] = hit[0], front, dest
            state.boxes[b, hit[0]] = dest
        for b, i in zip(*np.nonzero(pick)):
            here = np.flatnonzero(np.all(state.items[b] == cell[b, i], axis=-1) & state.items_alive[b])
            if len(here):
                ev.picked[b, i] = here[0]
                state.items_alive[b, here[0]] = False
        return ev

    @torch.no_grad()
    def render(self, rs: RolloutState, sampler_steps: int = 0, generator=None, with_depth: bool = False, image=None):
        """All agents' views (B, N, H, W, 3) float in [0, 1] from one state version, in one batched pass
        (and their depth (B, N, H, W) if ``with_depth``).

        ``sampler_steps`` 0 is the deterministic render; 1..8 runs the flow refiner on top."""
        sym = rs.symbolic
        poses = torch.as_tensor(sym.poses, device=self.device)
        colors = torch.as_tensor(sym.colors.astype(np.int64), device=self.device)
        rgb, depth = self.render_tokens(rs.tokens, poses, colors, image=image)
        rgb = rgb.clamp(0, 1)
        if sampler_steps > 0:
            prev = rgb if rs.prev_rgb is None else rs.prev_rgb
            flat = self.refiner.sample(rgb.flatten(0, 1), prev.flatten(0, 1), sampler_steps, generator)
            rgb = flat.reshape(rgb.shape)
        rs.prev_rgb = rgb
        return (rgb, depth) if with_depth else rgb
