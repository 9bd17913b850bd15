"""One-step batches: the state-update model's motion, events and payouts from true states, fast.

What blocks a move is a small, local function, but a classifier needs thousands of gradient steps
to find it, and a rendered or multi-step batch gives one step per second or more. A one-step batch
is a row of a pool of encoded oracle states: every pool chunk is C fresh worlds of the training
seed block, each walked for a random warm-up by the probe policies (random, scripted,
mostly-forward), rendered once and encoded once by the (frozen) encoder; from each state the oracle
takes K different joint actions, so one encoding serves K transitions. A batch is a chunk, every
world in it with each of its K actions, and runs one state update: losses on the move's outcome and
free move, the pose, events, payouts and endings. Chunks are replaced one at a time as training
goes, so the pool keeps moving over new worlds.

The pool is state the sampler keeps between batches, so unlike the rendered and transition
batches (a function of the data stream's position alone) a resumed one-step run rebuilds its pool
from new worlds rather than continuing the same batches; run it with ``--workers 0`` (the pool and
its cached encodings live in the training process).

This is the first phase of the third edition's recipe (``--preset dynamics``): the encoder, the
renderer and the heads stay as they are (their parameters are frozen by the trainer), so cached
encodings stay valid; the joint phase after it trains everything on rendered and multi-step batches.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from multiworld.models.data import payout_targets, split_payouts
from multiworld.models.dynamics import OWN_VALUES
from multiworld.models.geometry import wrap_angle
from multiworld.models.heads import cell_stack
from multiworld.models.motion import SKIP, heading_action, motion_loss
from multiworld.models.scene_write import cell_loss
from multiworld.models.staging import block_points, place_pushers, poses_facing, stage_agents, stage_boxes
from multiworld.models.transitions import candidate_fits, move_targets, probe_worlds, push_worth, worth_loss
from multiworld.models.world_model import ARENA_WORLDS, scenario_id
from multiworld.world.dynamics import (
    agents_overlap,
    item_in_reach,
    push_possible,
    push_worth_at,
    solid_cells,
    square_free,
)
from multiworld.world.dynamics import step as world_step
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.state import NUM_ACTIONS, Action
from multiworld.world.topdown import top_down


@dataclasses.dataclass
class OneStepConfig:
    chunk: int = 48  # worlds per pool chunk
    actions: int = 8  # joint actions tried from every state (K)
    chunks: int = 24  # chunks in the pool
    refresh: int = 4  # batches between two chunk replacements
    warmup: int = 120  # warm-up steps drawn from [0, warmup]
    agents: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    scenarios: tuple[str, ...] = ARENA_WORLDS
    policy_mix: tuple[float, float, float] = (0.35, 0.3, 0.35)  # random, scripted, mostly-forward
    blocked_weight: float = 2.0  # cross-entropy weight of the outcomes other than the whole move
    event_pos_weight: float = 1.0  # of push and pickup: 1 keeps them calibrated (the pool has plenty)
    # ``motion="fit"``: positions per world where the oracle says whether an agent fits (a quarter
    # anywhere on the map, a quarter near its agents, half at cell edges), and agent offsets for
    # the clash judgement.
    fit_points: int = 384
    reach_points: int = 96  # positions per world for the reach and the push judgements
    # A judged fit where the oracle says no puts an agent into a wall: those count this much more.
    fit_negative_weight: float = 2.0
    # Steps (drawn from [0, evolve]) the model's own state update carries an encoded state before its
    # transitions (poses teacher-forced): the judgements read tokens a free-running rollout wrote.
    evolve: int = 0
    clash_points: int = 512
    # Worlds (with boxes and goals) whose state gets a box staged before or on a goal, and worlds
    # (with items) whose state gets an agent staged a step from an item, facing it
    # (:mod:`multiworld.models.staging`): where the worth and the pickup judgements turn.
    stage: float = 0.5
    stage_pushers: bool = False  # and an agent behind each staged box (staging.place_pushers)


class _Chunk:
    """C encoded-once states of one (scenario, N) and K oracle transitions from each."""

    def __init__(self, name: str, views, maps, poses, out: dict[str, np.ndarray], evolve=None) -> None:
        self.name, self.views, self.maps, self.poses, self.out = name, views, maps, poses, out
        # ``evolve``: (first poses (C, N, 3), actions (W, C, N), oracle poses after each (W, C, N, 3)):
        # the views are of the first state, and the model's own state update carries the scene
        # W steps on, its poses replaced by the oracle's after every step.
        self.evolve = evolve
        self.tokens = None  # (scene, agents), encoded on first use

    def encoded(self, model):
        if self.tokens is None:
            with torch.no_grad():
                use_map = torch.rand(self.poses.shape[0]) < model.cfg.map_fraction
                size = self.out["size"]
                start = self.poses if self.evolve is None else self.evolve[0]
                scene, agents = model.encoder(self.views, start, size, self.maps, use_map)
                if self.evolve is not None:
                    scenario = torch.full((scene.shape[0],), self.out["scenario"], dtype=torch.long)
                    for a, p in zip(self.evolve[1], self.evolve[2], strict=True):
                        scene, agents, _ = model.dynamics(scene, agents, a, scenario)
                        agents = torch.cat([p, agents[..., 3:]], -1)
                self.tokens = scene, agents
        return self.tokens


@dataclasses.dataclass
class OneStepBatch:
    """Every world of a pool chunk with every one of its K joint actions: C x K one-step problems."""

    chunk: _Chunk
    blocked_weight: float = 2.0
    event_pos_weight: float = 1.0
    fit_negative_weight: float = 2.0

    def loss(self, model) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return onestep_loss(model, self)


class OneStepSampler:
    """The pool of encoded states and the sampler of one-step batches (the module docstring)."""

    def __init__(self, cfg: OneStepConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.rng = np.random.Generator(np.random.PCG64([seed, 0x1573]))
        self.renderer = Raycaster(RenderConfig())
        self.pool: list[_Chunk] = []
        self.count = 0

    def _make_chunk(self) -> _Chunk:
        cfg = self.cfg
        sc, arena, state, policy = probe_worlds(
            self.rng, cfg.scenarios, cfg.agents, cfg.chunk, cfg.warmup, cfg.policy_mix
        )
        name = sc.name
        state, staged = stage_boxes(state, arena, self.rng, cfg.stage)
        state = place_pushers(state, staged, arena, self.rng) if cfg.stage_pushers else state
        state = stage_agents(state, arena, self.rng, cfg.stage)
        first, walk = state, []
        for _ in range(int(self.rng.integers(0, cfg.evolve + 1))):  # the model's own scene, W steps on
            a = policy.act(state)
            state, _ = world_step(state, a, arena)
            walk.append((torch.as_tensor(a), torch.as_tensor(state.poses)))
        acts, poses, outcome, free, push, pick, reward, done, fits, worth, cells = ([] for _ in range(11))
        solid = solid_cells(state)
        for _ in range(cfg.actions):
            a = policy.act(state)
            after, ev = world_step(state, a, arena)
            f, o = move_targets(state.poses, after.poses, a, arena)
            fits.append(candidate_fits(state, f, arena))
            worth.append(push_worth(state, ev))
            acts.append(a)
            poses.append(after.poses)
            outcome.append(o)
            free.append(f)
            push.append(ev.pushed >= 0)
            pick.append(ev.picked >= 0)
            reward.append(sc.reward(state, after, ev))
            done.append(sc.terminated(after))
            cells.append(cell_stack(after))
        out = {
            "actions": np.stack(acts, 1),  # (C, K, N)
            "poses": np.stack(poses, 1),  # (C, K, N, 3)
            "outcome": np.stack(outcome, 1),
            "free": np.stack(free, 1),
            "push": np.stack(push, 1),
            "pick": np.stack(pick, 1),
            "reward": np.stack(reward, 1).astype(np.float32),
            "done": np.stack(done, 1),
            "fits": np.stack(fits, 1),  # (C, K, N, 3) whether each candidate of the move fits
            "worth": np.stack(worth, 1),  # (C, K, N) what each push is worth (class on OWN_VALUES)
            "cells": np.stack([cell_stack(state), *cells], 1),  # (C, 1 + K, 5, S, S) heads.CELL_KEYS maps
            **self._fit_points(state, solid, arena.agent_radius),
            **self._reach_points(state, arena, staged),
            "scenario": scenario_id(name),
            "size": state.size,
        }
        views = self.renderer.render(first).rgb.float().div_(255)
        maps = torch.as_tensor(top_down(first)).float().div_(255)
        evolve = None
        if walk:
            evolve = (torch.as_tensor(first.poses), [w[0] for w in walk], [w[1] for w in walk])
        return _Chunk(name, views, maps, torch.as_tensor(state.poses), out, evolve)

    def _fit_points(self, state, solid: np.ndarray, r: float) -> dict[str, np.ndarray]:
        """Labelled positions for the fit judgement ``(C, P, 2)`` and offsets for the clash one ``(Q, 2)``."""
        c, p, size = state.num_worlds, self.cfg.fit_points, state.size
        anywhere = self.rng.uniform(0.25, size - 0.25, size=(c, p // 4, 2))
        who = self.rng.integers(state.num_agents, size=(c, p // 4))
        near = state.poses[np.arange(c)[:, None], who, :2] + self.rng.uniform(-0.6, 0.6, size=(c, p // 4, 2))
        # Half where the answer turns: one coordinate where the agent's square just touches a
        # neighbouring cell's edge (the teacher's radius, give or take 0.04 cells).
        edge = self.rng.uniform(0.25, size - 0.25, size=(c, p - 2 * (p // 4), 2))
        axis, side = self.rng.integers(2, size=edge.shape[:2]), self.rng.integers(2, size=edge.shape[:2])
        at = np.floor(edge[..., 0] * (axis == 0) + edge[..., 1] * (axis == 1)) + np.where(side == 1, 1 - r, r)
        at = at + self.rng.normal(0, 0.04, size=at.shape)
        edge[..., 0] = np.where(axis == 0, at, edge[..., 0])
        edge[..., 1] = np.where(axis == 1, at, edge[..., 1])
        xy = np.clip(np.concatenate([anywhere, near, edge], 1), 0.25, size - 0.25)
        # Half near (where overlaps are decided), half as far as the clash judgement reads (+-2 cells):
        # agents far apart must never clash.
        q = self.cfg.clash_points
        near, far = self.rng.uniform(-1.0, 1.0, (q // 2, 2)), self.rng.uniform(-2.5, 2.5, (q - q // 2, 2))
        offset = np.concatenate([near, far])
        return {
            "fit_xy": xy.astype(np.float32),
            "fit_ok": square_free(solid, xy, r),
            "clash_offset": offset.astype(np.float32),
            "clash": agents_overlap(offset, r),
        }

    def _reach_points(self, state, arena, staged: np.ndarray) -> dict[str, np.ndarray]:
        """Labelled positions ``(C, P, 2)`` for the pickup judgement (half anywhere, half near items,
        alive or taken) and labelled poses ``(C, P, 3)`` with actions for the push judgement."""
        c, p, size = state.num_worlds, self.cfg.reach_points, state.size
        xy = self.rng.uniform(0.25, size - 0.25, size=(c, p, 2))
        k = state.items.shape[1]
        if k:
            who = self.rng.integers(k, size=(c, p // 2))
            centres = state.items[np.arange(c)[:, None], who][..., ::-1] + 0.5
            xy[:, p // 2 :] = centres + self.rng.uniform(-0.7, 0.7, size=(c, p // 2, 2))
        out = {"reach_xy": xy.astype(np.float32), "reach": item_in_reach(state, xy, arena)}
        # The push judgement: poses anywhere (a quarter), near boxes with any heading (a quarter),
        # and half where the answer turns: in a cell beside a box, heading within 70 degrees of it
        # (the front cell changes at 45), mostly INTERACT.
        poses = np.concatenate(
            [self.rng.uniform(0.25, size - 0.25, (c, p, 2)), self.rng.uniform(-np.pi, np.pi, (c, p, 1))], -1
        )
        m = state.boxes.shape[1]
        if m:
            q, h = p // 4, p // 2
            rows = np.arange(c)[:, None]
            centres = state.boxes[rows, self.rng.integers(m, size=(c, h - q))][..., ::-1] + 0.5
            poses[:, q:h, :2] = centres + self.rng.uniform(-1.6, 1.6, centres.shape)
            box = state.boxes[rows, self.rng.integers(m, size=(c, p - h))][..., ::-1]  # (x, y) cells
            poses[:, h:] = poses_facing(box, self.rng.integers(4, size=(c, p - h)), np.ones((c, p - h)), self.rng)
        act = np.where(self.rng.random((c, p)) < 0.75, int(Action.INTERACT), self.rng.integers(0, NUM_ACTIONS, (c, p)))
        # What a push is worth (``payout="judge"``): the push poses, and as many where the answer
        # may not be 0: behind a staged box facing its goal (half, where one was staged) and one or
        # two cells before a goal facing it. The label is what the push pays, 0 where none is possible.
        worth_pose = np.concatenate([poses, poses], 1)
        for w in range(c):
            goals = np.argwhere(state.goals[w])[:, ::-1]  # (G, 2) (x, y) cells
            if len(goals):
                g = goals[self.rng.integers(len(goals), size=p)]
                worth_pose[w, p:] = poses_facing(g, self.rng.integers(4, size=p), self.rng.integers(1, 3, p), self.rng)
            if staged[w, 0] >= 0:
                cell, side = np.broadcast_to(staged[w, :2], (p // 2, 2)), np.full(p // 2, staged[w, 2])
                worth_pose[w, p + p // 2 :] = poses_facing(cell, side, np.ones(p // 2), self.rng)
        for pz in (poses, worth_pose):
            pz[..., :2] = np.clip(pz[..., :2], 0.25, size - 0.25)
        out.update(
            **block_points(self.rng, self.cfg.clash_points, size, arena),
            push_pose=poses.astype(np.float32),
            push_action=act,
            push_ok=push_possible(state, poses, arena) & (act == Action.INTERACT),
            worth_pose=worth_pose.astype(np.float32),
            worth_at=push_worth_at(state, worth_pose) * push_possible(state, worth_pose, arena)
            - int(OWN_VALUES[0]),  # class on OWN_VALUES
        )
        return out

    def sample(self) -> OneStepBatch:
        cfg = self.cfg
        self.count += 1
        if len(self.pool) < cfg.chunks:
            self.pool.append(self._make_chunk())
            chunk = self.pool[-1]
        else:
            if self.count % cfg.refresh == 0:
                self.pool[int(self.rng.integers(len(self.pool)))] = self._make_chunk()
            chunk = self.pool[int(self.rng.integers(len(self.pool)))]
        return OneStepBatch(chunk, cfg.blocked_weight, cfg.event_pos_weight, cfg.fit_negative_weight)


def _outcome(out: dict[str, torch.Tensor]) -> torch.Tensor:
    return out["outcome"] if "outcome" in out else out["move_logits"].argmax(-1)


def _gated_loss(out, outcome, free, pose_weight: float, blocked_weight: float) -> torch.Tensor:
    """The gated motion's outcome classes, those other than the whole move weighted ``blocked_weight``."""
    w = torch.full((out["move_logits"].shape[-1],), blocked_weight, device=free.device)
    w[0] = 1.0
    return motion_loss(out, outcome, free, pose_weight, class_weight=w)


def _fit_loss(model, batch: OneStepBatch, scene: torch.Tensor, out, free: torch.Tensor) -> torch.Tensor:
    """The fit motion: whether each candidate of every move fits, at the teacher's candidates; fit
    at the labelled positions of every world; clash at the labelled offsets; and the free move."""
    fitter, o = model.dynamics.fitter, batch.chunk.out
    k = o["actions"].shape[1]
    t = lambda key: torch.as_tensor(np.ascontiguousarray(o[key]))  # noqa: E731
    xy = torch.as_tensor(batch.chunk.poses)[..., :2].repeat_interleave(k, 0)  # (C * K, N, 2)
    cand = fitter.candidate_loss(scene, xy, free, t("fits").flatten(0, 1))
    moving = (free[:, :, None] * fitter.masks).abs().amax(-1) > SKIP
    bce = F.binary_cross_entropy_with_logits
    worlds = scene[::k]  # one row per chunk world (the rows repeat each world K times)
    dense = fitter.fit(worlds, t("fit_xy"))
    clash = fitter.clash(t("clash_offset"))
    return (
        cand.sum() / moving.sum().clamp(min=1)
        + bce(dense, t("fit_ok").float(), weight=1 + (batch.fit_negative_weight - 1) * (~t("fit_ok")).float())
        + bce(clash, t("clash").float())
        + (out["free_move"] - free).abs().sum(-1).mean() * model.cfg.pose_weight
    )


def _own_payout_loss(out, own: torch.Tensor, events: torch.Tensor, weight: torch.Tensor, gated: bool) -> torch.Tensor:
    """Cross-entropy of the own payout classes. ``gated`` (``payout="local"`` or ``"judge"``): only over the agents
    whose push or pickup happened (``events`` (B, N) > 0), the only ones it is paid for: what an
    event is worth, not how likely one is (the event judgements say that)."""
    ce = F.cross_entropy(out["own_logits"].flatten(0, 1), own.flatten(), weight=weight, reduction="none")
    if not gated:
        return ce.sum() / weight[own.flatten()].sum()  # F.cross_entropy's weighted mean
    mask = (events > 0).flatten().float()
    return (ce * mask).sum() / mask.sum().clamp(min=1)


def onestep_loss(model, batch: OneStepBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One state update from every encoded state with its chosen action; losses: the model's ``scales()``."""
    cfg = model.cfg
    scene, agents = batch.chunk.encoded(model)
    o = batch.chunk.out
    k_actions = o["actions"].shape[1]
    scene, agents = scene.repeat_interleave(k_actions, 0), agents.repeat_interleave(k_actions, 0)
    pick_ = lambda k: torch.as_tensor(np.ascontiguousarray(o[k])).flatten(0, 1)  # noqa: E731  (C * K, ...)
    actions, poses, outcome, free = pick_("actions"), pick_("poses"), pick_("outcome"), pick_("free")
    push, pick, reward, done = pick_("push").float(), pick_("pick").float(), pick_("reward"), pick_("done").float()
    scenario = torch.full((actions.shape[0],), o["scenario"], dtype=torch.long)
    scene, agents = model._perturb(scene, agents)
    new_scene, new_agents, out = model.dynamics(scene, agents, actions, scenario)
    dev = new_agents.device
    err_xy = (new_agents[..., :2] - poses[..., :2]).abs()
    err_h = wrap_angle(new_agents[..., 2] - poses[..., 2]).abs()
    pos_weight = torch.tensor(batch.event_pos_weight, device=dev)
    own_w = torch.tensor([cfg.event_pos_weight, 1.0, cfg.event_pos_weight], device=dev)
    shared_w = torch.tensor([cfg.event_pos_weight] * 2 + [1.0] + [cfg.event_pos_weight] * 2, device=dev)
    local = cfg.dynamics.payout != "pooled"  # the shared payout is the sum of what the pushes are worth
    targets = split_payouts(reward, pick_("worth"), push) if local else payout_targets(reward)
    losses = {
        "motion": _fit_loss(model, batch, scene, out, free)
        if "fit_logits" in out
        else _gated_loss(out, outcome, free, cfg.pose_weight, batch.blocked_weight),
        "pose": (err_xy.sum(-1) / 2 + err_h).mean(),
        "events": F.binary_cross_entropy_with_logits(out["push"], push, pos_weight=pos_weight)
        + F.binary_cross_entropy_with_logits(out["pick"], pick, pos_weight=pos_weight)
        + F.binary_cross_entropy_with_logits(out["done_logit"], done),
        "payout": _own_payout_loss(out, targets["own_payout"], push + pick, own_w, local)
        + F.cross_entropy(out["shared_logits"], targets["shared_payout"], weight=shared_w),
    }
    if model.cfg.dynamics.pickup == "reach":  # the pickup judgement at labelled positions
        reach = model.dynamics.judge("reach", scene[::k_actions], torch.as_tensor(o["reach_xy"]))
        reached = torch.as_tensor(o["reach"]).float()
        losses["events"] = losses["events"] + F.binary_cross_entropy_with_logits(reach, reached)
    if model.cfg.dynamics.push == "judge":  # the push judgement at labelled poses and actions
        pose, act = torch.as_tensor(o["push_pose"]), torch.as_tensor(o["push_action"])
        ha = heading_action(pose[..., 2], act)
        judged = model.dynamics.judge("push_judge", scene[::k_actions], pose[..., :2], ha)
        losses["events"] = losses["events"] + F.binary_cross_entropy_with_logits(
            judged, torch.as_tensor(o["push_ok"]).float()
        )
    if getattr(model.dynamics, "push_block", None) is not None:  # another agent in the box's way
        blocks = model.dynamics.push_block.judge(torch.as_tensor(o["block_pose"]), torch.as_tensor(o["block_xy"]))
        losses["events"] = losses["events"] + F.binary_cross_entropy_with_logits(
            blocks, torch.as_tensor(o["block"]).float()
        )
    if "contrib_logits" in out:
        losses["payout"] = losses["payout"] + worth_loss(out["contrib_logits"], pick_("worth"), push)
    if model.cfg.dynamics.payout == "judge":  # what a push is worth at labelled poses
        pose = torch.as_tensor(o["worth_pose"])
        interact = torch.full(pose.shape[:2], int(Action.INTERACT))
        ha = heading_action(pose[..., 2], interact)
        judged = model.dynamics.judge("worth_judge", scene[::k_actions], pose[..., :2], ha, heading=pose[..., 2])
        losses["payout"] = losses["payout"] + F.cross_entropy(
            judged.flatten(0, 1), torch.as_tensor(o["worth_at"]).flatten()
        )
    if cfg.dynamics.push_message or cfg.dynamics.pick_write:  # boxes and items where the oracle has them
        losses["scene"] = cell_loss(model, new_scene, o["cells"])
    scales = model.scales()
    loss = sum(scales[k] * v for k, v in losses.items())
    with torch.no_grad():
        ok = (err_xy.amax(-1) < 0.05) & (err_h < 0.02)
        blocked = outcome > 0
        fired, real = (out["push"] > 0) | (out["pick"] > 0), (push + pick) > 0
        logs = {
            "os_move_ok": ok.float().mean(),
            "os_blocked_ok": (ok & blocked).float().sum() / blocked.float().sum().clamp(min=1),
            "os_outcome_acc": (_outcome(out) == outcome).float().mean(),
            "os_event_tp": (fired & real).float().sum(),
            "os_event_fired": fired.float().sum(),
            "os_event_real": real.float().sum(),
        }
    logs.update({f"loss_os_{k}": v.detach() for k, v in losses.items()})
    logs["loss_os"] = loss.detach()
    return loss, logs
