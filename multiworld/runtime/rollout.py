"""Distributed rollouts: many envs across a Ray cluster, every world recorded to one store.

A :class:`RolloutWorker` is a Ray actor built from a :class:`RolloutConfig` (a picklable
dataclass): it makes its own simulator (``envs_per_worker`` worlds batched in one local
simulator), its own policy and an EpisodeRecorder per world, and runs batches of episodes. Episode
``k`` is world ``f"{world_prefix}ep{k:05d}"`` of the store, seeded with ``seed + k``; each
world has one writer (the worker running it), so workers never write the same array.

The driver (:func:`run_rollout`) hands batches to idle workers. A worker that dies is
replaced by a new actor and its batch is run again from scratch (the partial worlds are
deleted first; seeds make the rerun identical); the summary counts these failures and retries.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from typing import Any

import numpy as np

from multiworld.runtime.ray_options import connect

COMMIT_EVERY = 16  # steps per store commit (one commit marker write per 16 rows)


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """What to roll out and where to record it (``out``: a store path or fsspec URL)."""

    out: str
    storage_options: dict | None = None  # fsspec options of ``out`` (e.g. an s3 endpoint_url, key, secret)
    episodes: int = 4
    workers: int = 1
    envs_per_worker: int = 1
    policy: str = "random"
    backend: str = "oracle"
    scenario: str = "forage-v0"
    agents: int = 4
    max_cycles: int = 100
    seed: int = 0
    height: int = 64
    width: int = 64
    record_frames: bool = True
    world_prefix: str = ""
    checkpoint: str | None = None  # model backend: the checkpoint directory (default: the shipped one)
    max_retries: int = 3
    num_cpus_per_worker: float = 1.0
    crash_at: tuple[int, int] | None = None  # test hook: (episode, step) where the first attempt SIGKILLs itself
    # Test hook: (node id, step, directory): the first attempt of every batch run on that node
    # writes ``holding-<node id>`` in the directory at that step and waits until ``release``
    # appears there (so a node can be removed while its worker is mid-episode).
    hold_at: tuple[str, int, str] | None = None

    def validate(self) -> RolloutConfig:
        from multiworld.agents.policies import POLICIES
        from multiworld.runtime.factory import check_names, positive_int
        from multiworld.world.scenarios import get_scenario

        for name in ("episodes", "workers", "envs_per_worker", "agents", "max_cycles"):
            positive_int(name, getattr(self, name))
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; valid policies: {sorted(POLICIES)}")
        check_names(self.backend, "local")
        get_scenario(self.scenario)
        if not self.out:
            raise ValueError("out (the store to record to) is required")
        if self.max_retries < 0 or self.num_cpus_per_worker < 0:
            raise ValueError("max_retries and num_cpus_per_worker must be >= 0")
        return self


def world_id(cfg: RolloutConfig, episode: int) -> str:
    return f"{cfg.world_prefix}ep{episode:05d}"


class RolloutWorker:
    """Runs batches of episodes with a local simulator and records them (a Ray actor)."""

    def __init__(self, cfg: RolloutConfig) -> None:
        import torch

        torch.set_num_threads(1)
        from multiworld.state import WorldStore

        self.cfg = cfg
        self.store = WorldStore.open(cfg.out, "a", storage_options=cfg.storage_options)
        self._sims: dict[int, Any] = {}

    def info(self) -> dict:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "pid": os.getpid()}

    def _simulator(self, num_worlds: int):
        from multiworld.runtime.factory import make_simulator
        from multiworld.world.render import RenderConfig

        if num_worlds not in self._sims:
            cfg = self.cfg
            render = RenderConfig(height=cfg.height, width=cfg.width)
            extra = {"checkpoint": cfg.checkpoint} if cfg.backend == "model" else {}
            self._sims[num_worlds] = make_simulator(
                cfg.backend, "local", cfg.scenario, num_agents=cfg.agents, num_worlds=num_worlds, render=render, **extra
            )
        return self._sims[num_worlds]

    def run(self, episodes: list[int], attempt: int = 0) -> list[dict]:
        """Run ``episodes`` as one batch of worlds until each terminates or reaches ``max_cycles``."""
        from multiworld.agents.policies import make_policy
        from multiworld.runtime.recording import EpisodeRecorder

        cfg, store = self.cfg, self.store
        t0 = time.perf_counter()
        sim = self._simulator(len(episodes))
        obs = sim.reset([cfg.seed + k for k in episodes])
        policy = make_policy(cfg.policy, seed=cfg.seed * 1_000_003 + episodes[0])
        config = {"backend": cfg.backend, "policy": cfg.policy, "height": cfg.height, "width": cfg.width}
        recorders = []
        for b, k in enumerate(episodes):
            wid = world_id(cfg, k)
            if wid in store:
                store.delete_world(wid)  # debris of a failed attempt
            rec = EpisodeRecorder(
                store, wid, sim, cfg.scenario, cfg.seed + k, config, b, cfg.record_frames, COMMIT_EVERY
            )
            rec.start(obs)
            recorders.append(rec)
        alive = np.ones(len(episodes), bool)
        steps = np.zeros(len(episodes), np.int64)
        returns = np.zeros(len(episodes), np.float64)
        for t in range(1, cfg.max_cycles + 1):
            if cfg.crash_at is not None and attempt == 0 and cfg.crash_at == (episodes[0], t):
                os.kill(os.getpid(), 9)
            if cfg.hold_at is not None and attempt == 0 and cfg.hold_at[:2] == (self.info()["node_id"], t):
                _hold(cfg.hold_at[2], cfg.hold_at[0])
            actions = policy.act(sim.world_state())
            obs = sim.step(actions)
            for b in np.flatnonzero(alive):
                done = bool(obs.terminated[b])
                recorders[b].step(obs, actions, truncated=t == cfg.max_cycles and not done)
                steps[b] = t
                returns[b] += float(obs.rewards[b].sum())
                if done:
                    alive[b] = False
                    recorders[b].close()
            if not alive.any():
                break
        for rec in recorders:
            rec.close()
        seconds = time.perf_counter() - t0
        info = self.info()
        return [
            {
                "episode": k,
                "world_id": world_id(cfg, k),
                "steps": int(steps[b]),
                "return": returns[b],
                "seconds": seconds,
            }
            | info
            for b, k in enumerate(episodes)
        ]


def run_rollout(cfg: RolloutConfig, address: str | None = "local", progress: bool = True) -> dict:
    """Run ``cfg.episodes`` episodes on ``cfg.workers`` workers; returns the summary (see :func:`summarize`).

    ``seconds`` (and agent-frames/s) count from the moment every worker is up; ``startup_seconds``
    is the time the workers took to start (import torch, open the store)."""
    from multiworld.state import WorldStore

    cfg.validate()
    connect(address)
    import ray
    from ray.exceptions import RayActorError

    WorldStore.open(
        cfg.out, "a", storage_options=cfg.storage_options
    ).close()  # create the store once, before workers race to
    # Spread over the nodes: a lost node takes as few workers as it can with it.
    remote = ray.remote(RolloutWorker).options(
        num_cpus=cfg.num_cpus_per_worker, max_restarts=0, scheduling_strategy="SPREAD"
    )
    e = cfg.envs_per_worker
    pending = [(list(range(i, min(i + e, cfg.episodes))), 0) for i in range(0, cfg.episodes, e)]
    t_start = time.perf_counter()
    workers = [remote.remote(cfg) for _ in range(min(cfg.workers, len(pending)))]
    ray.get([w.info.remote() for w in workers])  # started (torch imported, store open): time the work from here
    startup = time.perf_counter() - t_start
    idle = list(range(len(workers)))
    inflight: dict[Any, tuple[int, list[int], int]] = {}
    results: list[dict] = []
    failed: list[int] = []
    failures = retries = 0
    bar = _progress(cfg.episodes, progress)
    t0 = time.perf_counter()
    try:
        while pending or inflight:
            while pending and idle:
                slot = idle.pop()
                batch, attempt = pending.pop(0)
                inflight[workers[slot].run.remote(batch, attempt)] = (slot, batch, attempt)
            done, _ = ray.wait(list(inflight), num_returns=1)
            slot, batch, attempt = inflight.pop(done[0])
            try:
                out = ray.get(done[0])
            except RayActorError:
                failures += 1
                ray.kill(workers[slot])
                workers[slot] = remote.remote(cfg)  # the replacement
                if attempt < cfg.max_retries:
                    retries += 1
                    pending.insert(0, (batch, attempt + 1))
                else:
                    failed.extend(batch)
                    bar.update(len(batch))
            else:
                results.extend(out)
                bar.update(len(out))
            idle.append(slot)
    finally:
        bar.close()
        for w in workers:
            ray.kill(w)
    seconds = time.perf_counter() - t0
    return summarize(cfg, results, failed, failures, retries, seconds) | {"startup_seconds": round(startup, 3)}


def summarize(cfg: RolloutConfig, results: list[dict], failed: list[int], failures: int, retries: int, seconds: float):
    steps = sum(r["steps"] for r in results)
    frames = (steps + len(results)) * cfg.agents  # views rendered, reset views included
    nodes: dict[str, int] = {}
    for r in results:
        nodes[r["node_id"]] = nodes.get(r["node_id"], 0) + 1
    return {
        "episodes": len(results),
        "failed_episodes": sorted(failed),
        "steps": steps,
        "agent_frames": frames,
        "seconds": round(seconds, 3),
        "agent_frames_per_s": round(frames / seconds, 1) if seconds > 0 else None,
        "failures": failures,
        "retries": retries,
        "nodes": nodes,
        "config": {
            k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("crash_at", "hold_at", "storage_options")
        },
        "results": sorted(results, key=lambda r: r["episode"]),
    }


def format_summary(summary: dict) -> str:
    """A small table of the summary's headline numbers."""
    rows = [
        ("episodes", summary["episodes"]),
        ("failed episodes", len(summary["failed_episodes"])),
        ("steps", summary["steps"]),
        ("agent-frames", summary["agent_frames"]),
        ("startup seconds", summary.get("startup_seconds")),
        ("seconds", summary["seconds"]),
        ("agent-frames/s", summary["agent_frames_per_s"]),
        ("worker failures", summary["failures"]),
        ("episode retries", summary["retries"]),
        ("nodes", len(summary["nodes"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_summary(summary: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(summary, f, indent=2, default=float)


def _hold(directory: str, node_id: str) -> None:
    """The ``hold_at`` test hook: say where this worker is, then wait for the release."""
    path = os.path.join(directory, "release")
    with open(os.path.join(directory, f"holding-{node_id}"), "w") as f:
        f.write(str(os.getpid()))
    while not os.path.exists(path):
        time.sleep(0.05)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="ep", desc="rollout")
