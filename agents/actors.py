"""Agent actors of the ray runtime: each holds a renderer replica and renders its agents' views.

The world actor (``multiworld.runtime.ray_world``) owns the state and publishes, per state
version, a *payload* (what a renderer needs: for the oracle the :class:`WorldState`; for the
learned model scene tokens, poses and colours) with ``ray.put``. Agent actors receive a
:class:`StateHandle` (the version plus the payload's ObjectRef) and fetch the payload from the
object store themselves, so the state never passes through the driver.

A renderer replica is anything with ``render(payload, agents, depth) -> (rgb, depth)``; it is
built in the actor from a picklable spec by :func:`make_renderer`, so a restarted actor rebuilds
it. Every result is a :class:`RenderedViews` tagged with the version of the payload it was
rendered from (read from the payload itself, not from the handle), so the driver can refuse a
step whose views disagree.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from multiworld.world.render import Raycaster, RenderConfig, Views
from multiworld.world.state import WorldState


@dataclasses.dataclass
class StateHandle:
    """A published state version: ``version`` (B,) int64 and ``ref``, the payload's ObjectRef."""

    version: np.ndarray
    ref: Any


@dataclasses.dataclass
class RenderedViews:
    """Views of the agents ``agents`` (V,) of every world, rendered from state ``version`` (B,).

    rgb:   (B, V, H, W, 3) uint8
    depth: (B, V, H, W) float32, or None
    """

    version: np.ndarray
    agents: np.ndarray
    rgb: np.ndarray
    depth: np.ndarray | None = None


class RendererReplica(Protocol):
    """What an agent actor needs from a backend: render some agents' views of one payload."""

    def render(self, payload: dict, agents: np.ndarray, depth: bool) -> tuple[np.ndarray, np.ndarray | None]: ...


class SubsetRaycaster(Raycaster):
    """The oracle raycaster, rendering the views of a subset of the agents only.

    Cameras are the chosen agents; sprites are *all* agents (the chosen ones first, so the
    renderer's "do not draw yourself" diagonal still matches) and all items. Views equal the
    matching slices of a full render: reordering sprites could only change which of two
    sprites wins a pixel at exactly the same quantized depth, which agents (kept apart by
    collisions) never reach.
    """

    _sprite_state: WorldState | None = None

    def render_agents(self, state: WorldState, agents: np.ndarray, buffers: bool = False) -> Views:
        agents = np.asarray(agents, np.int64)
        if len(agents) == state.num_agents and np.array_equal(agents, np.arange(state.num_agents)):
            return self.render(state, buffers=buffers)
        rest = np.setdiff1d(np.arange(state.num_agents), agents)
        cameras = dataclasses.replace(state, poses=state.poses[:, agents], colors=state.colors[:, agents])
        self._sprite_state = state.permute_agents(np.concatenate([agents, rest]))
        try:
            return self.render(cameras, buffers=buffers)
        finally:
            self._sprite_state = None

    def sprite_scene(self, cameras: WorldState) -> WorldState:
        return self._sprite_state if self._sprite_state is not None else cameras


class OracleRenderer:
    """Renderer replica of the oracle backend; its payload is ``{"version", "state": WorldState}``."""

    def __init__(self, render: RenderConfig | None = None, device: str = "cpu") -> None:
        self.raycaster = SubsetRaycaster(render, device=device)

    def render(self, payload: dict, agents: np.ndarray, depth: bool) -> tuple[np.ndarray, np.ndarray | None]:
        state = payload["state"].copy()  # the object store hands out read-only arrays
        views = self.raycaster.render_agents(state, agents, buffers=depth)
        return views.rgb.cpu().numpy(), None if views.depth is None else views.depth.cpu().numpy()


class ModelRenderer:
    """Renderer replica of the learned model (deterministic render); payload ``{"version", "tokens"
    (B, S*S + N, D) the packed latent state, "size" S}``. Each replica loads the checkpoint."""

    def __init__(
        self, checkpoint=None, device: str = "cpu", render: RenderConfig | None = None, precision: str | None = None
    ) -> None:
        from multiworld.models.checkpoint import load_checkpoint
        from multiworld.sim.model import default_precision, resolve_device

        dev = resolve_device(device)
        self.model = load_checkpoint(checkpoint, dev)
        self.precision = precision or default_precision(dev)  # as the in-process simulator renders
        self.cam = (render or RenderConfig()).camera

    def render(self, payload: dict, agents: np.ndarray, depth: bool) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        from multiworld.models.world_model import LatentState

        dev = self.model.device
        state = LatentState.unpack(np.array(payload["tokens"]), int(payload["size"]), dev)
        views = torch.as_tensor(np.asarray(agents, np.int64), device=dev)
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            rgb, dep = self.model.renderer(state.scene, state.agents, views=views, cam=self.cam)
        rgb = (rgb.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return rgb, dep.float().cpu().numpy().astype(np.float32) if depth else None


def _oracle_renderer(spec: dict) -> RendererReplica:
    return OracleRenderer(spec.get("render"), device=spec.get("device", "cpu"))


def _model_renderer(spec: dict) -> RendererReplica:
    return ModelRenderer(
        spec.get("checkpoint"),
        device=spec.get("device", "cpu"),
        render=spec.get("render"),
        precision=spec.get("precision"),
    )


# backend name -> builder(spec) of its renderer replica.
RENDERERS: dict[str, Callable[[dict], RendererReplica]] = {"oracle": _oracle_renderer, "model": _model_renderer}


def make_renderer(backend: str, spec: dict) -> RendererReplica:
    """The renderer replica of ``backend`` built from the simulator spec (render config, device, ...)."""
    try:
        build = RENDERERS[backend]
    except KeyError:
        raise ValueError(f"backend {backend!r} has no renderer replica; have {sorted(RENDERERS)}") from None
    return build(spec)


class AgentActor:
    """Renders the views of agents ``agents`` for every state version it is handed.

    Used as a Ray actor (``ray.remote(AgentActor)``); plain Python otherwise, so it can be
    tested in process. Keeps its agents' last ``history`` frames (the learned renderer
    conditions on them); after a restart the driver puts them back with :meth:`restore`.
    """

    def __init__(self, backend: str, spec: dict, agents: list[int], history: int = 4, depth: bool = False) -> None:
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.backend = backend
        self.agents = np.asarray(agents, np.int64)
        self.depth = depth
        self.renderer = make_renderer(backend, spec)
        self.recent: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque(maxlen=history)
        self._stale = 0
        self._previous: dict | None = None

    def ping(self) -> int:
        return os.getpid()

    def pid(self) -> int:
        """The actor's process id (tests kill it to exercise restarts)."""
        return os.getpid()

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def render(self, handle: StateHandle) -> RenderedViews:
        """Fetch the payload of ``handle`` from the object store and render this actor's agents."""
        import ray

        payload = ray.get(handle.ref)
        used = self._previous if (self._stale and self._previous is not None) else payload
        self._previous = payload
        rgb, depth = self.renderer.render(used, self.agents, self.depth)
        version = np.asarray(used["version"], np.int64).copy()
        self._remember(version, rgb)
        return RenderedViews(version=version, agents=self.agents, rgb=rgb, depth=depth)

    def _remember(self, version: np.ndarray, rgb: np.ndarray) -> None:
        if self.recent and np.array_equal(self.recent[-1][0], version):
            self.recent.pop()  # a step rendered again (after a failure elsewhere) replaces its frames
        elif self.recent and np.all(version < self.recent[-1][0]):
            self.recent.clear()  # a new episode of every world (an autoreset restarts only some)
        self.recent.append((version, rgb))

    def recent_frames(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(version (B,), rgb (B, V, H, W, 3))] oldest first."""
        return list(self.recent)

    def restore(self, frames: list[tuple[np.ndarray, np.ndarray]]) -> int:
        """Put back recent frames ``[(version, rgb (B, N_all or V, H, W, 3))]`` after a restart."""
        self.recent.clear()
        for version, rgb in frames:
            rgb = np.asarray(rgb)
            if rgb.shape[1] != len(self.agents):
                rgb = rgb[:, self.agents]
            self.recent.append((np.asarray(version, np.int64), rgb))
        return len(self.recent)

    def restore_from_store(
        self, url: str, world_ids: list[str], last: int | list[int], storage_options: dict | None = None
    ) -> int:
        """Put back the recent frames of rows ``..last`` of ``world_ids`` (one per world; ``last`` one row,
        or one per world when an autoreset left them at different versions) from the store."""
        from multiworld.runtime.recording import stored_frames
        from multiworld.state import WorldStore

        store = WorldStore.open(url, "r", storage_options=storage_options)
        try:
            readers = [store.world(w) for w in world_ids]
            lasts = np.broadcast_to(np.asarray(last, np.int64), (len(world_ids),))
            frames = stored_frames(readers, lasts, self.recent.maxlen)
        finally:
            store.close()
        return self.restore(frames)

    def oracle_guard(self, on: bool, fresh: bool = True) -> None:
        """Test hook: arm (or disarm) :mod:`multiworld.runtime.oracle_guard` in this actor's process."""
        from multiworld.runtime import oracle_guard

        oracle_guard.arm(fresh) if on else oracle_guard.disarm()

    def set_stale(self, lag: int) -> None:
        """Test hook: with ``lag`` > 0 render the previous payload instead of the one handed in."""
        self._stale = int(lag)
