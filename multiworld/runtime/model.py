"""The model backend: the learned world model behind the :class:`Simulator` contract.

At reset the model reads observations of the world: every agent's egocentric view and pose,
and with ``init="map"`` (default) also the top-down map image the env's ``state()`` shows; with
``init="views"`` only the views, so cells no agent has seen are unknown. From then on no oracle
is in the loop: the state-update model advances the latent state from the joint actions and
gives rewards, endings and events from its heads, and every agent's view is rendered from the
shared state, all agents of all worlds in one batched pass from the same state version.

``world_state()`` (the env's ``state()`` map, the benchmarks' probes) is *read out* of the
latent state by the decoder heads, with object identities carried over from the previous
readout; it is never fed back.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from multiworld.runtime.base import InProcessSimulator, Observation, initial_state
from multiworld.runtime.oracle import agent_names
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import Scenario, get_scenario
from multiworld.world.state import WorldState

INIT_MODES = ("map", "views")


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device``; asking for an accelerator that is not there is an error."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available on this machine")
    return dev


def decode_state(model, latent, ref: WorldState) -> WorldState:
    """The symbolic state read out of ``latent`` by the decoder heads (measurement only).

    Walls, floor, goals, boxes and items come from the cell heads; agent poses from the agent
    tokens. Object identities (list order) follow ``ref``, the previous readout: a box that is no
    longer on a decoded box cell moves to the nearest free decoded box cell; an item is alive
    while its cell decodes as an item."""
    with torch.no_grad():
        dec = {k: v.cpu().numpy() for k, v in model.heads.decode(latent.scene).items()}
    out = ref.copy()
    out.walls = dec["wall"].astype(np.uint8)
    out.floor = dec["floor"].astype(np.uint8)
    out.goals = dec["goal"].astype(bool)
    out.poses = latent.poses.detach().float().cpu().numpy().astype(np.float32)
    b = np.arange(ref.num_worlds)[:, None]
    if ref.items.shape[1]:
        out.items_alive = ref.items_alive & dec["item"][b, ref.items[..., 0], ref.items[..., 1]].astype(bool)
    for w in range(ref.num_worlds):
        cells = {tuple(c) for c in np.argwhere(dec["box"][w])}
        keep = [tuple(c) in cells for c in ref.boxes[w]]
        free = cells - {tuple(c) for c, k in zip(ref.boxes[w], keep) if k}
        for m in np.flatnonzero(~np.array(keep, bool)):
            if not free:
                break
            c = min(free, key=lambda x, m=m: abs(x[0] - ref.boxes[w, m, 0]) + abs(x[1] - ref.boxes[w, m, 1]))
            out.boxes[w, m] = c
            free.discard(c)
    return out


def event_dicts(before: WorldState, after: WorldState, push: np.ndarray, pick: np.ndarray, names: list[str]):
    """Per world, the event dicts of the model's push and pickup heads, with the box or item
    identified from the readouts before and after (the one that changed nearest the agent)."""
    out = []
    for w in range(after.num_worlds):
        events = []
        moved = np.flatnonzero(np.any(before.boxes[w] != after.boxes[w], axis=-1))
        taken = np.flatnonzero(before.items_alive[w] & ~after.items_alive[w])
        cell = np.stack([np.floor(after.poses[w, :, 1]), np.floor(after.poses[w, :, 0])], -1)
        for i, name in enumerate(names):
            if push[w, i]:
                if len(moved):
                    m = moved[np.argmin(np.abs(before.boxes[w, moved] - cell[i]).sum(-1))]
                    events.append(
                        {
                            "type": "push",
                            "agent": name,
                            "box": int(m),
                            "from": before.boxes[w, m].tolist(),
                            "to": after.boxes[w, m].tolist(),
                        }
                    )
                else:
                    events.append({"type": "push", "agent": name, "box": -1, "from": [-1, -1], "to": [-1, -1]})
            if pick[w, i]:
                pool = taken if len(taken) else np.flatnonzero(before.items_alive[w])
                item = int(pool[np.argmin(np.abs(before.items[w, pool] - cell[i]).sum(-1))]) if len(pool) else -1
                events.append({"type": "pickup", "agent": name, "item": item})
        out.append(events)
    return out


class ModelSimulator(InProcessSimulator):
    """B worlds of N agents simulated by a world-model checkpoint (default: the shipped one).

    ``init``: ``"map"`` (views, poses and the top-down map at reset) or ``"views"`` (views and
    poses only). ``sampler_steps``: 0 renders deterministically (default); 1..8 runs the flow
    sampler (the generative head) on top, conditioned on each agent's previous frame.
    ``precision``: ``"fp32"`` or ``"bf16"`` (autocast for the state update and the renderer);
    default bf16 on CUDA, fp32 elsewhere. The state itself stays float32 (what the store records).
    """

    backend = "model"

    def __init__(
        self,
        scenario: Scenario | str,
        num_agents: int,
        num_worlds: int = 1,
        render: RenderConfig | None = None,
        depth: bool = False,
        device: str = "cpu",
        checkpoint: str | pathlib.Path | None = None,
        model=None,
        init: str = "map",
        sampler_steps: int = 0,
        precision: str | None = None,
        seed: int = 0,
        **arena_overrides,
    ) -> None:
        from multiworld.models.checkpoint import load_checkpoint
        from multiworld.models.geometry import Camera
        from multiworld.models.world_model import scenario_id

        self.scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
        self.scenario_index = scenario_id(self.scenario.name)
        self.arena = self.scenario.arena_config(num_agents=num_agents, **arena_overrides)
        self.num_worlds, self.num_agents = num_worlds, num_agents
        self.agent_names = agent_names(num_agents)
        self.device = resolve_device(device)
        # ``model``: an already loaded world model (benchmarks, tests) instead of a checkpoint path.
        self.model = load_checkpoint(checkpoint, self.device) if model is None else model.to(self.device).eval()
        if not hasattr(self.model, "encode"):
            from multiworld.models.checkpoint import CheckpointError

            raise CheckpointError(
                f"checkpoint {checkpoint} is a {type(self.model).__name__}, not a latent world model; "
                "a stacked-frames checkpoint runs as the benchmarks' `stacked` variant (--stacked-checkpoint)"
            )
        if init not in INIT_MODES:
            raise ValueError(f"init must be one of {INIT_MODES}, got {init!r}")
        if not 0 <= sampler_steps <= 8:
            raise ValueError(f"sampler_steps must be in [0, 8], got {sampler_steps}")
        # The renderer's camera is explicit, so any image size and field of view works; it was
        # trained at 64x64, 90 degrees, where its fidelity is measured. The encoder reads the
        # reset views at the size it was trained on.
        render = render or RenderConfig()
        self.cam = Camera(render.height, render.width, render.fov_degrees, render.eye_height)
        self.sensor = Raycaster(RenderConfig(), device=self.device)
        precision = precision or ("bf16" if self.device.type == "cuda" else "fp32")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        self.init, self.depth, self.sampler_steps = init, depth, sampler_steps
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.latent = None
        self.readout: WorldState | None = None
        self.version = np.zeros(num_worlds, np.int64)
        self.prev_rgb: torch.Tensor | None = None
        self._scen = torch.full((num_worlds,), self.scenario_index, dtype=torch.long, device=self.device)
        self.view_owner: np.ndarray | None = None

    def render_only(self, owner: np.ndarray) -> None:
        """Render only agent ``owner[b]``'s view of world b (the others read black): what the
        private-state wrapper uses, which shows agent i only its own copy i."""
        owner = np.asarray(owner, np.int64)
        if owner.shape != (self.num_worlds,) or owner.min() < 0 or owner.max() >= self.num_agents:
            raise ValueError(f"owner must be ({self.num_worlds},) agent indices, got {owner.shape}")
        self.view_owner = owner

    def _autocast(self):
        import contextlib

        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # ----- reset ------------------------------------------------------------------------------
    def observe_world(self, state: WorldState):
        """The observations the model starts from: every agent's view (and the map if ``init="map"``)."""
        from multiworld.world.topdown import top_down

        views = self.sensor.render(state).rgb
        poses = torch.as_tensor(state.poses, device=self.device)
        image = torch.as_tensor(top_down(state), device=self.device) if self.init == "map" else None
        return views, poses, image

    @torch.no_grad()
    def _encode(self, state: WorldState):
        views, poses, image = self.observe_world(state)
        return self.model.encode(views, poses, state.size, image)

    def reset(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> Observation:
        self.reset_state(seeds, start, tokens)
        return self._first_observation()

    @torch.no_grad()
    def reset_state(self, seeds: list[int], start: WorldState | None = None, tokens: np.ndarray | None = None) -> None:
        """Reset without rendering: from the observations of each seed's world (or of ``start``),
        or exactly from stored packed ``tokens`` (B, S*S + N, D) with ``start`` the stored row."""
        from multiworld.models.world_model import LatentState

        state = initial_state(self.arena, seeds, start, self.num_worlds, self.num_agents)
        if tokens is not None:
            tok = np.asarray(tokens, np.float32)
            d = self.model.cfg.dim
            expected = (state.num_worlds, state.size * state.size + state.num_agents, d)
            if tok.shape != expected:
                raise ValueError(f"tokens must have shape {expected}, got {tok.shape}")
            if not np.isfinite(tok).all():
                raise ValueError("tokens contain NaN or infinite values (a row stored without tokens?)")
            self.latent = LatentState.unpack(tok, state.size, self.device)
        else:
            self.latent = self._encode(state)
        self.readout = decode_state(self.model, self.latent, state)
        self.static = self.readout.copy()
        self.version = state.step.copy()
        self.prev_rgb = None

    @torch.no_grad()
    def _restart(self, mask: np.ndarray, start: WorldState) -> None:
        fresh = self._encode(start)
        self.latent = self.latent.replace(mask, fresh)
        first = decode_state(self.model, fresh, start)
        self.readout = self.readout.replace_worlds(mask, first)
        self.static = self.static.replace_worlds(mask, first)
        self.version = self.version.copy()
        self.version[mask] = start.step
        if self.prev_rgb is not None:
            self.prev_rgb[torch.as_tensor(mask, device=self.device)] = self.model.render(fresh, self.cam)[0].clamp(0, 1)

    # ----- step -------------------------------------------------------------------------------
    def payload(self) -> dict:
        """What a renderer replica needs to render a state version: the packed latent state."""
        return {"version": self.version.copy(), "tokens": self.tokens(), "size": self.arena.size}

    @torch.no_grad()
    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[dict]]]:
        if self.latent is None:
            raise RuntimeError("call reset() before step()")
        act = torch.as_tensor(actions, device=self.device)
        with self._autocast():
            latent, out = self.model.step(self.latent, act, self._scen)
        self.latent = type(latent)(latent.scene.float(), latent.agents.float())
        out = {k: v.float() for k, v in out.items()}
        before = self.readout
        self.readout = decode_state(self.model, self.latent, before)
        self.version = self.version + 1
        self.readout.step = self.version.copy()
        push = (out["push"] > 0).cpu().numpy()
        pick = (out["pick"] > 0).cpu().numpy()
        events = event_dicts(before, self.readout, push, pick, self.agent_names)
        rewards = out["reward"].float().cpu().numpy().astype(np.float32)
        terminated = (out["done"] > 0).cpu().numpy()
        return rewards, terminated, events

    def world_state(self) -> WorldState:
        """The readout with the static scene (walls, floor, goals, item cells) as read out at reset:
        what the env's ``state()`` shows and the store records (its static arrays never change)."""
        if self.readout is None:
            raise RuntimeError("call reset() first")
        out = self.readout.copy()
        out.walls, out.floor, out.goals = self.static.walls, self.static.floor, self.static.goals
        return out

    def decoded_state(self) -> WorldState:
        """The readout of every cell at this step, static scene included (the drift benchmarks
        measure how far the tokens of cells that never change have drifted)."""
        if self.readout is None:
            raise RuntimeError("call reset() first")
        return self.readout

    def tokens(self) -> np.ndarray | None:
        """The whole latent state, packed: ``(B, S*S + N, D)`` (scene tokens, then agent tokens)."""
        return None if self.latent is None else self.latent.pack()

    def _render(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.view_owner is None:
            return self.model.render(self.latent, self.cam)
        b, n, h, w = self.num_worlds, self.num_agents, self.cam.height, self.cam.width
        rgb = torch.zeros(b, n, h, w, 3, device=self.device)
        depth = torch.zeros(b, n, h, w, device=self.device)
        for o in np.unique(self.view_owner):  # one pass per owner over the worlds it owns
            sel = torch.as_tensor(np.flatnonzero(self.view_owner == o), device=self.device)
            view = torch.tensor([int(o)], device=self.device)
            r, d = self.model.render(self.latent.select(sel), self.cam, views=view)
            rgb[sel, int(o)], depth[sel, int(o)] = r[:, 0].float(), d[:, 0].float()
        return rgb, depth

    @torch.no_grad()
    def _observe(self, rewards: np.ndarray, terminated: np.ndarray, events: list[list[dict]]) -> Observation:
        with self._autocast():
            rgb, depth = self._render()
        rgb = rgb.float().clamp(0, 1)
        if self.sampler_steps > 0:
            prev = rgb if self.prev_rgb is None else self.prev_rgb
            flat = self.model.refiner.sample(rgb.flatten(0, 1), prev.flatten(0, 1), self.sampler_steps, self.generator)
            rgb = flat.reshape(rgb.shape)
            self.prev_rgb = rgb
        return Observation(
            rgb=(rgb * 255).round().to(torch.uint8).cpu().numpy(),
            depth=depth.float().cpu().numpy().astype(np.float32) if self.depth else None,
            poses=self.latent.poses.float().cpu().numpy().astype(np.float32),
            rewards=rewards,
            terminated=np.asarray(terminated, bool),
            events=events,
            version=self.version.copy(),
        )
