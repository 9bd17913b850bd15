"""Fidelity of the learned world model against the oracle, free-running, same actions to both.

Both start from the same world of each held-out seed: the oracle from its scene, the model from
its observations at reset (``init="map"``: every agent's view and pose plus the top-down map;
``init="views"``: the views and poses only). A policy acting on the *oracle's* state picks the
joint actions, which are fed to both. The model runs with no oracle in the loop.

Metrics:
- ``psnr[h]`` / ``ssim[h]``: mean over worlds and agents of the per-frame PSNR (dB, 8-bit RGB) and
  SSIM between the model's view and the oracle's view after ``h`` steps; for the deterministic
  render and the flow sampler (the generative head, ``sampler_k``: k Euler steps).
- ``accuracy[h]`` (decoded symbolic-state accuracy): the fraction of correct entries among all
  S x S cells and all N agents of every world. A cell is correct when its decoded class tuple
  (wall material or floor, floor pattern, goal, box present, item present) equals the oracle's;
  an agent is correct when its decoded cell (floor(y), floor(x)) and heading bin (8 bins of 45
  degrees) equal the oracle's. ``cell_accuracy`` and ``agent_accuracy`` are reported apart.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from multiworld.bench.metrics import ssim
from multiworld.models.heads import cell_maps
from multiworld.world.arena import generate
from multiworld.world.dynamics import step as world_step
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import WorldState

HEADING_BINS = 8


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-frame PSNR of uint8/float images (..., H, W, 3) in 0..255."""
    a = np.asarray(a, np.float64).reshape(-1, *a.shape[-3:])
    b = np.asarray(b, np.float64).reshape(-1, *b.shape[-3:])
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def symbolic_accuracy(model_state: WorldState, oracle: WorldState) -> dict[str, float]:
    """Decoded symbolic-state accuracy (see the module docstring)."""
    mm, om = cell_maps(model_state), cell_maps(oracle)
    cells = torch.stack([mm[k] == om[k] for k in om]).all(0).numpy()

    def agent_key(s: WorldState) -> np.ndarray:
        b = np.floor((s.poses[..., 2] + math.pi) / (2 * math.pi / HEADING_BINS) + 0.5).astype(np.int64) % HEADING_BINS
        return np.stack([np.floor(s.poses[..., 1]), np.floor(s.poses[..., 0]), b], -1)

    agents = np.all(agent_key(model_state) == agent_key(oracle), -1)
    total = cells.size + agents.size
    return {
        "accuracy": float((cells.sum() + agents.sum()) / total),
        "cell_accuracy": float(cells.mean()),
        "agent_accuracy": float(agents.mean()),
    }


def evaluate_fidelity(
    model,
    scenario: str,
    num_agents: int,
    seeds: list[int],
    horizons: tuple[int, ...] = (1, 10, 100),
    accuracy_horizons: tuple[int, ...] = (1, 10, 100, 1000),
    sampler_steps: tuple[int, ...] = (),
    policy: str = "scripted",
    init: str = "map",
    policy_seed: int = 0,
) -> dict:
    """Run model and oracle side by side on ``seeds`` (one world each); see the module docstring.

    ``model``: a loaded world model or a checkpoint path."""
    from multiworld.agents.policies import make_policy
    from multiworld.runtime.model import ModelSimulator

    sc = get_scenario(scenario)
    arena = sc.arena_config(num_agents=num_agents)
    oracle = generate(arena, seeds)
    raycaster = Raycaster(RenderConfig())
    loaded = not isinstance(model, (str, type(None))) and hasattr(model, "renderer")
    kw = {"model": model} if loaded else {"checkpoint": model}
    sims = {"deterministic": ModelSimulator(scenario, num_agents, len(seeds), init=init, **kw)}
    for k in sampler_steps:
        sims[f"sampler_{k}"] = ModelSimulator(scenario, num_agents, len(seeds), init=init, sampler_steps=k, **kw)
    frames = {name: sim.reset(list(seeds)).rgb for name, sim in sims.items()}
    pol = make_policy(policy, seed=policy_seed)
    last = max(max(horizons, default=0), max(accuracy_horizons, default=0))
    out: dict = {"scenario": scenario, "agents": num_agents, "worlds": len(seeds), "policy": policy, "init": init}
    out["psnr"] = {name: {} for name in sims}
    out["ssim"] = {name: {} for name in sims}
    out["accuracy"], out["cell_accuracy"], out["agent_accuracy"] = {}, {}, {}
    t0 = time.perf_counter()
    for t in range(1, last + 1):
        actions = pol.act(oracle)
        oracle, _ = world_step(oracle, actions, arena)
        render = t in horizons
        for name, sim in sims.items():
            if name != "deterministic" and not render and t > max(horizons, default=0):
                continue
            frames[name] = sim.step(actions).rgb
        if render:
            truth = raycaster.render(oracle).rgb.numpy()
            for name in sims:
                out["psnr"][name][str(t)] = round(psnr(frames[name], truth), 3)
                out["ssim"][name][str(t)] = round(float(np.mean(ssim(frames[name], truth))), 4)
        if t in accuracy_horizons:
            acc = symbolic_accuracy(sims["deterministic"].decoded_state(), oracle)
            for k, v in acc.items():
                out[k][str(t)] = round(v, 5)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out
