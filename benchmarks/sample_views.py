"""The model card's sample_views.png: a held-out forage-v0 world (model-evaluation seed 2,500,123),
random actions; each agent's oracle view above the shipped model's at steps 10, 50, 100 and 200.

    python benchmarks/sample_views.py
"""

from __future__ import annotations

import pathlib

import imageio.v3 as iio
import numpy as np
import torch

from multiworld.agents.policies import make_policy
from multiworld.sim.model import ModelSimulator
from multiworld.sim.oracle import OracleSimulator
from multiworld.world.scenarios import get_scenario

OUT = pathlib.Path(__file__).resolve().parents[1] / "multiworld" / "checkpoints" / "default" / "sample_views.png"
STEPS = (10, 50, 100, 200)


def main() -> None:
    torch.set_num_threads(1)
    seeds = [2_500_123]
    model, oracle = ModelSimulator("forage-v0", 4, 1), OracleSimulator(get_scenario("forage-v0"), 4, 1)
    model.reset(seeds)
    oracle.reset(seeds)
    policy = make_policy("random", seed=1)
    rows = []
    for t in range(1, max(STEPS) + 1):
        actions = policy.act(oracle.world_state())
        mine, truth = model.step(actions), oracle.step(actions)
        if t in STEPS:
            pairs = [np.concatenate([truth.rgb[0, i], mine.rgb[0, i]], 0) for i in range(4)]
            rows.append(np.concatenate(pairs, 1))
    image = np.concatenate(rows, 0).repeat(2, 0).repeat(2, 1)
    iio.imwrite(OUT, image)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
