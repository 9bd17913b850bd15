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

from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, read_config
from multiworld.world.arena import generate
from multiworld.world.scenarios import get_scenario

REFERENCE = DEFAULT_CHECKPOINT / "reference.json"


def reference_outputs() -> dict:
    torch.set_num_threads(1)
    model = load_checkpoint()
    state = generate(get_scenario("forage-v0").arena_config(num_agents=3), [7, 8])
    rs = model.reset(state)
    actions = np.random.default_rng(0).integers(0, 8, size=(12, 2, 3))
    out = {"weights_sha256": read_config(DEFAULT_CHECKPOINT)["weights_sha256"], "poses": [], "view_means": []}
    out["token_sum"] = float(rs.tokens.double().sum())
    for t in range(12):
        rs, _ = model.step(rs, actions[t])
        out["poses"].append(rs.symbolic.poses.round(5).tolist())
        if t % 4 == 3:
            rgb = model.render(rs)
            out["view_means"].append(rgb.double().mean(dim=(2, 3, 4)).numpy().round(6).tolist())
    out["items_alive"] = rs.symbolic.items_alive.astype(int).tolist()
    out["boxes"] = rs.symbolic.boxes.tolist()
    return out


@pytest.mark.skipif(not REFERENCE.exists(), reason="no shipped checkpoint reference")
def test_shipped_checkpoint_matches_reference():
    ref = json.loads(REFERENCE.read_text())
    out = reference_outputs()
    assert out["weights_sha256"] == ref["weights_sha256"], "the shipped weights changed: regenerate the reference"
    assert out["token_sum"] == pytest.approx(ref["token_sum"], rel=1e-5, abs=1e-3)
    np.testing.assert_allclose(out["poses"], ref["poses"], atol=1e-4)
    np.testing.assert_allclose(out["view_means"], ref["view_means"], atol=1e-4)
    assert out["items_alive"] == ref["items_alive"] and out["boxes"] == ref["boxes"]


if __name__ == "__main__":
    if "--regenerate" not in sys.argv:
        sys.exit("usage: python tests/test_model_reference.py --regenerate")
    REFERENCE.write_text(json.dumps(reference_outputs()) + "\n")
    print(f"wrote {REFERENCE}")
