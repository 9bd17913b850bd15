"""The model backend's fast render paths draw the views its reference render draws.

- Views at the policy's size: a 32x32 env's views are the renderer's own 32x32 render (no resize),
  rays stay independent at that size, and their fidelity to the oracle's 32x32 views is close to
  the 64x64 fidelity the model was trained for.
- The compiled render (Inductor, ``compile_render=True``) agrees with the eager render on the
  shipped checkpoint to float rounding, and a world resumes exactly on the path that wrote it.
- Resume from stored tokens is exact per precision (fp32 and bf16): same views, poses, rewards and
  events step for step.
- The compiled state update (``compile_update=True``) keeps the eager update's tokens, events and
  rewards over an episode, poses to float rounding.
- What the render skips (pieces the renderer left out, floor pixels nothing shows through) changes
  no pixel: compositing only the kept pieces is the pass over every slot, to the bit.

Speed itself is measured by ``benchmarks/vector_speed.py``, never here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import multiworld
from multiworld.bench.metrics import psnr
from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from multiworld.models.renderer import FREEZE_FROM_VIEWS, composite_pieces, floor_depth
from multiworld.sim.model import ModelSimulator
from multiworld.world.camera import Camera
from multiworld.world.render import Raycaster, RenderConfig


def has_cpp_compiler() -> bool:
    """Inductor's CPU backend compiles C++: without a compiler the compiled path cannot run."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(DEFAULT_CHECKPOINT, torch.device("cpu"))


def uint8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def stepped(sim: ModelSimulator, steps: int, seed: int = 0):
    """Step ``sim`` with random joint actions; the actions."""
    rng = np.random.default_rng(seed)
    actions = [rng.integers(0, 8, (sim.num_worlds, sim.num_agents)) for _ in range(steps)]
    for a in actions:
        sim.step(a)
    return actions


def test_32x32_views_are_rendered_at_32x32(shipped):
    env = multiworld.vector_env(
        num_envs=2, num_agents=3, backend="model", height=32, width=32, precision="fp32", model=shipped
    )
    obs, _ = env.reset(seed=11)
    obs, *_ = env.step(np.random.default_rng(1).integers(0, 8, (2, 3)))
    assert obs.shape == (2, 3, 32, 32, 3)
    cam = Camera(height=32, width=32)
    with torch.no_grad():
        rgb, _ = shipped.render(env.sim.latent, cam)
        cols = torch.tensor([0, 5, 17, 31])
        part, _ = shipped.renderer(env.sim.latent.scene, env.sim.latent.agents, columns=cols, cam=cam)
    np.testing.assert_array_equal(obs, uint8(rgb))  # the renderer's own 32x32 render, not a resize
    # Rays are independent at any size: a few columns alone render as in the whole image.
    torch.testing.assert_close(part, rgb[:, :, :, cols], atol=1e-5, rtol=0)


def test_32x32_fidelity_is_close_to_the_trained_size(shipped):
    """The camera is explicit, so the 64x64-trained model renders 32x32 views about as faithfully
    (PSNR against the oracle's views of the same reset states)."""
    fidelity = {}
    for size in (32, 64):
        kw = {"num_envs": 3, "num_agents": 2, "height": size, "width": size, "seed": 21}
        model = multiworld.vector_env(backend="model", precision="fp32", model=shipped, **kw)
        oracle = multiworld.vector_env(backend="oracle", **kw)
        fidelity[size] = float(psnr(model.reset(seed=21)[0], oracle.reset(seed=21)[0]).mean())
    assert fidelity[32] > fidelity[64] - 3.0, fidelity


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_from_tokens_is_exact_per_precision(shipped, precision):
    live = ModelSimulator("forage-v0", 3, num_worlds=2, precision=precision, model=shipped)
    live.reset([5, 6])
    stepped(live, 3, seed=1)
    start, tokens = live.world_state(), live.tokens()
    again = ModelSimulator("forage-v0", 3, num_worlds=2, precision=precision, model=shipped)
    first = again.reset([5, 6], start=start, tokens=tokens)
    assert np.array_equal(first.poses, live.latent.poses.numpy())
    for a in np.random.default_rng(2).integers(0, 8, (4, 2, 3)):
        x, y = live.step(a), again.step(a)
        assert np.array_equal(x.rgb, y.rgb) and np.array_equal(x.poses, y.poses)
        assert np.array_equal(x.rewards, y.rewards) and x.events == y.events
    assert np.array_equal(live.tokens(), again.tokens())


@pytest.mark.skipif(not has_cpp_compiler(), reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_render_agrees_with_eager_and_resumes_exactly(shipped):
    """One compile (about a minute or two on a small CPU) serves both checks: the second simulator
    shares the model, so it reuses the compiled code."""
    render = RenderConfig(height=32, width=32)
    kw = {"num_worlds": 2, "precision": "fp32", "model": shipped, "render": render}
    eager = ModelSimulator("forage-v0", 2, **kw)
    compiled = ModelSimulator("forage-v0", 2, compile_render=True, **kw)
    assert compiled.record_attrs(0)["model"]["render"] == "compiled"
    assert "render" not in eager.record_attrs(0)["model"]
    for sim in (eager, compiled):
        sim.reset([3, 4])
        stepped(sim, 2, seed=3)
    assert np.array_equal(eager.tokens(), compiled.tokens())  # the state update never changes path
    with torch.inference_mode():
        ref, ref_depth = eager._render()
        got, got_depth = compiled._render()
    # Fusion reorders float arithmetic: the views agree to rounding, and so does their fidelity.
    assert (got - ref).abs().max().item() < 1e-4
    assert (got_depth - ref_depth).abs().max().item() < 1e-3
    truth = Raycaster(render).render(compiled.world_state()).rgb.numpy()  # the oracle's views of the readout
    assert abs(float(psnr(uint8(got), truth).mean()) - float(psnr(uint8(ref), truth).mean())) < 0.5

    # Exact resume on the compiled path: same views step for step from the stored tokens.
    start, tokens = compiled.world_state(), compiled.tokens()
    again = ModelSimulator("forage-v0", 2, compile_render=True, **kw)
    again.reset([3, 4], start=start, tokens=tokens)
    for a in np.random.default_rng(4).integers(0, 8, (3, 2, 2)):
        assert np.array_equal(compiled.step(a).rgb, again.step(a).rgb)


def composite_every_slot(t_hit, out, row_tan, gain, cam, z_bins):
    """The plain front-to-back pass over every slot, skipped pieces included."""
    opacity, top = torch.sigmoid(out[..., 0]), 1.2 * torch.sigmoid(out[..., 1])
    coef = out[..., 3:].unflatten(-1, (z_bins, 3))
    r, h = t_hit.shape[0], row_tan.shape[0]
    trans, rgb, depth = torch.ones(r, h), [torch.zeros(r, h) for _ in range(3)], torch.zeros(r, h)
    for i in range(t_hit.shape[1]):
        t = t_hit[:, i, None]
        z = cam.eye_height + row_tan * t
        px = cam.focal / t
        cover = torch.sigmoid((top[:, i, None] - z) * px * gain) * torch.sigmoid(z * px * gain)
        alpha = opacity[:, i, None] * cover * (t < floor_depth(row_tan, cam))
        weight = alpha * trans
        zi = z.clamp(0, 1) * (z_bins - 1)
        i0 = zi.floor().clamp(max=z_bins - 2)
        frac, i0 = zi - i0, i0.long()
        for ch in range(3):
            c = coef[:, i, :, ch]
            rgb[ch] = rgb[ch] + weight * torch.sigmoid(torch.lerp(c.gather(1, i0), c.gather(1, i0 + 1), frac))
        depth = depth + weight * t
        trans = trans * (1 - alpha + 1e-6)
    return torch.stack(rgb, -1), depth, trans


def test_compositing_only_the_kept_pieces_is_the_pass_over_every_slot():
    cam = Camera(height=32, width=32)
    g = torch.Generator().manual_seed(0)
    t_hit = (torch.rand(300, 10, generator=g) * 8 + 0.1).sort(-1).values
    out = torch.randn(300, 10, 3 + 3 * 16, generator=g) * 3
    skipped = torch.rand(300, 10, generator=g) < 0.6
    skipped[:20] = True  # rays with no piece at all
    out[..., 0] = torch.where(skipped, torch.tensor(-1e4), out[..., 0])
    gain = torch.tensor(2.5)
    got = composite_pieces(t_hit, out, cam.row_tan(), gain, cam, 16)
    want = composite_every_slot(t_hit, out, cam.row_tan(), gain, cam, 16)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # Gradients flow through the kept pieces as through the full pass (training composites too).
    out.requires_grad_(True)
    (composite_pieces(t_hit, out, cam.row_tan(), gain, cam, 16)[0].sum()).backward()
    assert out.grad[~skipped].abs().sum() > 0 and out.grad[skipped].abs().sum() == 0


def test_the_floor_is_read_only_where_it_shows(shipped):
    """The floor network reads exactly the pixels below the horizon that the pieces in front leave
    more than 0.1% of (the others were black before it read them too)."""
    env = multiworld.vector_env(num_envs=2, num_agents=2, backend="model", precision="fp32", model=shipped)
    env.reset(seed=5)
    scene, agents = env.sim.latent.scene, env.sim.latent.agents
    renderer, cam = shipped.renderer, shipped.renderer.cam
    calls = []
    hook = renderer.floor.register_forward_hook(lambda _, args, __: calls.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            renderer(scene, agents)
            views = torch.arange(agents.shape[1])
            _, _, t_hit, out = renderer.pieces(scene, agents, views, cam.cam_x(), cam)
            k = t_hit.shape[-1]
            rest = renderer.composite(t_hit.reshape(-1, k), out.reshape(-1, k, out.shape[-1]), cam)[2]
    finally:
        hook.remove()
    shows = int((rest[:, cam.height // 2 :] > 1e-3).sum())
    assert calls == [shows]
    assert 0 < shows < rest[:, cam.height // 2 :].numel()  # walls hide part of the floor


@pytest.mark.skipif(not has_cpp_compiler(), reason="torch.compile's CPU backend needs a C++ compiler")
def test_frozen_bf16_compiled_render_agrees_with_eager(shipped):
    """bf16 batches of 16 views or more compile with the weights frozen in (oneDNN linear layers):
    the same views to bf16 rounding, and exact resume on that path."""
    render = RenderConfig(height=32, width=32)
    kw = {"num_worlds": 4, "precision": "bf16", "model": shipped, "render": render}
    assert 4 * 4 >= FREEZE_FROM_VIEWS
    eager = ModelSimulator("forage-v0", 4, **kw)
    compiled = ModelSimulator("forage-v0", 4, compile_render=True, **kw)
    for sim in (eager, compiled):
        sim.reset([7, 8, 9, 10])
        stepped(sim, 2, seed=5)
    with torch.inference_mode(), eager._autocast():
        ref, _ = eager._render()
        got, _ = compiled._render()
    truth = Raycaster(render).render(compiled.world_state()).rgb.numpy()
    assert abs(float(psnr(uint8(got), truth).mean()) - float(psnr(uint8(ref), truth).mean())) < 0.5
    assert (got.float() - ref.float()).abs().mean().item() < 0.01
    start, tokens = compiled.world_state(), compiled.tokens()
    again = ModelSimulator("forage-v0", 4, compile_render=True, **kw)
    again.reset([7, 8, 9, 10], start=start, tokens=tokens)
    for a in np.random.default_rng(6).integers(0, 8, (2, 4, 4)):
        assert np.array_equal(compiled.step(a).rgb, again.step(a).rgb)


@pytest.mark.skipif(not has_cpp_compiler(), reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_state_update_keeps_the_eager_worlds(shipped):
    """The state update compiled as one graph (``compile_update=True``) moves agents, pushes boxes
    and pays as the eager update over a scripted push-v0 episode: the same events and rewards, the
    same scene tokens and agent latents (they snap to the token lattice), poses to float rounding
    (the motion loop runs out its iterations instead of stopping early); and it records its path."""
    from multiworld.agents.policies import make_policy

    render = RenderConfig(height=16, width=16)
    kw = {"num_worlds": 2, "precision": "fp32", "model": shipped, "render": render}
    eager = ModelSimulator("push-v0", 4, **kw)
    compiled = ModelSimulator("push-v0", 4, compile_update=True, **kw)
    assert compiled.record_attrs(0)["model"]["update"] == "compiled"
    assert "update" not in eager.record_attrs(0)["model"]
    policy = make_policy("scripted", seed=0)
    for sim in (eager, compiled):
        sim.reset([11, 12])
    events = 0
    for _ in range(40):
        a = policy.act(eager.world_state())
        x, y = eager.step(a), compiled.step(a)
        te, tc = eager.tokens(), compiled.tokens()  # (B, S*S + N, D): scene tokens, then agents'
        cells = te.shape[1] - 4
        assert np.array_equal(te[:, :cells], tc[:, :cells]) and np.array_equal(te[:, cells:, 3:], tc[:, cells:, 3:])
        assert np.abs(te[:, cells:, :3] - tc[:, cells:, :3]).max() < 1e-4  # poses: fusion rounds differently
        assert np.array_equal(x.rewards, y.rewards) and x.events == y.events
        assert np.array_equal(x.terminated, y.terminated)
        events += sum(len(e) for e in x.events)
    assert events > 0, "the episode had events to compare"
