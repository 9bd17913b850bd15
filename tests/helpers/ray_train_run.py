"""Run by tests/test_ray_train.py in a process of its own: the tiny preset on two Ray Train
workers (CPU, gloo) for 10 steps, the state saved every 4, and rank 1 killing itself at step 6
(once: the marker file says it did). Prints rank 0's summary as one JSON line.

usage: python ray_train_run.py DATA OUT MARKER
The caller sets RAY_TMPDIR (this Ray instance's files) and RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0.
"""

from __future__ import annotations

import json
import sys


def main(data: str, out: str, marker: str) -> None:
    from multiworld.models.ray_train import fit_on_ray
    from multiworld.models.training import TrainSpec

    spec = TrainSpec(
        data=[data], out=out, preset="tiny", max_steps=10, save_every=4, threads=1, progress=False,
        crash_at=(1, 6, marker),
    )  # fmt: skip
    summary = fit_on_ray(spec, workers=2, address="local", max_failures=2)
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:4])
