"""`multiworld run`: the main job — simulate agents in a scenario, write a video and a summary."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import sys
import time

import numpy as np
from tqdm import tqdm

from multiworld.world.scenarios import SCENARIOS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a scenario and write a video and a summary", description=__doc__)
    p.add_argument("--backend", default="model", help="model (the shipped checkpoint) or oracle (default: %(default)s)")
    p.add_argument("--runtime", default="local", help="local or ray (default: %(default)s)")
    p.add_argument("--scenario", default="forage-v0", choices=sorted(SCENARIOS))
    p.add_argument("--agents", type=_positive, default=4, help="number of agents, 1-16")
    p.add_argument("--steps", type=_positive, default=200, help="total steps to simulate")
    p.add_argument("--seed", type=_non_negative, default=0, help="world seed of the first episode")
    p.add_argument("--policy", default="random", choices=["random", "scripted"])
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/default"), help="output directory")
    p.add_argument("--store", default=None, help="Zarr store URL to record to (default: OUT/world.zarr)")
    p.add_argument("--no-record", action="store_true", help="do not record the run to a store")
    p.add_argument("--no-frames", action="store_true", help="record states only, not the rendered views")
    p.add_argument("--no-video", action="store_true", help="skip writing the video")
    p.add_argument("--video-format", default="mp4", choices=["mp4", "gif"])
    p.add_argument("--fps", type=_positive, default=15)
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    from multiworld.agents.policies import make_policy
    from multiworld.runtime.factory import make_simulator
    from multiworld.runtime.recording import EpisodeRecorder
    from multiworld.state import WorldStore
    from multiworld.video import VideoWriter
    from multiworld.world.topdown import mosaic

    sim = make_simulator(backend=args.backend, runtime=args.runtime, scenario=args.scenario, num_agents=args.agents)
    policy = make_policy(args.policy, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    video = None if args.no_video else VideoWriter(args.out / f"video.{args.video_format}", fps=args.fps)

    store_url = None if args.no_record else (args.store or str(args.out / "world.zarr"))
    store = None if store_url is None else WorldStore.open(store_url, mode="a")
    config = {"agents": args.agents, "backend": args.backend, "policy": args.policy, "runtime": args.runtime}
    recorder = None
    episodes: list[dict] = []

    def begin(seed: int):
        nonlocal recorder
        obs = sim.reset([seed])
        episodes.append({"seed": seed, "steps": 0, "returns": [0.0] * args.agents, "events": {"push": 0, "pickup": 0}})
        if store is not None:
            existing = set(store.worlds())
            world_id = next(f"ep{i:03d}" for i in range(len(existing) + 1) if f"ep{i:03d}" not in existing)
            recorder = EpisodeRecorder(
                store, world_id, sim, scenario=args.scenario, seed=seed, config=config, frames=not args.no_frames
            )
            recorder.start(obs)
            episodes[-1]["world"] = world_id
        return obs

    seed = args.seed
    start = time.perf_counter()
    try:
        obs = begin(seed)
        for i in tqdm(range(args.steps), desc=f"run {args.scenario}", unit="step"):
            if video is not None:
                video.append(mosaic(obs.rgb[0], sim.top_down()[0]))
            actions = policy.act(sim.world_state())
            obs = sim.step(actions)
            ep = episodes[-1]
            ep["steps"] += 1
            ep["returns"] = [r + float(x) for r, x in zip(ep["returns"], obs.rewards[0])]
            for event in obs.events[0]:
                ep["events"][event["type"]] += 1
            last = i == args.steps - 1
            if recorder is not None:
                recorder.step(obs, actions, truncated=last and not obs.terminated[0])
            if obs.terminated[0] and not last:
                if recorder is not None:
                    recorder.close()
                seed += 1
                obs = begin(seed)
        if video is not None:
            video.append(mosaic(obs.rgb[0], sim.top_down()[0]))
    finally:
        if recorder is not None:
            recorder.close()
        if video is not None:
            video.close()
        sim.close()
    elapsed = time.perf_counter() - start
    summary = {
        "scenario": args.scenario,
        "backend": args.backend,
        "runtime": args.runtime,
        "agents": args.agents,
        "steps": args.steps,
        "policy": args.policy,
        "seed": args.seed,
        "episodes": episodes,
        "seconds": round(elapsed, 3),
        "steps_per_second": round(args.steps / elapsed, 1),
        "video": None if video is None else video.path.name,
        "store": store_url,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    wrote = [str(args.out / "summary.json")] + ([str(video.path)] if video else []) + ([store_url] if store_url else [])
    print("wrote " + ", ".join(wrote))
    if store_url:
        # The command that opens the page on this run's store, as this command was invoked.
        prog = sys.argv[0] if os.path.basename(sys.argv[0]) == "multiworld" else "multiworld"
        print(f"look inside: {shlex.join([prog, 'view', store_url])}")
    print(
        f"episodes: {len(episodes)}, total return: {np.sum([e['returns'] for e in episodes]):.1f}, "
        f"{summary['steps_per_second']} steps/s"
    )
    return 0
