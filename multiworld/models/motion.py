"""Where a move ends: learned judgements of fit and clash, asked at the places a move can end.

The third edition's first gated motion chose among the four outcomes of a move (``MOVE_OUTCOMES``)
from the agent's reading of the 3 x 3 cells around it. It was right on 96% of the oracle's own
poses, but an agent whose pose had drifted off them by a fraction of a cell met states it had
never seen, and walked into walls (free-running, the decoded state still showed the wall in 33 of
the 35 cells an agent entered). A judgement asked where the answer lives generalises: ``fit``
reads only the tokens of the 3 x 3 cells around a candidate position and the position inside its
cell, and says whether an agent can stand there. Any position of any map is a training example,
so the fit net is trained on thousands of positions per batch (the oracle labels them), not only
on the poses that policies happen to visit.

A move then ends at the first of its candidates that fits: the whole move, its world-x part, its
world-y part (a candidate that moves nothing is skipped), else where it started. Agents last:
``clash`` judges from the offset between two agents' new positions whether they overlap, and a
moved agent that overlaps another goes back, repeated once per agent (moves revert until none
overlap). Hand-fixed here (named in the README and the model card): the candidates and their
order, the 3 x 3 cells read around a candidate, and the revert-until-stable loop. What blocks,
and how near two agents may come, is learned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from multiworld.models.geometry import fourier, gather_cells, window_offsets
from multiworld.world.state import NUM_ACTIONS

BANDS = 3  # Fourier bands of the position inside the cell (sharp thresholds near the cell's edges)
SKIP = 1e-3  # cells: a candidate that moves less than this is no move


def mlp(a: int, h: int, b: int) -> nn.Sequential:
    """The state update's 3-layer MLP: ``a`` inputs, two hidden layers of ``h``, ``b`` outputs."""
    return nn.Sequential(nn.Linear(a, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, b))


def motion_loss(
    out: dict[str, torch.Tensor],
    outcome: torch.Tensor,
    free_move: torch.Tensor,
    free_weight: float,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The gated motion's loss: cross-entropy of the chosen outcome against the teacher's
    ``outcome`` (B, N) and L1 of the free move against ``free_move`` (B, N, 2), times ``free_weight``.
    The fit motion has no outcome classes (its judgements learn from labelled candidates and
    positions, ``FitMotion.candidate_loss``): the free move's L1 only."""
    l1 = (out["free_move"] - free_move).abs().sum(-1).mean() * free_weight
    if "move_logits" not in out:
        return l1
    ce = F.cross_entropy(out["move_logits"].flatten(0, 1), outcome.flatten(), weight=class_weight)
    return ce + l1


def heading_action(heading: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """The push judgement's extra features ``(..., 2 + NUM_ACTIONS)``: sin and cos of ``heading``
    and the one-hot ``action``."""
    onehot = F.one_hot(action, NUM_ACTIONS).to(heading.dtype)
    return torch.cat([heading.sin()[..., None], heading.cos()[..., None], onehot], -1)


def heading_quarter(heading: torch.Tensor) -> torch.Tensor:
    """The quarter 0..3 (east, south, west, north) a heading is nearest to, as a float tensor."""
    return torch.remainder(torch.round(heading / (torch.pi / 2)), 4)


class PositionJudge(nn.Module):
    """A learned yes/no about a position: scene tokens ``(B, S, S, D)`` and positions ``(B, M, 2)``
    -> logits ``(B, M)`` (``(B, M, out)`` for ``out`` classes), from the tokens of the cells within
    ``window`` of each position's cell, its place in its cell and ``extra`` features ``(B, M, E)``
    (the push and worth judgements: heading and action), nothing else of the agent that stands there.

    ``egocentric``: the window is read in the frame of the heading's quarter (``forward`` then needs
    ``heading``): the cell ahead is always the same input, whichever way the agent faces."""

    def __init__(
        self, dim: int, hidden: int, window: int = 1, extra: int = 0, out: int = 1, egocentric: bool = False
    ) -> None:
        super().__init__()
        self.egocentric = egocentric
        self.net = mlp((2 * window + 1) ** 2 * dim + 2 + 4 * BANDS + extra, hidden, out)
        near = window_offsets(window)  # (K, 2) (row, col)
        self.register_buffer("near", near, False)
        # Quarter q turns the window by q x 90 degrees: (row, col) -> (col, -row) per quarter, which
        # takes the cell east of the agent (0, 1) to the one ahead of heading q (south for q = 1).
        turns = [near]
        for _ in range(3):
            turns.append(torch.stack([turns[-1][:, 1], -turns[-1][:, 0]], -1))
        self.register_buffer("turned", torch.stack(turns), False)  # (4, K, 2)

    def cells(self, xy: torch.Tensor, heading: torch.Tensor | None = None) -> torch.Tensor:
        """The (row, col) cells read for positions ``xy (B, M, 2)``: ``(B, M, K, 2)``."""
        here = torch.stack([xy[..., 1].floor(), xy[..., 0].floor()], -1).long()[..., None, :]
        if not self.egocentric:
            return here + self.near
        if heading is None:
            raise ValueError("an egocentric judgement needs the heading")
        quarter = heading_quarter(heading).long()
        return here + self.turned[quarter]

    def forward(
        self, scene: torch.Tensor, xy: torch.Tensor, extra: torch.Tensor | None = None, heading=None
    ) -> torch.Tensor:
        bsz, m = xy.shape[:2]
        cell = self.cells(xy, heading)
        tokens = gather_cells(scene, cell[..., 0].reshape(bsz, -1), cell[..., 1].reshape(bsz, -1))
        frac = xy - xy.floor()
        feats = [tokens.reshape(bsz, m, -1), frac, fourier(frac, BANDS)] + ([] if extra is None else [extra])
        logits = self.net(torch.cat(feats, -1))
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits


class FitMotion(nn.Module):
    """``fit``: scene tokens ``(B, S, S, D)`` and positions ``(B, M, 2)`` -> logits ``(B, M)`` that an
    agent fits there; ``clash``: offsets ``(..., 2)`` between two agents -> logits that they overlap."""

    def __init__(self, dim: int, hidden: int, masks: torch.Tensor) -> None:
        super().__init__()
        self.fit_judge = PositionJudge(dim, hidden)
        self.clash_net = mlp(4 + 4 * BANDS, 32, 1)
        self.register_buffer("masks", masks[:-1].clone(), False)  # (3, 2) the candidates' shares

    def fit(self, scene: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        return self.fit_judge(scene, xy)

    def clash(self, offset: torch.Tensor) -> torch.Tensor:
        d = offset.clamp(-2, 2)
        return self.clash_net(torch.cat([d, d.abs(), fourier(d / 4, BANDS)], -1)).squeeze(-1)

    def candidate_loss(
        self, scene: torch.Tensor, xy: torch.Tensor, free_move: torch.Tensor, fits: torch.Tensor
    ) -> torch.Tensor:
        """Binary cross-entropy ``(B, N, 3)`` of the fit judgement at the candidates of the moves
        ``free_move (B, N, 2)`` from ``xy (B, N, 2)`` against the teacher's ``fits`` (0 where a
        candidate moves nothing)."""
        part = free_move[:, :, None] * self.masks
        moving = part.abs().amax(-1) > SKIP
        logits = self.fit(scene, (xy[:, :, None] + part).flatten(1, 2)).view(moving.shape)
        bce = F.binary_cross_entropy_with_logits(logits, fits.to(logits.dtype), reduction="none")
        return bce * moving

    def forward(
        self, scene: torch.Tensor, xy: torch.Tensor, free_move: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """New positions ``(B, N, 2)`` and ``fit_logits`` ``(B, N, 3)`` (the candidates'),
        ``outcome`` ``(B, N)`` (index of ``MOVE_OUTCOMES``: 3 for no move, walls or agents)."""
        bsz, n = xy.shape[:2]
        cand = xy[:, :, None] + free_move[:, :, None] * self.masks  # (B, N, 3, 2)
        moving = (free_move[:, :, None] * self.masks).abs().amax(-1) > SKIP
        logits = self.fit(scene, cand.flatten(1, 2)).view(bsz, n, 3).masked_fill(~moving, -1e4)
        ok = torch.cat([logits > 0, torch.ones_like(logits[..., :1], dtype=torch.bool)], -1)
        outcome = ok.float().argmax(-1)  # the first candidate that fits (3: none)
        stay = outcome == 3
        chosen = cand.gather(2, outcome.clamp(max=2)[..., None, None].expand(-1, -1, 1, 2)).squeeze(2)
        target = torch.where(stay[..., None], xy, chosen)
        other = ~torch.eye(n, dtype=torch.bool, device=xy.device)
        for _ in range(n):  # agents whose new positions overlap go back, until none do
            hit = (self.clash(target[:, None, :, :] - target[:, :, None, :]) > 0) & other
            revert = hit.any(-1) & ~stay
            # Compiled (one graph): the loop runs out instead, the same target (no revert: no change).
            if not torch.compiler.is_compiling() and not bool(revert.any()):
                break
            target = torch.where(revert[..., None], xy, target)
            stay = stay | revert
        outcome = torch.where(stay, torch.full_like(outcome, 3), outcome)
        return target, {"fit_logits": logits, "outcome": outcome}


class AgentBlock(nn.Module):
    """A learned yes/no: does another agent stand where a push from an agent's pose would put the
    box? From where the other agent is, relative to the centre of the pusher's cell and read in the
    frame of the pusher's heading quarter (hand-fixed, as for the egocentric judgements): which
    offsets block is learned. The push judgement reads scene tokens, where no agent is, so without
    this a push into a cell another agent stands in fired (a diagnostic, teacher-forced forage-v0,
    scripted: 112 false pushes of 155, every one of them so)."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.net = mlp(4 + 4 * BANDS, hidden, 1)

    def pair(self, rel: torch.Tensor) -> torch.Tensor:
        """Logits ``(...)`` from other agents' offsets ``(..., 2)`` in the pusher's quarter frame."""
        d = rel.clamp(-4, 4)
        return self.net(torch.cat([d, d.abs(), fourier(d / 8, BANDS)], -1)).squeeze(-1)

    @staticmethod
    def turn(rel: torch.Tensor, heading: torch.Tensor) -> torch.Tensor:
        """Offsets ``(..., 2)`` (x, y) turned into the frame where heading's quarter looks along +x."""
        q = heading_quarter(heading)
        c, s = torch.cos(q * torch.pi / 2).round(), torch.sin(q * torch.pi / 2).round()
        return torch.stack([rel[..., 0] * c + rel[..., 1] * s, -rel[..., 0] * s + rel[..., 1] * c], -1)

    def judge(self, poses: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """Logits ``(P,)`` that an agent at ``other (P, 2)`` blocks a push from ``poses (P, 3)``."""
        return self.pair(self.turn(other - (poses[..., :2].floor() + 0.5), poses[..., 2]))

    def forward(self, xy: torch.Tensor, heading: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` logits that some other agent of ``xy (B, N, 2)`` blocks each agent's push."""
        rel = xy[:, None, :, :] - (xy.floor() + 0.5)[:, :, None, :]  # (B, pusher, other, 2)
        logits = self.pair(self.turn(rel, heading[:, :, None]))
        n = xy.shape[1]
        return logits.masked_fill(torch.eye(n, dtype=torch.bool, device=xy.device), -1e4).amax(-1)
