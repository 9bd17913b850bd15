"""Validation for checkpoint selection: held-out worlds of every set the model trains on.

Arena data: for every (scenario, agent count) set of the training data, ``worlds`` worlds of the
validation seed block (:func:`multiworld.seeds.validation_world_seeds`: no benchmark, probe or
policy evaluation draws from it), run by the oracle with the data's policy mix for two windows
each; recordings of another world: the held-out episodes, windows spread evenly over them. The
windows are fixed, so two evaluations differ only by the model.

The score is minus the training objective on these windows, averaged over the sets with equal
weight (a rare set counts as much as a common one), with the model's noise fixed. So it weighs
what the objective weighs: the views, and the dynamics (poses, blocked moves), events, payouts
and endings, not the view PSNR alone. Per-set metrics are reported beside it (``sets``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from multiworld.models.stream import to_device

WORLDS = 4  # held-out worlds per (scenario, agent count)
WINDOWS = 2  # windows per world (at steps 0 and horizon)


@dataclasses.dataclass
class ValidationSet:
    """The fixed validation batches of one (scenario, agent count) set, on the CPU."""

    name: str  # e.g. "forage-v0_n4"
    seeds: list[int]
    batches: list


def arena_sets(
    sets, horizon: int, private_state: bool, typical: np.ndarray, prepare=None, worlds: int = WORLDS
) -> list[ValidationSet]:
    """A :class:`ValidationSet` per training set (:class:`~multiworld.models.data.SequenceSet`)."""
    from multiworld.models.data import SequenceBatcher, make_sequences
    from multiworld.seeds import validation_world_seeds

    out = []
    for ss in sets:
        n = ss.arena.num_agents
        seeds = validation_world_seeds(n, worlds)
        vs = make_sequences(ss.scenario, n, worlds, WINDOWS * horizon, seed=seeds[0])
        rows = np.array([o + k * horizon for o in vs.offsets for k in range(WINDOWS)])
        batcher = SequenceBatcher([vs], len(rows), horizon, private_state=private_state, typical=typical)
        batch = batcher.batch(vs, rows, np.random.Generator(np.random.PCG64(0)))
        out.append(ValidationSet(f"{ss.scenario}_n{n}", seeds, [batch if prepare is None else prepare(batch)]))
    return out


def recorded_sets(rs, horizon: int, windows: int = WORLDS * WINDOWS) -> list[ValidationSet]:
    """One :class:`ValidationSet` of held-out recorded episodes (:class:`~multiworld.models.recorded.RecordedSet`),
    ``windows`` windows spread evenly over all their starts."""
    from multiworld.models.recorded import RecordingBatcher

    batcher = RecordingBatcher(rs, windows, horizon)
    starts = batcher.start_rows
    rows = starts[np.linspace(0, len(starts) - 1, min(windows, len(starts))).round().astype(int)]
    return [ValidationSet(f"{rs.world}_n{rs.num_agents}", list(rs.seeds), [batcher.batch(rows)])]


def evaluate(model: torch.nn.Module, sets: list[ValidationSet]) -> dict:
    """Every scalar the model's ``forward`` logs, per set (``sets``) and averaged over the sets,
    and ``score`` (minus the mean objective; higher is better). The model's noise is drawn from a
    fixed seed and the caller's RNG states are left as they were."""
    dev = next(model.parameters()).device
    per: dict[str, dict[str, float]] = {}
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(0)
        for vs in sets:
            logs = [model(to_device(b, dev))[1] for b in vs.batches]
            keys = [k for k, v in logs[0].items() if _scalar(v)]
            per[vs.name] = {k: round(float(np.mean([float(x[k]) for x in logs])), 5) for k in keys}
    keys = sorted(set.intersection(*(set(m) for m in per.values())))
    mean = {k: round(float(np.mean([m[k] for m in per.values()])), 5) for k in keys}
    if "loss" not in mean:
        raise KeyError("the model's forward logs no 'loss'; the validation score is minus the mean objective")
    return {**mean, "score": round(-mean["loss"], 5), "sets": per}


def _scalar(v) -> bool:
    return (torch.is_tensor(v) and v.numel() == 1) or (isinstance(v, (int, float)) and not isinstance(v, bool))
