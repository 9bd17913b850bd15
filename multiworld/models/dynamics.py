"""The state-update model: shared latent state + joint actions -> next shared latent state.

The state is tensors only: scene tokens ``(B, S, S, D)`` on the world-aligned grid and one token
per agent ``(B, N, D)`` (its pose x, y, heading, then a latent), both on the lattice of
``quantize`` so that small errors snap back. Every agent is processed by the same weights and
reads the others only through messages summed over agents, so permuting agents permutes the
outputs and one set of weights serves any number of agents. Three stages:

1. move: each agent reads the tokens of the 5 x 5 cells around it, its own latent and action,
   and messages from the other agents (relative position, their actions and headings); a
   motion network gives its turn and its displacement in its own frame (forward, right), turned
   into world coordinates by the new heading (camera geometry). With ``motion="gated"`` (third
   edition) that move is a learned per-action table plus the network's residual, and a blocker
   network, reading also the tokens of the 3 x 3 cells around the agent, chooses which share of
   it happens (``MOVE_OUTCOMES``). With ``motion="fit"`` the move ends at the first of those
   outcomes where a learned fit judgement, asked at that position, says an agent can stand, and
   agents a learned clash judgement finds overlapping go back (``models.motion``). What blocks a
   move is learned.
2. events: at the new poses, the same kind of reading (gated: plus the window's tokens read
   directly) gives push and pickup logits, the agent's own payout and (pooled over agents) the
   payout shared by every agent and the termination logit. Payouts are classes over the
   scenario's reward values; the step's reward is the value of the chosen class, paid only on a
   step where the model's own events fire (an agent's own payout when its push or pickup fires,
   the shared payout when any does), and an ending likewise only comes with an event.
3. scene: each agent sends a message to the 25 cells around it; cells that received messages
   are updated residually from their token, their neighbours and the messages (boxes move,
   items vanish, agents' marks move) and snapped back to the lattice; cells no agent is near
   stay exactly as they are (``models.scene_write``; with ``push_message`` an agent whose push
   fired also messages and writes its window, so the pushed box moves).

Hand-fixed structure (named in the README and model card): the 5 x 5 window an agent reads and
writes, the rotation of the displacement by the heading, the four move outcomes and the blocker's
3 x 3 cells (gated), or the candidates, their order, the fit judgement's 3 x 3 cells and the
revert-until-stable loop (fit), the reward lattice, the event gate on payouts and endings,
(``payout="local"``/``"judge"``) the shared payout as the sum of what each fired push is worth,
(``"judge"``) a push's worth judged from the pusher's new pose and action alone, (``pickup="reach"``,
``push="judge"``) a pickup judged from the new position alone, a push from the new pose and action
alone, (``push_agents``) no push another agent blocks, judged from where the others stand in the
frame of the pusher's heading quarter, (``push_message``) the scene written apart where the
model's own push fired, and (``cell_judges``) judgements reading the decoder's cell classes
instead of the tokens. Nothing else encodes the arena's rules.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from multiworld.models.geometry import agent_pairs, fourier, gather_cells, window_offsets, wrap_angle
from multiworld.models.heads import CELL_CHANNELS
from multiworld.models.motion import AgentBlock, FitMotion, PositionJudge, heading_action, mlp
from multiworld.models.quantize import snap
from multiworld.models.scene_write import add_writers, write_scene
from multiworld.world.state import NUM_ACTIONS

WINDOW = 2  # cells on each side of an agent's cell that it reads and writes
# Reward lattice: an agent's own payout per step is one of OWN_VALUES, the payout shared by every
# agent one of SHARED_VALUES (the arena's scenarios pay 0 or +1 per event, push-v0 -1 for a box
# pushed off its goal; two boxes onto goals in one step pay 2).
OWN_VALUES = (-1.0, 0.0, 1.0)
SHARED_VALUES = (-2.0, -1.0, 0.0, 1.0, 2.0)


# The outcomes of a gated move, as the share of its world (x, y) displacement that happens: the
# whole move, a slide along x, a slide along y, or none (blocked). A hand-given bias for grid
# worlds whose solid cells are axis-aligned (named in the README and the model card); which outcome
# happens, and where, is learned.
MOVE_OUTCOMES = ((1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0))


def payout_class(value: torch.Tensor, values: tuple[float, ...]) -> torch.Tensor:
    """The class index of each reward ``value`` on the lattice ``values`` (clamped to its range)."""
    v = value.round().clamp(min(values), max(values))
    return (v - values[0]).long()


CELL_JUDGES = ("reach", "push_judge", "worth_judge")  # the judgements that can read cell classes


@dataclasses.dataclass
class StateUpdateConfig:
    dim: int = 32
    hidden: int = 128
    message: int = 32
    scenarios: int = 4  # size of the scenario embedding table (see ``world_model.SCENARIO_IDS``)
    actions: int = NUM_ACTIONS  # size of the action embedding table (the world's Discrete actions)
    # "free": the motion network regresses the turn and the egocentric displacement (first and
    # second editions). "gated" (third edition): a learned per-action move plus a residual, and a
    # learned choice among four outcomes of that move: all of it, only its world-x part, only its
    # world-y part, none of it (see ``MOVE_OUTCOMES``). "fit" (third edition, second phase): the
    # same learned move, ending at the first of its outcomes where a learned judgement says an
    # agent fits, then agents that would overlap go back (``multiworld.models.motion``).
    motion: str = "free"
    # Whether the trainer's per-scenario payout mask (``payouts_seen``) applies. The second edition
    # wrote it into trained weights after training; the third edition learns payouts without it.
    payout_mask: bool = True
    # "pooled": the shared payout is a class of the world head, read from every agent's state
    # pooled (first editions). "local" (third edition, second phase): every agent whose push fires
    # says what its push is worth (-1, 0, +1: a box onto or off a goal), read from the window at
    # its new pose; the shared payout is their sum. "judge": the same sum, what a push is worth
    # judged from the pose and action alone (the 5 x 5 cells around it), as the push judgement is,
    # and trained also on poses the oracle labels anywhere (a box pushed onto a goal is rare).
    payout: str = "pooled"
    # "head": pickup is a logit of the agent's event heads. "reach" (third edition, second phase): a
    # learned judgement of the agent's new position alone (is an item within reach there?).
    pickup: str = "head"
    # "head": push is a logit of the agent's event heads. "judge": a learned judgement of the new
    # pose (the 5 x 5 cells around it, the heading) and the action alone.
    push: str = "head"
    push_agents: bool = False  # with "judge": no push where another agent blocks it (motion.AgentBlock)
    push_message: bool = False  # a fired push also messages and writes the cells around it (models.scene_write)
    pick_write: bool = False  # a fired pickup writes the cells around it too (the item taken leaves the scene)
    push_write: str = "world"  # "quarter": the push write reads its window in its heading quarter's frame
    # "head": the own payout is a class of the agent's event head. "events": a head reading which of the
    # agent's events fired, the scenario and its features (also when the teacher's came a step off).
    own: str = "head"
    # Judgements (of CELL_JUDGES) reading the decoder's cell classes, not the tokens (no gradient into the
    # decoder): they answer for the world the readout shows also where an episode drifted the tokens.
    cell_judges: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.cell_judges = tuple(self.cell_judges)  # a list when read from config.json
        if not set(self.cell_judges) <= set(CELL_JUDGES):
            raise ValueError(f"unknown cell_judges {self.cell_judges}: use some of {CELL_JUDGES}")
        if self.push_write not in ("world", "quarter"):
            raise ValueError(f"unknown push_write {self.push_write!r}: use 'world' or 'quarter'")


class StateUpdateModel(nn.Module):
    def __init__(self, cfg: StateUpdateConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, h, m = cfg.dim, cfg.hidden, cfg.message
        win = (2 * WINDOW + 1) ** 2
        self.action = nn.Embedding(cfg.actions, 16)
        self.scenario = nn.Embedding(cfg.scenarios, 8)
        self.read = nn.Linear(win * d, h)
        self_in = h + 10 + 2 + 16 + 8 + (d - 3)
        pair_in = 3 + 16 + 16 + 2 + 2
        self.pair1 = mlp(pair_in, h // 2, h)
        self.agent1 = mlp(self_in + h, h, h)
        # The motion network: turn and (forward, right) displacement from the agent's reading of
        # its cells, the others' messages and its action (given again, one-hot, at the input).
        if cfg.motion not in ("free", "gated", "fit"):
            raise ValueError(f"unknown motion {cfg.motion!r}: use 'free', 'gated' or 'fit'")
        gated = cfg.motion in ("gated", "fit")
        self.motion = mlp(h + NUM_ACTIONS, h, 3)
        nn.init.zeros_(self.motion[-1].weight)
        nn.init.zeros_(self.motion[-1].bias)
        if gated:
            # What each action asks for (turn, forward, right), learned; the motion net adds a residual.
            self.move_table = nn.Embedding(cfg.actions, 3)
            nn.init.zeros_(self.move_table.weight)
            self.register_buffer("outcome_masks", torch.tensor(MOVE_OUTCOMES), persistent=False)
        if cfg.motion == "gated":
            # The outcome of the move: the agent's reading, the tokens of the 3 x 3 cells around it
            # (every move ends inside them), its place in its cell and the move it asks for.
            self.blocker = mlp(h + NUM_ACTIONS + 9 * d + 4, h, len(MOVE_OUTCOMES))
            inner = (window_offsets(WINDOW).abs() <= 1).all(-1)
            self.register_buffer("inner", torch.nonzero(inner).squeeze(-1), persistent=False)
        elif cfg.motion == "fit":  # where the move ends, judged at its candidates (models.motion)
            self.fitter = FitMotion(d, h, self.outcome_masks)
        self.latent_head = nn.Linear(h, d - 3)
        nn.init.zeros_(self.latent_head.weight)
        nn.init.zeros_(self.latent_head.bias)
        self.read2 = nn.Linear(win * d, h)
        self.pair2 = mlp(3 + 16 + 2 + 2, h // 2, h)
        self.agent2 = mlp(self_in + 2 * h, h, h)
        self.event_head = nn.Linear(h, 2 + len(OWN_VALUES))  # push, pickup logits, own payout logits
        if gated:
            # Push and pickup read the window's tokens at the new pose directly too (the box ahead
            # and the cell beyond it, an item within reach), with the agent's place and heading.
            self.eventer = mlp(h + NUM_ACTIONS + (2 * WINDOW + 1) ** 2 * d + 4, h, 2)
            nn.init.zeros_(self.eventer[-1].weight)
            nn.init.zeros_(self.eventer[-1].bias)
        if cfg.payout not in ("pooled", "local", "judge") or (cfg.payout != "pooled" and not gated):
            raise ValueError(
                f"unknown payout {cfg.payout!r}: use 'pooled', or 'local' or 'judge' with a gated or fit motion"
            )
        if cfg.payout == "local":
            self.contrib = mlp(h + NUM_ACTIONS + (2 * WINDOW + 1) ** 2 * d + 4 + 8, h, len(OWN_VALUES))
            nn.init.zeros_(self.contrib[-1].weight)
            with torch.no_grad():  # an untrained push is worth nothing
                self.contrib[-1].bias.copy_(torch.tensor(OWN_VALUES).abs().neg() * 4)
        jd = {k: CELL_CHANNELS if k in cfg.cell_judges else d for k in CELL_JUDGES}  # what each reads per cell
        self.cell_reader = None  # cell_judges: the decoder's reading, set by the world model (not a submodule)
        if cfg.payout == "judge":
            # What a push from a pose pays: a box from the cell ahead onto a goal +1, off one -1, 0 where no
            # push is possible. Read in the frame of the heading's quarter: "the cell ahead" is one input.
            self.worth_judge = PositionJudge(
                jd["worth_judge"], h, window=WINDOW, extra=2 + NUM_ACTIONS, out=len(OWN_VALUES), egocentric=True
            )
            nn.init.zeros_(self.worth_judge.net[-1].weight)
            with torch.no_grad():  # an untrained push is worth nothing
                self.worth_judge.net[-1].bias.copy_(torch.tensor(OWN_VALUES).abs().neg() * 4)
        for name, value, known in (
            ("own payout", cfg.own, ("head", "events")),
            ("pickup", cfg.pickup, ("head", "reach")),
            ("push", cfg.push, ("head", "judge")),
        ):
            if value not in known:
                raise ValueError(f"unknown {name} {value!r}: use {known[0]!r} or {known[1]!r}")
        if cfg.own == "events":
            self.own_payer = mlp(h + 2 + 8, h // 2, len(OWN_VALUES))
        if cfg.pickup == "reach":
            self.reach = PositionJudge(jd["reach"], h)
        if cfg.push == "judge":
            self.push_judge = PositionJudge(jd["push_judge"], h, window=WINDOW, extra=2 + NUM_ACTIONS)
            self.push_block = AgentBlock() if cfg.push_agents else None
        self.world_head = mlp(2 * h + d + 8, h // 2, 1 + len(SHARED_VALUES))  # termination, shared payout
        # Which payout classes each scenario's training data pays (read off the data by the
        # trainer, ``multiworld.models.data.data_payouts_seen``): a class a scenario never paid is
        # never predicted for it.
        self.register_buffer(
            "payouts_seen", torch.ones(cfg.scenarios, len(OWN_VALUES) + len(SHARED_VALUES), dtype=torch.bool)
        )
        self.offset = nn.Embedding(win, 16)
        self.send = mlp(h + 16 + 4, h // 2, m)
        add_writers(self, cfg, d, h, m, WINDOW)  # models.scene_write: a fired push's and pickup's writes
        self.cell = nn.Sequential(
            nn.Conv2d(d + m, 2 * d, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * d, 2 * d, 1),
            nn.GELU(),
            nn.Conv2d(2 * d, d, 1),
        )
        nn.init.zeros_(self.cell[-1].weight)
        nn.init.zeros_(self.cell[-1].bias)
        self.register_buffer("window", window_offsets(WINDOW), persistent=False)

    # ----- pieces -----------------------------------------------------------------------------
    def _cells(self, xy: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) positions -> (B, N, 25, 2) (row, col) of the window around each agent's cell."""
        cell = torch.stack([xy[..., 1].floor(), xy[..., 0].floor()], -1).long()
        return cell[..., None, :] + self.window

    def _self_features(self, scene, xy, heading, act_e, scen_e, latent, read) -> tuple[torch.Tensor, torch.Tensor]:
        """The agent's reading (B, N, F) and the window's tokens (B, N, 25, D)."""
        cells = self._cells(xy)
        bsz, n = xy.shape[:2]
        win = gather_cells(scene, cells[..., 0].reshape(bsz, -1), cells[..., 1].reshape(bsz, -1))
        frac = xy - xy.floor()
        feats = torch.cat(
            [
                read(win.reshape(bsz, n, -1)),
                fourier(frac, 2),
                frac,
                torch.stack([heading.sin(), heading.cos()], -1),
                act_e,
                scen_e[:, None].expand(-1, n, -1),
                latent,
            ],
            -1,
        )
        return feats, win.reshape(bsz, n, -1, scene.shape[-1])

    # ----- the step -------------------------------------------------------------------------
    def cell_classes(self, scene: torch.Tensor) -> torch.Tensor | None:
        """The decoder's cell classes of ``scene (B, S, S, D)`` if any judgement reads them."""
        if not self.cfg.cell_judges:
            return None
        if self.cell_reader is None:
            raise RuntimeError("cell_judges read the decoder's cell classes: build the world model, not this alone")
        return self.cell_reader(scene).detach()

    def judge(self, name: str, scene: torch.Tensor, xy: torch.Tensor, *args, cells=None, **kw) -> torch.Tensor:
        """Judgement ``name`` (of CELL_JUDGES) at positions ``xy (B, M, 2)`` of ``scene (B, S, S, D)``,
        reading the tokens or their cell classes (``cells``, computed here if not given)."""
        if name in self.cfg.cell_judges:
            scene = self.cell_classes(scene) if cells is None else cells
        return getattr(self, name)(scene, xy, *args, **kw)

    def forward(
        self, scene: torch.Tensor, agents: torch.Tensor, actions: torch.Tensor, scenario: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Next ``(scene, agents)`` and the step's outputs: push and pickup logits, reward (B, N)
        (values of the reward lattice), ``done`` (B,) the termination logit after the event gate
        (``done_logit`` before it), and the payout logits ``own_logits`` (B, N, 3) and
        ``shared_logits`` (B, 5) the training losses read."""
        cfg = self.cfg
        gated = cfg.motion != "free"
        n = actions.shape[1]
        xy, heading, latent = agents[..., :2], agents[..., 2], agents[..., 3:]
        act_e, scen_e = self.action(actions), self.scenario(scenario)

        # 1. move
        sc = torch.stack([heading.sin(), heading.cos()], -1)
        rel, other = agent_pairs(xy)
        pair = torch.cat(
            [
                rel,
                act_e[:, None].expand(-1, n, -1, -1),
                act_e[:, :, None].expand(-1, -1, n, -1),
                sc[:, None].expand(-1, n, -1, -1),
                sc[:, :, None].expand(-1, -1, n, -1),
            ],
            -1,
        )
        msg1 = (self.pair1(pair) * other).sum(2)
        f1, win1 = self._self_features(scene, xy, heading, act_e, scen_e, latent, self.read)
        h1 = self.agent1(torch.cat([f1, msg1], -1))
        onehot = nn.functional.one_hot(actions, NUM_ACTIONS).to(h1.dtype)
        motion = self.motion(torch.cat([h1, onehot], -1))
        if gated:
            motion = motion + self.move_table(actions)
        turn, fwd, right = motion.unbind(-1)
        new_heading = wrap_angle(heading + turn)
        c, s = new_heading.cos(), new_heading.sin()  # camera geometry: forward (c, s), right (-s, c)
        free_move = torch.stack([fwd * c - right * s, fwd * s + right * c], -1)
        move_logits, fit_out = None, None
        if cfg.motion == "fit":
            new_xy, fit_out = self.fitter(scene, xy, free_move)
        elif cfg.motion == "gated":  # the chosen outcome's share of the move (no gradient through the choice)
            near = win1[:, :, self.inner].flatten(2)
            move_logits = self.blocker(torch.cat([h1, onehot, near, xy - xy.floor(), free_move], -1))
            new_xy = xy + free_move * self.outcome_masks[move_logits.argmax(-1)]
        else:
            new_xy = xy + free_move
        new_latent = snap(latent + self.latent_head(h1))

        # 2. events at the new poses
        rel2, _ = agent_pairs(new_xy)
        pair2 = torch.cat(
            [
                rel2,
                act_e[:, None].expand(-1, n, -1, -1),
                torch.stack([new_heading.sin(), new_heading.cos()], -1)[:, None].expand(-1, n, -1, -1),
                torch.stack([new_heading.sin(), new_heading.cos()], -1)[:, :, None].expand(-1, -1, n, -1),
            ],
            -1,
        )
        msg2 = (self.pair2(pair2) * other).sum(2)
        f2, win2 = self._self_features(scene, new_xy, new_heading, act_e, scen_e, new_latent, self.read2)
        h2 = self.agent2(torch.cat([f2, msg2, h1], -1))
        ev = self.event_head(h2)
        if gated:
            hs = torch.stack([new_heading.sin(), new_heading.cos()], -1)
            local = torch.cat([h2, onehot, win2.flatten(2), new_xy - new_xy.floor(), hs], -1)
            ev = torch.cat([ev[..., :2] + self.eventer(local), ev[..., 2:]], -1)
        cells = self.cell_classes(scene)  # once for every judgement that reads them
        if cfg.pickup == "reach":  # the pickup judged at the new position, over the scene before the step
            ev = torch.cat([ev[..., :1], self.judge("reach", scene, new_xy, cells=cells)[..., None], ev[..., 2:]], -1)
        if cfg.push == "judge":  # the push judged from the new pose and the action
            judged = self.judge("push_judge", scene, new_xy, heading_action(new_heading, actions), cells=cells)
            if self.push_block is not None:  # a push happens only where no other agent blocks it
                judged = torch.minimum(judged, -self.push_block(new_xy, new_heading))
            ev = torch.cat([judged[..., None], ev[..., 1:]], -1)
        pooled = torch.cat([h2.mean(1), h2.amax(1), scene.mean((1, 2)), scen_e], -1)
        world = self.world_head(pooled)
        own_logits, shared_logits = ev[..., 2:], world[:, 1:]
        if cfg.own == "events":
            fired = torch.stack([ev[..., 0] > 0, ev[..., 1] > 0], -1).to(h2.dtype)
            own_logits = self.own_payer(torch.cat([h2, fired, scen_e[:, None].expand(-1, n, -1)], -1))
        if cfg.payout_mask:
            allowed = self.payouts_seen[scenario]  # (B, 8)
            k = len(OWN_VALUES)
            own_logits = own_logits.masked_fill(~allowed[:, None, :k], -1e4)
            shared_logits = shared_logits.masked_fill(~allowed[:, k:], -1e4)
        # The step's reward: payout classes' values, paid only with the model's own events.
        mine = (ev[..., 0] > 0) | (ev[..., 1] > 0)  # (B, N): this agent's push or pickup fired
        anyone = mine.any(1)  # (B,)
        own = ev.new_tensor(OWN_VALUES)[own_logits.argmax(-1)] * mine
        shared = ev.new_tensor(SHARED_VALUES)[shared_logits.argmax(-1)] * anyone
        contrib_logits = None
        if cfg.payout != "pooled":  # what each fired push is worth, summed (the reward lattice's range)
            if cfg.payout == "judge":
                ha = heading_action(new_heading, actions)
                contrib_logits = self.judge("worth_judge", scene, new_xy, ha, heading=new_heading, cells=cells)
            else:
                contrib_logits = self.contrib(torch.cat([local, scen_e[:, None].expand(-1, n, -1)], -1))
            worth = ev.new_tensor(OWN_VALUES)[contrib_logits.argmax(-1)] * (ev[..., 0] > 0)
            shared = worth.sum(1).clamp(min(SHARED_VALUES), max(SHARED_VALUES))
        reward = own + shared[:, None]
        done = torch.where(anyone, world[:, 0], torch.full_like(world[:, 0], -1e4))

        # 3. scene: messages to the cells around each agent, residual update of those cells only
        new_scene = write_scene(self, scene, xy, new_xy, new_heading, h2, ev[..., 0] > 0, ev[..., 1] > 0)

        new_agents = torch.cat([new_xy, new_heading[..., None], new_latent], -1)
        out = {
            "push": ev[..., 0],
            "pick": ev[..., 1],
            "reward": reward,
            "done": done,
            "done_logit": world[:, 0],
            "own_logits": own_logits,
            "shared_logits": shared_logits,
            "free_move": free_move,  # (B, N, 2) the move the action asked for, in world cells
        }
        if move_logits is not None:
            out["move_logits"] = move_logits  # (B, N, 4) over MOVE_OUTCOMES
        if contrib_logits is not None:
            out["contrib_logits"] = contrib_logits  # (B, N, 3) over OWN_VALUES: what its push is worth
        if fit_out is not None:
            out.update(fit_out)  # fit_logits (B, N, 3), outcome (B, N)
        return new_scene, new_agents, out
