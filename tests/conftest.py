"""Fixtures shared by the test modules; shared helpers are in ``tests/helpers/``."""

import os
import shutil
import tempfile

# Read by Ray when it is imported: bind this machine's local instance to 127.0.0.1 only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import pytest
import torch

# Small batches dominate the tests: one torch thread is faster for them and steadier when
# the machine is shared (see multiworld.world.render.SMALL_BATCH_PIXELS).
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    # The CI machine is small and shared; one thread avoids oversubscription. Restored after.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance for in-process tests (2 CPUs, loopback only); reused when a test
    module already started one."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    os.environ.pop("RAY_ADDRESS", None)
    tmp = tempfile.mkdtemp(prefix="mwray", dir="/tmp")  # short: unix socket paths are limited
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tmp)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
