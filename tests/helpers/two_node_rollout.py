"""Run by tests/test_ray_cluster.py in a process of its own: a rollout on a two-node Ray cluster
(``ray.cluster_utils.Cluster``, both nodes on 127.0.0.1) whose second node is removed while its
worker is mid-episode. Prints one JSON line: the rollout's summary, the removed node's id, the
head's id, and a reference rollout of the same episodes on the head alone.

usage: python two_node_rollout.py STORE REFERENCE_STORE HOLD_DIR
The caller sets RAY_TMPDIR (this cluster's files) and RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0.
"""

from __future__ import annotations

import json
import pathlib
import sys
import threading
import time


def main(out: str, reference: str, hold_dir: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from multiworld.runtime.rollout import RolloutConfig, run_rollout

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    second = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    head = ray.get_runtime_context().get_node_id()
    cfg = RolloutConfig(
        out=out, episodes=6, workers=2, agents=2, max_cycles=10, height=16, width=16,
        hold_at=(second.node_id, 4, hold_dir),  # the second node's worker waits at step 4 of its first episode
    )  # fmt: skip
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run_rollout(cfg, progress=False)))
    runner.start()
    holding = pathlib.Path(hold_dir) / f"holding-{second.node_id}"
    deadline = time.monotonic() + 180
    while not holding.exists():  # the worker on the second node is mid-episode, waiting
        if time.monotonic() > deadline or not runner.is_alive():
            raise SystemExit("the second node's worker never reached its hold point")
        time.sleep(0.05)
    cluster.remove_node(second)
    (pathlib.Path(hold_dir) / "release").write_text("")
    runner.join(timeout=300)
    if runner.is_alive() or not result:
        raise SystemExit("the rollout did not finish after the node was removed")
    ref = run_rollout(RolloutConfig(**{**cfg.__dict__, "out": reference, "hold_at": None}), progress=False)
    print(json.dumps({"summary": result, "removed": second.node_id, "head": head, "reference": ref}, default=float))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
