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

import dataclasses
import pathlib

import numpy as np
import torch

from multiworld.models.checkpoint import CheckpointError, check_checkpoint, weights_sha256
from multiworld.models.device import default_precision, resolve_device
from multiworld.sim.base import InProcessSimulator, Observation, initial_state, stored_states
from multiworld.sim.oracle import agent_names
from multiworld.sim.readout import decode_state, event_dicts
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import Scenario, get_scenario
from multiworld.world.state import WorldState

INIT_MODES = ("map", "views")


def check_deterministic(reader) -> None:
    """Refuse a stored world that ran the removed generative head (``model.sampler_steps`` > 0 in
    its attributes): its views came from noise this simulator no longer draws. Worlds recorded with
    ``sampler_steps`` 0 (the deterministic render, what the model renders now) resume as before."""
    steps = (reader.attrs.get("model") or {}).get("sampler_steps") or 0
    if steps:
        raise ValueError(
            f"stored world {reader.world_id!r} ran the model's generative head (sampler_steps={steps}), "
            "which was removed (it measured below the deterministic render: benchmarks/results/fidelity.md); "
            "it cannot be resumed exactly. Resume its symbolic state with the oracle backend instead"
        )


class ModelSimulator(InProcessSimulator):
    """B worlds of N agents simulated by a world-model checkpoint (default: the shipped one).

    ``init``: ``"map"`` (views, poses and the top-down map at reset) or ``"views"`` (views and
    poses only). Views are the renderer's deterministic render.
    ``precision``: ``"fp32"`` or ``"bf16"`` (autocast for the renderer); default bf16 on CUDA and on
    CPUs with bf16 instructions (2.7x faster renders on an AVX512-BF16 core, mean pixel change
    8e-5), fp32 elsewhere. The state update always runs in float32, so poses and tokens are
    exact, and the state stays float32 (what the store records).
    ``compile_render``: render with the renderer compiled by Inductor (``torch.compile``; needs a
    C++ compiler on CPUs): one to a few minutes of compiling at the first step (cached on disk
    for later processes), then 1.5-2x faster renders. Off by default. Its views agree with the eager
    render to float rounding, not bit for bit, so a stored world records the render path and is
    resumed exactly by a simulator on the same path (and precision).
    ``compile_update``: the state update compiled by Inductor as one graph (tens of seconds of
    compiling at the first step); a single world's step is mostly per-call overhead of its many
    small layers, which the compiled graph fuses. Its scene tokens and agent latents come out equal
    to the eager update's (they snap to the token lattice), poses and logits to float rounding, so a
    stored world records this path too.
    ``checkpoint_sha256`` names the weights (recorded with every stored world, checked on resume).
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
        precision: str | None = None,
        compile_render: bool = False,
        compile_update: bool = False,
        **arena_overrides,
    ) -> None:
        from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, read_config
        from multiworld.models.world_model import scenario_id

        self.scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
        self.arena = self.scenario.arena_config(num_agents=num_agents, **arena_overrides)
        self.num_worlds, self.num_agents = num_worlds, num_agents
        self.agent_names = agent_names(num_agents)
        self.device = resolve_device(device)
        if init not in INIT_MODES:
            raise ValueError(f"init must be one of {INIT_MODES}, got {init!r}")
        # ``model``: an already loaded world model (benchmarks, tests) instead of a checkpoint path.
        if model is None:
            path = pathlib.Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
            self.model = load_checkpoint(path, self.device)  # checks the weights against config.json
        else:
            self.model = model.to(self.device).eval()
        if not hasattr(self.model, "encode"):
            raise CheckpointError(
                f"checkpoint {checkpoint} is a {type(self.model).__name__}, not a latent world model; "
                "a stacked-frames checkpoint runs as the benchmarks' `stacked` variant (--stacked-checkpoint)"
            )
        self.scenario_index = scenario_id(self.scenario.name, self.model.cfg.worlds)  # the model's own table
        self.checkpoint_sha256 = read_config(path)["weights_sha256"] if model is None else weights_sha256(self.model)
        # The renderer's camera is explicit, so any image size and field of view works; it was
        # trained at 64x64, 90 degrees, where its fidelity is measured. The encoder reads the
        # reset views at the size it was trained on.
        render = render or RenderConfig()
        self.cam = render.camera  # the oracle's camera, near plane included
        self.sensor = Raycaster(RenderConfig(), device=self.device)
        precision = precision or default_precision(self.device)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        self.compile_render = bool(compile_render)
        self._compiled = None
        if self.compile_render:
            from multiworld.models.renderer import compile_renderer

            self._compiled = compile_renderer(self.model.renderer, freeze=precision == "bf16")
        self.compile_update = bool(compile_update)
        self._update = self.model.dynamics
        if self.compile_update:
            self._update = torch.compile(self.model.dynamics, fullgraph=True, dynamic=False)
        self.init, self.depth = init, depth
        self.latent = None
        self.readout: WorldState | None = None
        self.static: WorldState | None = None
        self.version = np.zeros(num_worlds, np.int64)
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
        """The observations the model starts from: every agent's view (and the map if ``init="map"``).

        The only place the oracle enters: its raycaster draws the views of the reset state (the
        sensor a real world would provide) and its top-down map draws the map image."""
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
        or exactly from stored packed ``tokens`` (B, S*S + N, D) with ``start`` the stored row
        (whose static scene, as read out at the world's reset, is kept)."""
        from multiworld.models.world_model import LatentState

        state = initial_state(self.arena, seeds, start, self.num_worlds, self.num_agents)
        if tokens is not None:
            if start is None:
                raise ValueError("tokens need the stored row they belong to as start")
            tok = np.asarray(tokens, np.float32)
            d = self.model.cfg.dim
            expected = (state.num_worlds, state.size * state.size + state.num_agents, d)
            if tok.shape != expected:
                raise ValueError(f"tokens must have shape {expected}, got {tok.shape}")
            if not np.isfinite(tok).all():
                raise ValueError("tokens contain NaN or infinite values (a row stored without tokens?)")
            self.latent = LatentState.unpack(tok, state.size, self.device)
            # The stored row is the readout of these tokens with the static scene read out at the
            # world's reset; the readout of this step differs from it only in the static cells.
            decoded = decode_state(self.model, self.latent, state)
            self.readout = state.copy()
            self.readout.walls, self.readout.floor, self.readout.goals = decoded.walls, decoded.floor, decoded.goals
            self.readout.poses = decoded.poses
            self.static = state.copy()
        else:
            self.latent = self._encode(state)
            self.readout = decode_state(self.model, self.latent, state)
            self.static = self.readout.copy()
        self.version = state.step.copy()

    def resume(self, sources, seeds: list[int]) -> Observation:
        """Continue every world exactly from a stored row (``sources``: one ``(reader, step)`` per
        world): its tokens and its static scene. A world stored without tokens (recorded by the
        oracle) starts from the observations of its stored state instead."""
        self.resume_state(sources, seeds)
        return self._first_observation()

    def resume_state(self, sources, seeds: list[int]) -> None:
        """:meth:`resume` without rendering (the Ray world actor's recovery)."""
        for reader, _ in sources:
            check_deterministic(reader)
        start = stored_states(sources, self.num_worlds)
        with_tokens = [reader.has_tokens for reader, _ in sources]
        if any(with_tokens) and not all(with_tokens):
            raise ValueError("cannot resume a batch mixing worlds stored with and without scene tokens")
        if not any(with_tokens):
            self.reset_state(seeds, start)
            return
        for reader, _ in sources:
            check_checkpoint(reader.world_id, reader.checkpoint_hash, self.checkpoint_sha256)
        tokens = np.stack([reader.tokens(int(t)) for reader, t in sources])
        self.reset_state(seeds, start, tokens)

    def record_attrs(self, world: int) -> dict:
        """What a stored copy of world ``world`` records besides the checkpoint's sha256 (the store's
        ``checkpoint_hash``): the reset mode, the render precision, and ``"render": "compiled"`` for
        the compiled render (its views differ from the eager render's by float rounding), ``"update":
        "compiled"`` for the compiled state update."""
        attrs = {"init": self.init, "precision": self.precision}
        if self.compile_render:
            attrs["render"] = "compiled"
        if self.compile_update:
            attrs["update"] = "compiled"
        return {"model": attrs}

    @torch.no_grad()
    def _restart(self, mask: np.ndarray, start: WorldState) -> None:
        fresh = self._encode(start)
        self.latent = self.latent.replace(mask, fresh)
        first = decode_state(self.model, fresh, start)
        self.readout = self.readout.replace_worlds(mask, first)
        self.static = self.static.replace_worlds(mask, first)
        self.version = self.version.copy()
        self.version[mask] = start.step

    # ----- step -------------------------------------------------------------------------------
    def payload(self) -> dict:
        """What a renderer replica needs to render a state version: the packed latent state."""
        return {"version": self.version.copy(), "tokens": self.tokens(), "size": self.arena.size}

    @torch.no_grad()
    def _update_latent(self, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """One state update of the latent state (eager or compiled) with joint ``actions`` (B, N):
        the step's outputs (events, rewards, endings); no readout."""
        scene, agents, out = self._update(self.latent.scene, self.latent.agents, actions, self._scen)
        self.latent = dataclasses.replace(self.latent, scene=scene, agents=agents)
        return out

    @torch.no_grad()
    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[dict]]]:
        if self.latent is None:
            raise RuntimeError("call reset() before step()")
        out = self._update_latent(torch.as_tensor(actions, device=self.device))
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

    @torch.no_grad()
    def ghost_boxes(self) -> np.ndarray:
        """``(B, M)``: the readout's boxes on a cell that does not decode as a box (the readout keeps
        a box where it last decoded one when no free cell decodes as a box: a half-written push)."""
        if self.readout is None:
            raise RuntimeError("call reset() first")
        box = self.model.heads.decode(self.latent.scene)["box"].cpu().numpy().astype(bool)
        r = self.readout
        return ~box[np.arange(r.num_worlds)[:, None], r.boxes[..., 0], r.boxes[..., 1]]

    def tokens(self) -> np.ndarray | None:
        """The whole latent state, packed: ``(B, S*S + N, D)`` (scene tokens, then agent tokens)."""
        return None if self.latent is None else self.latent.pack()

    def _render(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.view_owner is None:
            if self._compiled is not None:
                return self._compiled(self.latent.scene, self.latent.agents, cam=self.cam)
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

    def _observe(self, rewards: np.ndarray, terminated: np.ndarray, events: list[list[dict]]) -> Observation:
        # Inference mode: the views leave as numpy arrays, nothing of the render is kept.
        with torch.inference_mode(), self._autocast():
            rgb, depth = self._render()
        rgb = rgb.float().clamp(0, 1)
        return Observation(
            rgb=(rgb * 255).round().to(torch.uint8).cpu().numpy(),
            depth=depth.float().cpu().numpy().astype(np.float32) if self.depth else None,
            poses=self.latent.poses.float().cpu().numpy().astype(np.float32),
            rewards=rewards,
            terminated=np.asarray(terminated, bool),
            events=events,
            version=self.version.copy(),
        )
