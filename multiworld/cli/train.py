"""`multiworld train`: train the world model on oracle rollouts from `multiworld data`, or on
recordings of any env (`multiworld data --env`): then the grid, camera and actions come from the
recording's metadata, and the last tenth of its episodes (at least one) validates."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import shutil
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the learned world model", description=__doc__)
    p.add_argument("--preset", default="default", help="tiny or default (default: %(default)s)")
    p.add_argument(
        "--data", type=pathlib.Path, nargs="+", required=True, help="one or more stores written by `multiworld data`"
    )
    p.add_argument("--out", type=pathlib.Path, required=True, help="run directory (checkpoints, log.jsonl)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget (default: the preset's)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.add_argument(
        "--horizon", type=int, default=None, help="free-running steps per training window (default: the preset's)"
    )
    p.add_argument(
        "--event-boost",
        type=float,
        default=None,
        help="windows holding a push or pickup are drawn 1 + this many times as often (default: the preset's)",
    )
    p.add_argument(
        "--private-state",
        action="store_true",
        help="train the private-state baseline: the model sees only one agent's action per transition "
        "(the others read NOOP), as a single-agent world model run once per agent would",
    )
    p.add_argument(
        "--stacked-frames",
        action="store_true",
        help="train the stacked-frames baseline instead (no state: every agent's next frame from all "
        "agents' last frames, poses and the joint actions; multiworld.models.stacked)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--init-from",
        type=pathlib.Path,
        default=None,
        help="start from the weights of this checkpoint directory: every tensor whose name and shape "
        "match is copied, the rest starts fresh (the model card records the chain)",
    )
    p.add_argument(
        "--payouts-only",
        action="store_true",
        help="no training: read the payout classes each scenario's --data pays into the --init-from "
        "checkpoint (every other tensor unchanged) and write it to --out",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to log.jsonl)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from multiworld.models.checkpoint import load_checkpoint, save_checkpoint
    from multiworld.models.data import (
        SequenceBatcher,
        data_payouts_seen,
        load_sequences,
        make_sequences,
        scenario_rewards,
    )
    from multiworld.models.presets import get_preset
    from multiworld.models.recorded import RecordingBatcher, is_recorded, load_recorded, model_fields
    from multiworld.models.stacked import StackedFramesModel
    from multiworld.models.trainer import Trainer
    from multiworld.models.world_model import WorldModel, scenario_id
    from multiworld.seeds import validation_seeds

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    preset = get_preset(args.preset)
    tcfg = preset.train
    if args.minutes is not None:
        tcfg.minutes = args.minutes
    if args.max_steps is not None:
        tcfg.max_steps = args.max_steps
    if args.stacked_frames:
        if preset.stacked_lr is not None:
            tcfg.lr = preset.stacked_lr
        if preset.stacked_horizon is not None:
            tcfg.horizon = preset.stacked_horizon
        if preset.stacked_event_boost is not None:
            tcfg.event_boost = preset.stacked_event_boost
    if args.lr is not None:
        if not args.lr > 0:
            raise ValueError(f"--lr must be positive, got {args.lr}")
        tcfg.lr = args.lr
    if args.horizon is not None:
        if args.horizon < 1:
            raise ValueError(f"--horizon must be >= 1, got {args.horizon}")
        tcfg.horizon = args.horizon
    if args.event_boost is not None:
        if not args.event_boost >= 0:
            raise ValueError(f"--event-boost must be >= 0, got {args.event_boost}")
        tcfg.event_boost = args.event_boost
    tcfg.seed = args.seed
    out = args.out
    if out.exists() and (out / "last").exists() and not args.resume:
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")

    if args.private_state and args.stacked_frames:
        raise ValueError("--private-state and --stacked-frames are different baselines; choose one")
    private, stacked = args.private_state, args.stacked_frames
    kinds = {is_recorded(p) for p in args.data}
    if len(kinds) > 1:
        raise ValueError("--data mixes arena stores and recordings of another env; train on one kind")
    if kinds == {True}:  # a recorded world: everything world-specific comes from its metadata
        if private:
            raise ValueError("--private-state needs the arena's data (its NOOP action); train it on `multiworld data`")
        recorded = load_recorded(args.data)
        train_rs, val_rs = recorded.split(max(1, len(recorded.lengths) // 10))
        fields = model_fields(recorded)
        preset.model.camera, preset.model.worlds = fields["camera"], fields["worlds"]
        preset.model.dynamics.actions = preset.stacked.actions = fields["actions"]
        preset.stacked.worlds, preset.stacked.image = fields["worlds"], fields["camera"]["width"]
        batcher = RecordingBatcher(train_rs, tcfg.batch_size, tcfg.horizon, seed=args.seed)
        val = RecordingBatcher(val_rs, 4, tcfg.horizon, seed=12345)
        data_info = {
            "world": recorded.world,
            "episodes": len(train_rs.lengths),
            "transitions": int((train_rs.lengths - 1).sum()),
            "validation_seeds": val_rs.seeds,
        }
    else:
        sets = load_sequences(args.data)
        batcher = SequenceBatcher(
            sets,
            tcfg.batch_size,
            tcfg.horizon,
            seed=args.seed,
            private_state=private,
            event_boost=tcfg.event_boost,
            unusual_events=not stacked and preset.model.unusual_weight > 0,
        )
        # Held-out worlds (seeds far from the data's) for validation, made on the fly by the oracle.
        val_sets = [
            make_sequences(s.scenario, s.arena.num_agents, 4, tcfg.horizon + 4, seed=validation_seeds(4, 1000 * i)[0])
            for i, s in enumerate(sets)
        ]
        val = SequenceBatcher(val_sets, 4, tcfg.horizon, seed=12345, private_state=private)
        if preset.transitions.every and not (stacked or private):
            from multiworld.models.transitions import MixedSampler, TransitionSampler

            transitions = TransitionSampler(preset.transitions, seed=args.seed)
            batcher = MixedSampler(batcher, transitions, preset.transitions.every)
        data_info = {
            "episodes": int(sum(len(s.lengths) for s in sets)),
            "transitions": int(sum(int((s.lengths - 1).sum()) for s in sets)),
        }
    model = StackedFramesModel(preset.stacked) if stacked else WorldModel(preset.model)
    warm = warm_start(model, args.init_from) if args.init_from is not None and not args.resume else None
    if not stacked:  # the payout classes each scenario's data pays: the only ones the model pays
        rewards = (
            [(0, recorded.rewards)]
            if kinds == {True}
            else [(scenario_id(s.scenario), scenario_rewards(s)) for s in sets]
        )
        model.dynamics.payouts_seen.copy_(data_payouts_seen(rewards, preset.model.dynamics.scenarios))
        data_info["payouts_seen"] = model.dynamics.payouts_seen.int().tolist()
    if args.payouts_only:
        return _write_payouts_only(args, model, warm, data_info)
    val_batches = [val.sample() for _ in range(2)]
    info = {
        "command": _command_line(),
        "preset": args.preset,
        "private_state": private,
        "stacked_frames": stacked,
        "data": [str(p) for p in args.data],
        "init_from": None if warm is None else warm,
        **data_info,
        "train": dataclasses.asdict(tcfg),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__},
    }

    def save(m, path, metrics):
        save_checkpoint(m, path, metrics, extra={"training": info})

    def load_weights(m, path):
        m.load_state_dict(load_checkpoint(path).state_dict())

    def evaluate(m) -> dict:
        state = torch.get_rng_state()
        torch.manual_seed(0)
        logs = [m(b)[1] for b in val_batches]
        torch.set_rng_state(state)
        first = "first_psnr" if stacked else "render_psnr"
        keys = (first, "roll_psnr", "pose_err", "move_ok", "push_acc", "pick_acc")
        keys += () if stacked else ("cell_acc", "roll_cell_acc")
        keys += () if stacked else ("reward_err", "unusual_ok")
        out_ = {k: round(sum(float(x[k]) for x in logs) / len(logs), 5) for k in keys}
        out_["score"] = round((out_[first] + out_["roll_psnr"]) / 2 - 20 * out_["pose_err"], 4)
        return out_

    trainer = Trainer(model, batcher.sample, tcfg, out, save, evaluate, progress=not args.no_progress)
    if args.resume and trainer.load_state(load_weights):
        print(f"resumed {out} at step {trainer.step} ({trainer.elapsed / 60:.1f} min)")
    else:
        if stacked:  # the `mean` bound of the benchmarks: the training data's mean frame
            model.mean_frame.copy_(mean_frame(batcher))
        (out / "run.json").write_text(json.dumps(info, indent=2))
    summary = trainer.run()
    # The run's shippable checkpoint is the best one by validation score, copied to the run's root.
    best = out / "best" if (out / "best").exists() else out / "last"
    for name in ("model.safetensors", "config.json", "metrics.json"):
        if (best / name).exists():
            shutil.copy2(best / name, out / name)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"trained {summary['step']} steps in {summary['elapsed_seconds'] / 60:.1f} min; checkpoint in {out}")
    return 0


def _command_line() -> str | None:
    """The ``multiworld ...`` command this process runs, when it runs one (recorded with a checkpoint)."""
    return "multiworld " + " ".join(sys.argv[1:]) if sys.argv and "multiworld" in sys.argv[0] else None


def _write_payouts_only(args: argparse.Namespace, model, warm: dict | None, data_info: dict) -> int:
    """``--payouts-only``: the --init-from checkpoint with the payout classes of --data, written to --out."""
    from multiworld.models.checkpoint import read_config, save_checkpoint

    if warm is None or args.stacked_frames:
        raise ValueError("--payouts-only needs --init-from with a world-model checkpoint (not --stacked-frames)")
    if set(warm["fresh"]) - {"dynamics.payouts_seen"}:  # absent before the classes were read off data
        raise ValueError(
            f"--payouts-only: --init-from {args.init_from} does not fit the model: {warm['fresh']} start fresh"
        )
    source = read_config(args.init_from)
    extra = {k: v for k, v in source.items() if k not in ("format", "format_version", "weights_sha256", "model")}
    extra["payouts"] = {
        "command": _command_line(),
        "from_weights_sha256": source["weights_sha256"],
        "data": [str(p) for p in args.data],
        "payouts_seen": data_info["payouts_seen"],
    }
    metrics_path = args.init_from / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
    digest = save_checkpoint(model, args.out, metrics, extra=extra)
    print(
        f"wrote {args.out} (weights sha256 {digest[:12]}...; payout classes per scenario {data_info['payouts_seen']})"
    )
    return 0


def warm_start(model, path: pathlib.Path) -> dict:
    """Copy into ``model`` every tensor of the checkpoint at ``path`` whose name and shape match;
    returns what was copied and what started fresh (recorded in run.json)."""
    from safetensors.torch import load_file

    from multiworld.models.checkpoint import read_config, sha256_file
    from multiworld.models.stacked import KIND as STACKED_KIND
    from multiworld.models.stacked import StackedFramesModel

    config = read_config(path)
    if sha256_file(path / "model.safetensors") != config.get("weights_sha256"):
        raise ValueError(f"--init-from {path}: model.safetensors does not match its config.json")
    if (config["model"].get("kind") == STACKED_KIND) != isinstance(model, StackedFramesModel):
        raise ValueError(f"--init-from {path}: a stacked-frames and a latent world model do not share weights")
    tensors = load_file(str(path / "model.safetensors"))
    own = model.state_dict()
    copied = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(copied, strict=False)
    fresh = sorted(k for k in own if k not in copied)
    return {
        "checkpoint": str(path),
        "weights_sha256": config["weights_sha256"],
        "copied": len(copied),
        "fresh": fresh,
    }


def mean_frame(batcher, batches: int = 32):
    """The mean view (H, W, 3) in [0, 1] over ``batches`` batches of the training sequences."""
    total, count = 0.0, 0
    for _ in range(batches):
        views = batcher.sample()["views"]
        total = total + views.sum(dim=(0, 1, 2))
        count += views.shape[0] * views.shape[1] * views.shape[2]
    return (total / count).float()
