"""Transition batches: many cheap oracle transitions for the state-update model.

The renderer learns from few, expensive batches (every view of every step re-rendered); the
state update needs far more transitions than that, and most of them near what stops a move:
walls, boxes, the map's edge and other agents. A transition batch is B fresh worlds of the
training seed block, each walked for a random warm-up by a mix of policies (random, scripted,
mostly-forward: an agent that walks until something stops it), then ``horizon`` recorded steps.
Only the first state is observed (views and map, rendered once); the model encodes it without
gradient and runs its state update for the whole window. For a share of the worlds the poses are
teacher-forced (the oracle's pose replaces the model's after every step, so every step is a
one-step problem from a true pose); the rest run free. Losses: the move's outcome and the free
move it chose from, the pose, events, payouts, endings and the decoded cells at every step.

The oracle is the teacher here (its free move and the outcome of every move are training
targets, :func:`move_targets`); nothing of it runs in the model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from multiworld.agents.policies import make_policy
from multiworld.models.data import Batch, split_payouts
from multiworld.models.dynamics import MOVE_OUTCOMES, OWN_VALUES
from multiworld.models.geometry import wrap_angle
from multiworld.models.heads import cell_maps
from multiworld.models.motion import motion_loss
from multiworld.models.world_model import ARENA_WORLDS, scenario_id
from multiworld.seeds import TRAINING
from multiworld.world.arena import ArenaConfig, generate
from multiworld.world.dynamics import intended_move, solid_cells, square_free
from multiworld.world.dynamics import step as world_step
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import WorldState
from multiworld.world.topdown import top_down


def move_targets(
    before: np.ndarray, after: np.ndarray, actions: np.ndarray, arena: ArenaConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's view of every move: poses ``(..., 3)`` before and after, actions ``(...)`` ->
    the free move the action asked for ``(..., 2)`` float32 (world cells) and the outcome
    ``(...)`` int64, the first of ``MOVE_OUTCOMES`` whose share of the free move is the move made
    (a slide counts only if it moves: a blocked move along one axis is "none", as in the oracle)."""
    _, free = intended_move(before, actions, arena)
    made = np.asarray(after, np.float64)[..., :2] - np.asarray(before, np.float64)[..., :2]
    outcome = np.full(made.shape[:-1], len(MOVE_OUTCOMES) - 1, np.int64)
    for k in reversed(range(len(MOVE_OUTCOMES) - 1)):
        part = free * np.asarray(MOVE_OUTCOMES[k])
        # A slide that moves nothing is no slide (as the oracle tries it): that move was blocked.
        real = (np.abs(part) > 0).any(-1) | (k == 0)
        outcome = np.where(real & (np.abs(made - part).max(-1) < 1e-4), k, outcome)
    return free.astype(np.float32), outcome


def candidate_fits(state: WorldState, free: np.ndarray, arena: ArenaConfig) -> np.ndarray:
    """The teacher's word on the fit motion's candidates: ``(B, N, 3)`` bool, whether an agent fits
    where the whole ``free (B, N, 2)`` move, its x part and its y part would put it (walls and
    boxes of ``state``; other agents are the clash judgement's)."""
    cand = state.poses[..., None, :2] + free[..., None, :] * np.asarray(MOVE_OUTCOMES[:-1])
    fits = square_free(solid_cells(state), cand.reshape(state.num_worlds, -1, 2), arena.agent_radius)
    return fits.reshape(cand.shape[:-1])


def push_worth(before: WorldState, events) -> np.ndarray:
    """The teacher's word on what each agent's push is worth: ``(B, N)`` int64, the class on
    ``OWN_VALUES`` of +1 for a box pushed onto a goal, -1 off one, 0 otherwise (or no push)."""
    b = np.arange(before.num_worlds)[:, None]
    to, frm = np.clip(events.push_to, 0, before.size - 1), np.clip(events.push_from, 0, before.size - 1)
    worth = before.goals[b, to[..., 0], to[..., 1]].astype(np.int64) - before.goals[b, frm[..., 0], frm[..., 1]]
    return np.where(events.pushed >= 0, worth, 0) - int(OWN_VALUES[0])


@dataclasses.dataclass
class TransitionConfig:
    batch_size: int = 32  # worlds per batch
    horizon: int = 16  # recorded steps per world
    warmup: int = 100  # the warm-up before recording is drawn from [0, warmup] steps
    agents: tuple[int, ...] = (2, 3, 4, 6, 8)
    scenarios: tuple[str, ...] = ARENA_WORLDS
    policy_mix: tuple[float, float, float] = (0.4, 0.25, 0.35)  # random, scripted, mostly-forward
    teacher_fraction: float = 0.5  # worlds whose poses are teacher-forced
    every: int = 3  # transition batches per full (rendered) batch in training; 0: none


@dataclasses.dataclass
class TransitionBatch:
    """A :class:`~multiworld.models.data.Batch` whose ``views`` and ``maps`` hold step 0 only
    (``(B, 1, ...)``; ``depth`` None) while every other field covers all T steps, plus
    ``teacher`` (B,) bool: the worlds whose poses are teacher-forced."""

    batch: Batch
    teacher: torch.Tensor
    fits: torch.Tensor | None = None  # (B, T, N, 3) bool: :func:`candidate_fits` at every step
    worth: torch.Tensor | None = None  # (B, T, N) int64: :func:`push_worth` at every step

    def loss(self, model) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The world model's objective on this batch (``WorldModel.forward`` calls it)."""
        return transition_loss(model, self)


class ProbePolicy:
    """Per world, one of random, scripted and mostly-forward (chosen once per window)."""

    def __init__(self, num_worlds: int, mix: tuple[float, float, float], rng: np.random.Generator) -> None:
        seed = int(rng.integers(2**31))
        self.random, self.scripted = make_policy("random", seed=seed), make_policy("scripted", seed=seed + 1)
        self.forward = make_policy("forward", seed=seed + 2)
        self.kind = rng.choice(3, size=num_worlds, p=np.asarray(mix) / np.sum(mix))

    def act(self, state: WorldState) -> np.ndarray:
        a = self.random.act(state)
        scripted = np.flatnonzero(self.kind == 1)
        if len(scripted):  # the scripted policy plans per agent: only for its own worlds
            a[scripted] = self.scripted.act(state.select(scripted))
        return np.where(self.kind[:, None] == 2, self.forward.act(state), a).astype(np.int64)


def probe_worlds(rng: np.random.Generator, scenarios, agents, count: int, warmup: int, policy_mix):
    """``count`` fresh training-block worlds of one drawn scenario and agent count, walked for a
    warm-up drawn from [0, warmup] steps by a :class:`ProbePolicy`: ``(scenario, arena, state,
    policy)`` (the policy goes on acting for the recorded steps)."""
    sc = get_scenario(str(rng.choice(scenarios)))
    arena = sc.arena_config(num_agents=int(rng.choice(agents)))
    state = generate(arena, rng.integers(TRAINING.start, TRAINING.stop, size=count))
    policy = ProbePolicy(count, policy_mix, rng)
    for _ in range(int(rng.integers(0, warmup + 1))):
        state, _ = world_step(state, policy.act(state), arena)
    return sc, arena, state, policy


class TransitionSampler:
    """Transition batches made on the fly by the oracle (the module docstring)."""

    def __init__(self, cfg: TransitionConfig, seed: int = 0, device: str = "cpu") -> None:
        self.cfg, self.device = cfg, device
        self.rng = np.random.Generator(np.random.PCG64([seed, 0x7A5]))
        self.renderer = Raycaster(RenderConfig(), device=device)
        for name in cfg.scenarios:
            scenario_id(name)

    def sample(self) -> TransitionBatch:
        cfg = self.cfg
        sc, arena, state, policy = probe_worlds(
            self.rng, cfg.scenarios, cfg.agents, cfg.batch_size, cfg.warmup, cfg.policy_mix
        )
        name = sc.name
        states, acts, evs, rewards, dones = [state], [], [], [], []
        for _ in range(cfg.horizon):
            a = policy.act(state)
            after, events = world_step(state, a, arena)
            acts.append(a)
            evs.append(events)
            rewards.append(sc.reward(state, after, events))
            dones.append(sc.terminated(after))
            states.append(after)
            state = after
        return self._batch(name, arena, states, acts, evs, rewards, dones)

    def _batch(self, name, arena, states, acts, evs, rewards, dones) -> TransitionBatch:
        cfg, dev = self.cfg, self.device
        bsz = acts[0].shape[0]
        t = lambda x: torch.as_tensor(np.ascontiguousarray(x), device=dev)  # noqa: E731
        views = self.renderer.render(states[0]).rgb  # (B, N, H, W, 3) uint8
        poses = np.stack([s.poses for s in states], 1)  # (B, T1, N, 3)
        actions = np.stack(acts, 1)  # (B, T, N)
        free, outcome = move_targets(poses[:, :-1], poses[:, 1:], actions, arena)
        per_step = [cell_maps(s, dev) for s in states]
        cells = {k: torch.stack([m[k] for m in per_step], 1) for k in per_step[0]}
        reward = t(np.stack(rewards, 1)).float()
        push = t(np.stack([e.pushed >= 0 for e in evs], 1)).float()
        worth = np.stack([push_worth(s, e) for s, e in zip(states[:-1], evs, strict=True)], 1)
        batch = Batch(
            views=views[:, None].float().div_(255).to(dev),
            depth=None,
            maps=t(top_down(states[0]))[:, None].float().div_(255),
            poses=t(poses),
            cells=cells,
            colors=t(states[0].colors.astype(np.int64)),
            actions=t(actions),
            push=push,
            pick=t(np.stack([e.picked >= 0 for e in evs], 1)).float(),
            unusual=t(outcome > 0).float(),
            reward=reward,
            # Transition batches train the judgement model: its split (the pushes' worth is shared).
            **split_payouts(reward, t(worth), push),
            done=t(np.stack(dones, 1)).float(),
            scenario=torch.full((bsz,), scenario_id(name), dtype=torch.long, device=dev),
            free_move=t(free),
            move_outcome=t(outcome),
        )
        teacher = t(self.rng.random(bsz) < cfg.teacher_fraction)
        fits = np.stack([candidate_fits(s, free[:, i], arena) for i, s in enumerate(states[:-1])], 1)
        return TransitionBatch(batch, teacher, t(fits), t(worth))


# A push onto or off a goal is about one real push in eight under the scripted policy in push-v0,
# far fewer under the one-step pool's mix (none in 87 pushes of 6 chunks): weighed 2 or 8, the
# worth head said 0 for every push. The worth judgement (``payout="judge"``) also learns from
# poses the oracle labels.
GOAL_PUSH_WEIGHT = 8.0


def worth_loss(logits: torch.Tensor, worth: torch.Tensor, pushed: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of what a push is worth ``logits (B, N, 3)`` against the teacher's ``worth``
    (B, N), over the agents that pushed (``pushed`` (B, N) 0/1); a push onto or off a goal weighs
    ``GOAL_PUSH_WEIGHT``."""
    w = pushed * torch.where(worth != 1, GOAL_PUSH_WEIGHT, 1.0)
    ce = F.cross_entropy(logits.flatten(0, 1), worth.flatten(), reduction="none").view_as(w)
    return (ce * w).sum() / pushed.sum().clamp(min=1)


def transition_loss(model, tb: TransitionBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The state-update model's objective on a transition batch (the module docstring). Named
    losses reuse the world model's ``scales()``; metrics are prefixed ``tf_`` (teacher-forced
    worlds) or ``fr_`` (free-running ones) where they differ."""
    b, teacher = tb.batch, tb.teacher
    cfg = model.cfg
    size = b.cells["wall"].shape[-1]
    dev = b.poses.device
    with torch.no_grad():  # the encoder is trained on the rendered batches; here it only reads step 0
        use_map = torch.rand(b.poses.shape[0], device=dev) < cfg.map_fraction
        scene, agents = model.encoder(b.views[:, 0], b.poses[:, 0], size, b.maps[:, 0], use_map)
    t_steps = b.actions.shape[1]
    pos_weight = torch.tensor(cfg.event_pos_weight, device=dev)
    own_w = torch.tensor([cfg.event_pos_weight, 1.0, cfg.event_pos_weight], device=dev)
    shared_w = torch.tensor([cfg.event_pos_weight] * 2 + [1.0] + [cfg.event_pos_weight] * 2, device=dev)
    losses: dict[str, torch.Tensor] = {}
    notes: dict[str, list[torch.Tensor]] = {}

    def add(name: str, value: torch.Tensor) -> None:
        losses[name] = losses.get(name, 0.0) + value / t_steps

    def note(name: str, value: torch.Tensor) -> None:
        notes.setdefault(name, []).append(value.detach())

    tf = teacher[:, None].float()
    for t in range(t_steps):
        scene, agents = model._perturb(scene, agents)
        before = scene
        scene, agents, out = model.dynamics(scene, agents, b.actions[:, t], b.scenario)
        p = b.poses[:, t + 1]
        err_xy = (agents[..., :2] - p[..., :2]).abs()
        err_h = wrap_angle(agents[..., 2] - p[..., 2]).abs()
        add("pose", (err_xy.sum(-1) / 2 + err_h).mean())
        add("motion", motion_loss(out, b.move_outcome[:, t], b.free_move[:, t], cfg.pose_weight))
        if "fit_logits" in out and tb.fits is not None:  # at the teacher's poses: teacher-forced worlds
            fit = model.dynamics.fitter.candidate_loss(before, b.poses[:, t, :, :2], b.free_move[:, t], tb.fits[:, t])
            add("motion", (fit * teacher[:, None, None]).sum() / (teacher.sum() * fit[0].numel()).clamp(min=1))
        l_e = F.binary_cross_entropy_with_logits(out["push"], b.push[:, t], pos_weight=pos_weight)
        l_e = l_e + F.binary_cross_entropy_with_logits(out["pick"], b.pick[:, t], pos_weight=pos_weight)
        l_e = l_e + F.binary_cross_entropy_with_logits(out["done_logit"], b.done[:, t])
        add("events", l_e)
        if "contrib_logits" in out and tb.worth is not None:
            add("payout", worth_loss(out["contrib_logits"], tb.worth[:, t], b.push[:, t]))
        l_p = F.cross_entropy(out["own_logits"].flatten(0, 1), b.own_payout[:, t].flatten(), weight=own_w)
        add("payout", l_p + F.cross_entropy(out["shared_logits"], b.shared_payout[:, t], weight=shared_w))
        l_h, lg = model.heads.loss(scene, agents, {k: v[:, t + 1] for k, v in b.cells.items()}, b.colors)
        add("heads", l_h)
        with torch.no_grad():
            ok = ((err_xy.amax(-1) < 0.05) & (err_h < 0.02)).float()  # (B, N)
            blocked = (b.move_outcome[:, t] > 0).float()
            for tag, w in (("tf", tf), ("fr", 1 - tf)):
                note(f"{tag}_move_ok", (ok * w).sum() / (w.sum() * ok.shape[1]).clamp(min=1))
                note(f"{tag}_blocked_ok", (ok * blocked * w).sum() / (blocked * w).sum().clamp(min=1))
            outcome = out["outcome"] if "outcome" in out else out["move_logits"].argmax(-1)
            note("outcome_acc", (outcome == b.move_outcome[:, t]).float().mean())
            fired, real = (out["push"] > 0) | (out["pick"] > 0), (b.push[:, t] + b.pick[:, t]) > 0
            note("event_tp", (fired & real).float().sum())
            note("event_fired", fired.float().sum())
            note("event_real", real.float().sum())
            note("tr_cell_acc", lg["cell_acc"])
        # Teacher forcing: the true pose replaces the model's for those worlds (latents stay the model's).
        agents = torch.cat([torch.where(teacher[:, None, None], p, agents[..., :3]), agents[..., 3:]], -1)

    scales = model.scales()
    loss = sum(scales[k] * v for k, v in losses.items())
    logs = {k: torch.stack(v).mean() for k, v in notes.items() if not k.startswith("event_")}
    tp, fired, real = (torch.stack(notes[k]).sum() for k in ("event_tp", "event_fired", "event_real"))
    logs["event_precision"] = tp / fired.clamp(min=1)
    logs["event_recall"] = tp / real.clamp(min=1)
    logs.update({f"loss_tr_{k}": v.detach() for k, v in losses.items()})
    logs["loss_tr"] = loss.detach()
    return loss, logs


def with_move_targets(batch: Batch, worlds: tuple[str, ...] = ARENA_WORLDS) -> Batch:
    """``batch`` (rendered arena sequences) with the teacher's ``free_move`` and ``move_outcome``."""
    poses = batch.poses.cpu().numpy()
    bsz, t1, n = poses.shape[:3]
    names = [worlds[int(i)] for i in batch.scenario.cpu()]
    free = np.zeros((bsz, t1 - 1, n, 2), np.float32)
    outcome = np.zeros((bsz, t1 - 1, n), np.int64)
    for name in set(names):
        rows = np.array([i for i, x in enumerate(names) if x == name])
        arena = get_scenario(name).arena_config(num_agents=n)
        acts = batch.actions.cpu().numpy()[rows]
        free[rows], outcome[rows] = move_targets(poses[rows, :-1], poses[rows, 1:], acts, arena)
    dev = batch.poses.device
    return dataclasses.replace(
        batch, free_move=torch.as_tensor(free, device=dev), move_outcome=torch.as_tensor(outcome, device=dev)
    )
