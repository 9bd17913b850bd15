"""One camera: the oracle's renderer config and the learned model's geometry read the same one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from multiworld.models import geometry
from multiworld.world.arena import ArenaConfig, generate
from multiworld.world.camera import Camera
from multiworld.world.render import Raycaster, RenderConfig
from tests.helpers.model import save_tiny_checkpoint, tiny_world_model

# Every camera field away from its default, the near plane included.
ODD = RenderConfig(height=24, width=32, fov_degrees=70.0, eye_height=0.4, near=0.1)


def test_render_config_is_the_camera_plus_sprite_sizes():
    assert geometry.Camera is Camera  # the model's old name stays importable
    assert isinstance(ODD, Camera)
    cam = ODD.camera
    assert type(cam) is Camera and cam.camera is cam
    assert dataclasses.asdict(cam) == {"height": 24, "width": 32, "fov_degrees": 70.0, "eye_height": 0.4, "near": 0.1}
    assert RenderConfig().camera == Camera()
    with pytest.raises(ValueError, match="even"):
        Camera(height=31)
    with pytest.raises(ValueError, match="eye_height"):
        Camera(eye_height=1.5)


def test_oracle_pixels_project_to_themselves_through_the_model_geometry():
    """Every pixel's world point (oracle buffers) lands on that pixel's centre in the model's
    ``geometry.project`` with the config's camera."""
    state = generate(ArenaConfig(num_agents=3), [4, 5])
    views = Raycaster(ODD).render(state, buffers=True)
    cam = ODD.camera
    b, n, h, w = views.depth.shape
    points = views.points.reshape(b, n, h * w, 3)
    uv, depth, valid = geometry.project(points, torch.as_tensor(state.poses), cam)
    assert bool(valid.all())
    torch.testing.assert_close(depth, views.depth.reshape(b, n, -1), rtol=1e-5, atol=1e-5)
    col = (uv[..., 0] + 1) * (w / 2)
    row = (uv[..., 1] + 1) * (h / 2)
    rows, cols = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    torch.testing.assert_close(col, cols.reshape(-1).expand_as(col), rtol=0, atol=1e-3)
    torch.testing.assert_close(row, rows.reshape(-1).expand_as(row), rtol=0, atol=1e-3)


def test_model_backends_use_the_render_configs_camera(tmp_path):
    from multiworld.agents.actors import ModelRenderer
    from multiworld.runtime.model import ModelSimulator

    sim = ModelSimulator("roam-v0", 2, render=ODD, model=tiny_world_model())
    assert sim.cam == ODD.camera and sim.cam.near == 0.1
    replica = ModelRenderer(save_tiny_checkpoint(tmp_path / "tiny"), render=ODD)
    assert replica.cam == ODD.camera
    # The model's own default camera is the oracle's default one.
    model = tiny_world_model()
    assert model.encoder.cam == model.renderer.cam == RenderConfig().camera


def test_recorder_camera_metadata_is_the_camera():
    from multiworld.data.recorder import CAMERA_KEYS

    meta = ODD.metadata(far=np.float32(3.5))
    assert list(meta) == list(CAMERA_KEYS)
    assert meta == {**dataclasses.asdict(ODD.camera), "far": 3.5} and type(meta["far"]) is float
