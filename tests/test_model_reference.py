"""Reference outputs of the shipped world-model checkpoint (multiworld/checkpoints/default/).

A change to the model code, the checkpoint or the oracle scene generator that changes what the
shipped model computes fails here. When such a change is intended (e.g. a new checkpoint was
trained and shipped), regenerate the reference file and commit it with the change:

    python tests/test_model_reference.py --regenerate
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, read_config

REFERENCE = DEFAULT_CHECKPOINT / "reference.json"


def reference_outputs() -> dict:
    from multiworld.sim.model import ModelSimulator

    torch.set_num_threads(1)
    from multiworld.agents.policies import make_policy

    sim = ModelSimulator("forage-v0", 3, num_worlds=2)
    obs = sim.reset([7, 8])
    actions = np.random.default_rng(0).integers(0, 8, size=(12, 2, 3))
    out = {"weights_sha256": read_config(DEFAULT_CHECKPOINT)["weights_sha256"], "poses": [], "view_means": []}
    out["token_sum"] = float(np.asarray(sim.tokens(), np.float64).sum())
    out["first_view_means"] = obs.rgb.astype(np.float64).mean(axis=(2, 3, 4)).round(4).tolist()
    for t in range(12):
        obs = sim.step(actions[t])
        out["poses"].append(obs.poses.round(5).tolist())
        if t % 4 == 3:
            out["view_means"].append(obs.rgb.astype(np.float64).mean(axis=(2, 3, 4)).round(4).tolist())
    out["final_token_sum"] = float(np.asarray(sim.tokens(), np.float64).sum())
    # Rewards, events and endings: scripted agents in both rewarding scenarios (pickups, pushes).
    out["episodes"] = {}
    for scenario in ("forage-v0", "push-v0"):
        sim = ModelSimulator(scenario, 3, num_worlds=2)
        sim.reset([11, 12])
        policy = make_policy("scripted", seed=3)
        rewards, events, ended = [], [], []
        for _ in range(40):
            obs = sim.step(policy.act(sim.world_state()))
            rewards.append(obs.rewards.tolist())
            events.append(sorted((w, e["type"], e["agent"]) for w, evs in enumerate(obs.events) for e in evs))
            ended.append(obs.terminated.tolist())
        out["episodes"][scenario] = {"rewards": rewards, "events": events, "terminated": ended}
    return out


def test_shipped_checkpoint_matches_reference():
    assert REFERENCE.exists(), f"{REFERENCE} is missing: regenerate it (module docstring)"
    ref = json.loads(REFERENCE.read_text())
    out = reference_outputs()
    assert out["weights_sha256"] == ref["weights_sha256"], "the shipped weights changed: regenerate the reference"
    assert out["token_sum"] == pytest.approx(ref["token_sum"], rel=1e-5, abs=1e-2)
    assert out["final_token_sum"] == pytest.approx(ref["final_token_sum"], rel=1e-5, abs=1e-2)
    np.testing.assert_allclose(out["poses"], ref["poses"], atol=1e-4)
    np.testing.assert_allclose(out["first_view_means"], ref["first_view_means"], atol=0.05)
    np.testing.assert_allclose(out["view_means"], ref["view_means"], atol=0.05)
    for scenario, episode in ref["episodes"].items():
        got = out["episodes"][scenario]
        assert [[list(e) for e in step] for step in got["events"]] == episode["events"], scenario
        assert got["rewards"] == episode["rewards"], scenario
        assert got["terminated"] == episode["terminated"], scenario


if __name__ == "__main__":
    if "--regenerate" not in sys.argv:
        sys.exit("usage: python tests/test_model_reference.py --regenerate")
    REFERENCE.write_text(json.dumps(reference_outputs()) + "\n")
    print(f"wrote {REFERENCE}")
