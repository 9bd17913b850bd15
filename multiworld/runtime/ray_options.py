"""The Ray runtime's options, checks and errors, and the connection to a Ray cluster.

Options (:class:`RayOptions`) come from ``make_simulator(..., runtime="ray", ray_options=...)``
or, for envs built by ``parallel_env``, from the :func:`ray_options` context manager.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np


class VersionMismatchError(RuntimeError):
    """The views of one step were rendered from different state versions."""


class WorldActorLostError(RuntimeError):
    """The world actor died and its state cannot be recovered (no store, or restarts exhausted)."""


class AgentActorLostError(RuntimeError):
    """An agent actor died and did not come back within the restart budget."""


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """How the ray runtime places and protects its actors.

    agents_per_actor: agents rendered by one agent actor (default: N split over two actors)
    num_gpus / num_cpus: resources of each agent actor; world_num_gpus: of the world actor
    max_restarts: restarts Ray grants each actor; history: recent frames kept per agent
    store / store_options / record_frames / world_prefix: record every world to ``store`` (a path
        or fsspec URL, with fsspec ``store_options``) as
        ``f"{world_prefix}ep{k:05d}"`` (``-b{b}`` appended when B > 1), with the views if asked
    address: Ray cluster to join when Ray is not initialised yet (None: RAY_ADDRESS or a local one)
    recover_timeout: seconds to wait for a restarted actor
    """

    agents_per_actor: int | None = None
    num_gpus: float = 0.0
    num_cpus: float = 0.0
    world_num_gpus: float = 0.0
    max_restarts: int = 3
    history: int = 4
    store: str | None = None
    store_options: dict | None = None
    record_frames: bool = False
    world_prefix: str = ""
    address: str | None = None
    recover_timeout: float = 60.0


_DEFAULTS: list[dict] = [{}]


@contextlib.contextmanager
def ray_options(**overrides) -> Iterator[None]:
    """Defaults for ray simulators built inside the block (e.g. by ``parallel_env(runtime="ray")``)."""
    RayOptions(**overrides)  # unknown names fail here
    _DEFAULTS.append({**_DEFAULTS[-1], **overrides})
    try:
        yield
    finally:
        _DEFAULTS.pop()


def ray_defaults(overrides: RayOptions | dict | None = None) -> RayOptions:
    """``overrides`` (options, or a dict of them) over the defaults of the innermost :func:`ray_options` block."""
    if isinstance(overrides, RayOptions):
        return overrides
    return RayOptions(**{**_DEFAULTS[-1], **(overrides or {})})


def _number(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def validate_options(opts: RayOptions, num_agents: int) -> RayOptions:
    """Check the options before anything starts; fills in the default ``agents_per_actor``."""
    k = opts.agents_per_actor
    if k is None:
        k = max(1, math.ceil(num_agents / 2))
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"agents_per_actor must be a positive integer, got {k!r}")
    for name in ("num_gpus", "num_cpus", "world_num_gpus", "recover_timeout"):
        _number(name, getattr(opts, name))
    if isinstance(opts.max_restarts, bool) or not isinstance(opts.max_restarts, int) or opts.max_restarts < 0:
        raise ValueError(f"max_restarts must be an integer >= 0, got {opts.max_restarts!r}")
    if isinstance(opts.history, bool) or not isinstance(opts.history, int) or opts.history < 1:
        raise ValueError(f"history must be a positive integer, got {opts.history!r}")
    if opts.record_frames and not opts.store:
        raise ValueError("record_frames needs a store")
    return dataclasses.replace(opts, agents_per_actor=min(int(k), num_agents))


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise ConnectionError naming ``address`` (HOST:PORT) if nothing accepts connections there."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a Ray address is 'local', 'auto' or HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConnectionError(f"cannot reach a Ray cluster at {address}: {e}") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Initialise Ray once: ``"local"`` starts a local instance, ``"auto"`` or HOST:PORT join a cluster,
    ``None`` joins RAY_ADDRESS if set, else starts a local instance.

    A local instance started before Ray is imported listens on 127.0.0.1 only (Ray reads
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import; it is left alone when set).
    """
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or "local"
    if address == "local" and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if address == "local":
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
        return
    if address != "auto":
        check_reachable(address.removeprefix("ray://"))
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise ConnectionError(f"cannot connect to the Ray cluster at {address}: {e}") from None


def check_resources(opts: RayOptions, num_actors: int) -> None:
    """Refuse GPU requests the cluster cannot satisfy (before any actor is created)."""
    import ray

    want = opts.num_gpus * num_actors + opts.world_num_gpus
    have = ray.cluster_resources().get("GPU", 0.0)
    if want > have:
        raise ValueError(
            f"the ray runtime asks for {want:g} GPUs ({num_actors} agent actors), the cluster has {have:g}"
        )


def wait_alive(actor, what: str, timeout: float) -> None:
    """Wait until ``actor`` (restarted by Ray) answers; :class:`WorldActorLostError` (``what`` ==
    ``"world"``) or :class:`AgentActorLostError` if it does not within ``timeout`` seconds."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.get(actor.ping.remote(), timeout=5)
            return
        except (RayActorError, GetTimeoutError) as e:
            if time.monotonic() > deadline:
                raise (WorldActorLostError if what == "world" else AgentActorLostError)(
                    f"the {what} actor did not come back within {timeout:g} s: {e}"
                ) from None
            time.sleep(0.2)
