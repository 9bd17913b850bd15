"""Shared fixtures of the ray tests: one local Ray instance per test session (2 CPUs, loopback only)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Read by Ray when it is imported: bind this machine's local instance to 127.0.0.1 only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance for in-process tests; reused when a test module already started one."""
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
