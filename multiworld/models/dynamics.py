"""The state-update model: scene tokens, agent states and joint actions -> next state and events.

Agents are tokens with shared weights and no slot: an agent token is built from its own state
(pose, action, colour is not even needed) and from what it reads of the scene tokens at
probe points placed analytically around its pose; agents talk to each other through pairwise
messages summed over the other agents (masked to neighbours), so permuting the agents permutes
every output and one checkpoint serves any N.

Per agent the model predicts discrete outcomes (the dynamics of this world are discrete at heart):
- ``move``: 4 classes, which displacement happens: 0 the full nominal move, 1 its x part only
  (slide), 2 its y part only, 3 none (blocked). The nominal move and turn per action are a
  kinematics table fitted from data (:meth:`StateUpdateModel.fit_kinematics`) and saved as buffers;
- ``push``: the agent pushes the box in front of it one cell;
- ``pick``: the agent picks up the item in its cell.
Besides, a latent cell update ``tokens + delta`` (messages from agents scattered to the cells
around them) predicts the next tokens directly: this is the no-refresh path that
``WorldModel`` can run instead of applying the events and re-encoding the scene.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from multiworld.world.state import NUM_ACTIONS, Action

MOVE_FULL, MOVE_X, MOVE_Y, MOVE_NONE = 0, 1, 2, 3
# Soft thresholds on an agent's distance to its cell centre (the reach of pickups is learned among them).
REACH_LEVELS = tuple(0.3 + 0.01 * k for k in range(31))
# Cardinal steps (d_row, d_col) of heading quadrants east, south, west, north.
CARDINAL = ((0, 1), (1, 0), (0, -1), (-1, 0))


@dataclasses.dataclass
class StateUpdateConfig:
    dim: int = 32  # scene token channels (must match the codec)
    hidden: int = 96
    probe: int = 8  # channels read from a token at a probe point
    probe_radius: float = 0.2  # half-size of the square probed around a candidate position
    window: int = 2  # latent update reaches cells within this many cells of an agent
    neighbour_range: float = 2.5  # pairwise messages only between agents closer than this (cells)


def wrap_angle(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def gather_cells(grid: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """grid (B, S, S, C) at integer cells rows/cols (B, ...) (clamped to the grid) -> (B, ..., C)."""
    bsz, s = grid.shape[0], grid.shape[1]
    flat = grid.reshape(bsz, s * s, grid.shape[-1])
    idx = (rows.clamp(0, s - 1) * s + cols.clamp(0, s - 1)).reshape(bsz, -1)
    out = torch.gather(flat, 1, idx[..., None].expand(-1, -1, grid.shape[-1]))
    return out.reshape(*rows.shape, grid.shape[-1])


def mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inp, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out)
    )


class StateUpdateModel(nn.Module):
    def __init__(self, cfg: StateUpdateConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, q = cfg.hidden, cfg.probe
        self.probe = nn.Linear(cfg.dim, q)
        # Kinematics: turn (radians) and nominal (forward, right) displacement per action.
        self.register_buffer("turn_table", torch.zeros(NUM_ACTIONS))
        self.register_buffer("move_table", torch.zeros(NUM_ACTIONS, 2))
        self.move_own = mlp(12 * q + 6 + NUM_ACTIONS, h, h)
        self.move_pair = mlp(12 + 16 + h, h, h)
        self.move_head = mlp(2 * h, h, 4)
        self.event_own = mlp(3 * q + 8 + len(REACH_LEVELS), h, h)
        self.event_pair = mlp(9 + h, h, h)
        self.event_head = mlp(2 * h, h, 2 + h)
        w = 2 * cfg.window + 1
        self.cell_msg = mlp(h + 2 + 4 + w * w, h, cfg.dim)
        self.cell_update = mlp(2 * cfg.dim, h, cfg.dim)

    # ----- kinematics -------------------------------------------------------------------------
    @torch.no_grad()
    def fit_kinematics(self, poses: torch.Tensor, next_poses: torch.Tensor, actions: torch.Tensor) -> None:
        """Fit the turn and nominal move per action from transitions (medians: blocked moves are a minority)."""
        poses, next_poses, actions = poses.reshape(-1, 3), next_poses.reshape(-1, 3), actions.reshape(-1)
        turn = wrap_angle(next_poses[:, 2] - poses[:, 2])
        delta = next_poses[:, :2] - poses[:, :2]
        c, s = torch.cos(next_poses[:, 2]), torch.sin(next_poses[:, 2])
        local = torch.stack([delta[:, 0] * c + delta[:, 1] * s, -delta[:, 0] * s + delta[:, 1] * c], -1)
        for a in range(NUM_ACTIONS):
            sel = actions == a
            if sel.any():
                self.turn_table[a] = turn[sel].median()
                moved = sel & (delta.abs().amax(-1) > 1e-6)
                if moved.sum() > sel.sum() // 4:
                    self.move_table[a] = local[moved].median(0).values
                else:
                    self.move_table[a] = 0.0

    def nominal(self, poses: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """New heading (B, N) and nominal world displacement (B, N, 2) of each agent's action."""
        heading = wrap_angle(poses[..., 2] + self.turn_table[actions])
        loc = self.move_table[actions]
        c, s = torch.cos(heading), torch.sin(heading)
        d = torch.stack([loc[..., 0] * c - loc[..., 1] * s, loc[..., 0] * s + loc[..., 1] * c], -1)
        return heading, d

    @staticmethod
    def move_candidates(xy: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """(B, N, 4, 2) positions of the 4 move classes."""
        zero = torch.zeros_like(d[..., :1])
        return torch.stack(
            [xy + d, xy + torch.cat([d[..., :1], zero], -1), xy + torch.cat([zero, d[..., 1:]], -1), xy], dim=-2
        )

    def move_labels(self, poses: torch.Tensor, next_poses: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, N) move class that explains each transition (first match of full, x, y, none)."""
        _, d = self.nominal(poses, actions)
        cands = self.move_candidates(poses[..., :2], d)
        err = (cands - next_poses[..., None, :2]).abs().amax(-1)  # (B, N, 4)
        ok = err < 2e-3
        first = torch.where(ok, torch.arange(4, device=ok.device), 4).amin(-1)
        return torch.where(first == 4, err.argmin(-1), first)

    # ----- stage 1: movement ------------------------------------------------------------------
    def _pair_mask(self, xy: torch.Tensor) -> torch.Tensor:
        n = xy.shape[1]
        rel = xy[:, None, :, :] - xy[:, :, None, :]  # [b, i, j] = xy_j - xy_i
        near = rel.abs().amax(-1) < self.cfg.neighbour_range
        return near & ~torch.eye(n, dtype=torch.bool, device=xy.device)

    def move_logits(self, q: torch.Tensor, poses: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, N, 4) logits of the move classes. q: probe features (B, S, S, Q)."""
        r = self.cfg.probe_radius
        xy = poses[..., :2]
        heading, d = self.nominal(poses, actions)
        cands = self.move_candidates(xy, d)[..., :3, :]  # (B, N, 3, 2)
        corners = torch.tensor([[-r, -r], [-r, r], [r, -r], [r, r]], device=xy.device)
        pts = cands[..., None, :] + corners  # (B, N, 3, 4, 2)
        probes = gather_cells(q, pts[..., 1].floor().long(), pts[..., 0].floor().long())  # (B, N, 3, 4, Q)
        own = torch.cat(
            [
                probes.flatten(2),
                xy - xy.floor(),
                torch.cos(heading)[..., None],
                torch.sin(heading)[..., None],
                d * 4,
                F.one_hot(actions, NUM_ACTIONS).float(),
            ],
            -1,
        )
        e = self.move_own(own)
        mask = self._pair_mask(xy)
        t = xy + d
        rel = [
            xy[:, None] - xy[:, :, None],
            t[:, None] - t[:, :, None],
            xy[:, None] - t[:, :, None],
            t[:, None] - xy[:, :, None],
        ]
        # Analytic overlap probes between every move class of i and every move class of j
        # (agent squares of half-size r): the pairwise analogue of the wall probes.
        cand = self.move_candidates(xy, d)  # (B, N, 4, 2)
        gap = (cand[:, None, :, None] - cand[:, :, None, :, None]).abs().amax(-1)  # [b, i, j, c_i, c_j]
        overlap = (gap < 2 * r).float().flatten(3)  # (B, N, N, 16)
        feats = torch.cat(
            [x.clamp(-3, 3) * 2.5 for x in rel]
            + [d[:, :, None].expand_as(rel[0]) * 4, d[:, None].expand_as(rel[0]) * 4, overlap],
            -1,
        )
        n = xy.shape[1]
        msg = self.move_pair(torch.cat([feats, e[:, None].expand(-1, n, -1, -1)], -1))
        agg = (msg * mask[..., None]).sum(2)
        return self.move_head(torch.cat([e, agg], -1))

    # ----- stage 2: push and pickup on the moved poses ----------------------------------------
    def event_outputs(
        self, q: torch.Tensor, poses: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """push logits (B, N), pick logits (B, N), agent event embeddings (B, N, H) at the moved poses."""
        xy, heading = poses[..., :2], poses[..., 2]
        quad = torch.remainder(torch.round(heading / (math.pi / 2)).long(), 4)
        card = torch.tensor(CARDINAL, device=xy.device)[quad]  # (B, N, 2) (row, col)
        cell = torch.stack([xy[..., 1].floor(), xy[..., 0].floor()], -1).long()
        front, dest = cell + card, cell + 2 * card
        probes = torch.cat([gather_cells(q, c[..., 0], c[..., 1]) for c in (cell, front, dest)], -1)  # (B, N, 3Q)
        frac = xy - xy.floor() - 0.5
        interact = (actions == Action.INTERACT).float()
        dist = frac.norm(dim=-1, keepdim=True)
        reach = torch.sigmoid((dist - torch.tensor(REACH_LEVELS, device=xy.device)) / 0.003)
        own = torch.cat([probes, frac * 2, dist * 2, F.one_hot(quad, 4).float(), interact[..., None], reach], -1)
        e = self.event_own(own)
        mask = self._pair_mask(xy)
        dest_xy = torch.stack([dest[..., 1], dest[..., 0]], -1).float() + 0.5
        rel_dest = (xy[:, None] - dest_xy[:, :, None]).clamp(-3, 3) * 2  # other agent vs my push destination
        same = lambda c: (c[:, None] == c[:, :, None]).all(-1).float()[..., None]  # noqa: E731
        r = self.cfg.probe_radius
        overlap_dest = ((xy[:, None] - dest_xy[:, :, None]).abs() < 0.5 + r).all(-1).float()[..., None]
        dist = dist[..., 0]
        ddist = ((dist[:, None] - dist[:, :, None]) * 100).clamp(-1, 1)[..., None]
        feats = torch.cat(
            [
                rel_dest,
                same(front),
                same(dest),
                same(cell),
                interact[:, None, :, None].expand_as(ddist),
                ddist,
                (ddist == 0).float(),
                overlap_dest,
            ],
            -1,
        )
        n = xy.shape[1]
        msg = self.event_pair(torch.cat([feats, e[:, None].expand(-1, n, -1, -1)], -1))
        agg = (msg * mask[..., None]).sum(2)
        out = self.event_head(torch.cat([e, agg], -1))
        return out[..., 0], out[..., 1], out[..., 2:]

    # ----- latent cell update (the no-refresh path) -------------------------------------------
    def latent_update(
        self, tokens: torch.Tensor, poses: torch.Tensor, events: torch.Tensor, push, pick
    ) -> torch.Tensor:
        """tokens_t+1 predicted in latent space: tokens + delta from agents' messages to nearby cells."""
        bsz, s = tokens.shape[0], tokens.shape[1]
        n, k = poses.shape[1], self.cfg.window
        w = 2 * k + 1
        xy, heading = poses[..., :2], poses[..., 2]
        quad = torch.remainder(torch.round(heading / (math.pi / 2)).long(), 4)
        offs = torch.arange(-k, k + 1, device=xy.device)
        orow, ocol = torch.meshgrid(offs, offs, indexing="ij")
        orow, ocol = orow.reshape(-1), ocol.reshape(-1)  # (W*W,)
        z = torch.cat([events, push[..., None], pick[..., None], F.one_hot(quad, 4).float()], -1)  # (B, N, Z)
        inp = torch.cat(
            [z[:, :, None].expand(-1, -1, w * w, -1), torch.eye(w * w, device=xy.device).expand(bsz, n, -1, -1)], -1
        )
        msg = self.cell_msg(inp)  # (B, N, W*W, D)
        rows = xy[..., 1].floor().long()[..., None] + orow
        cols = xy[..., 0].floor().long()[..., None] + ocol
        inside = (rows >= 0) & (rows < s) & (cols >= 0) & (cols < s)
        idx = (rows.clamp(0, s - 1) * s + cols.clamp(0, s - 1)).reshape(bsz, -1)
        msg = (msg * inside[..., None]).reshape(bsz, -1, msg.shape[-1])
        grid = torch.zeros(bsz, s * s, msg.shape[-1], device=xy.device, dtype=msg.dtype)
        grid = grid.scatter_add(1, idx[..., None].expand_as(msg), msg).reshape(tokens.shape)
        return tokens + self.cell_update(torch.cat([tokens, grid], -1))

    def forward(self, batch: dict[str, torch.Tensor], tokens: torch.Tensor, next_tokens: torch.Tensor, codec) -> tuple:
        """Teacher-forced losses. batch: poses, next_poses (B, N, 3), actions (B, N), push, pick (B, N) labels."""
        q = self.probe(tokens)
        poses, nxt, actions = batch["poses"], batch["next_poses"], batch["actions"]
        move_lg = self.move_logits(q, poses, actions)
        move_y = self.move_labels(poses, nxt, actions)
        push_lg, pick_lg, ev = self.event_outputs(q, nxt, actions)
        push_y, pick_y = batch["push"].float(), batch["pick"].float()
        loss = F.cross_entropy(move_lg.reshape(-1, 4), move_y.reshape(-1))
        loss = (
            loss
            + F.binary_cross_entropy_with_logits(push_lg, push_y)
            + F.binary_cross_entropy_with_logits(pick_lg, pick_y)
        )
        latent = self.latent_update(tokens, nxt, ev, push_y, pick_y)
        lat_mse = F.mse_loss(latent, next_tokens.detach())
        lat_ce, lat_logs = codec.loss(latent, batch["next_maps"])
        loss = loss + lat_mse + 0.5 * lat_ce
        with torch.no_grad():
            logs = {
                "dyn_loss": loss.item(),
                "move_acc": (move_lg.argmax(-1) == move_y).float().mean().item(),
                "push_acc": ((push_lg > 0).float() == push_y).float().mean().item(),
                "pick_acc": ((pick_lg > 0).float() == pick_y).float().mean().item(),
                "latent_mse": lat_mse.item(),
                "latent_cell_acc": lat_logs["cell_acc"],
            }
        return loss, logs
