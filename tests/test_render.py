"""The raycaster: geometry, buffers, correspondences between agents' views, maps."""

from __future__ import annotations

import numpy as np
import pytest

from multiworld.world.arena import ArenaConfig, generate
from multiworld.world.render import (
    ENTITY_CEILING,
    ENTITY_FLOOR,
    Raycaster,
    RenderConfig,
    entity_offsets,
    project,
)
from multiworld.world.topdown import mosaic, top_down
from tests.helpers.world import open_room


@pytest.fixture(scope="module")
def renderer() -> Raycaster:
    return Raycaster()


@pytest.mark.parametrize("distance", [1.5, 2.5, 4.5])
def test_wall_at_known_distance_has_the_expected_height(renderer, distance):
    state = open_room(size=8, poses=[(7.0 - distance, 3.5, 0.0)])  # facing the east wall at x = 7
    views = renderer.render(state, buffers=True)
    cfg = renderer.cfg
    column = cfg.width // 2
    wall = views.entity[0, 0, :, column] >= entity_offsets(8, 0, 0)["wall"]
    expected = cfg.focal / distance  # rows spanned by a wall of height 1
    assert abs(int(wall.sum()) - expected) <= 1.0
    # The wall is centred on the horizon because the eye is at half the wall height.
    rows = np.nonzero(wall.numpy())[0]
    assert abs((rows.min() + rows.max() + 1) / 2 - cfg.height / 2) <= 0.5
    np.testing.assert_allclose(views.depth[0, 0, wall, column].numpy(), distance, rtol=1e-5)
    # The cell seen is the east wall's cell in the agent's row.
    assert set(views.entity[0, 0, wall, column].tolist()) == {entity_offsets(8, 0, 0)["wall"] + 3 * 8 + 7}


def test_floor_below_and_ceiling_above_the_horizon(renderer):
    state = open_room(size=8, poses=[(4.0, 4.0, 0.3)])
    entity = renderer.render(state, buffers=True).entity[0, 0].numpy()
    h = renderer.cfg.height
    assert (entity[: h // 2] != ENTITY_FLOOR).all() and (entity[h // 2 :] != ENTITY_CEILING).all()
    assert (entity[0] == ENTITY_CEILING).all() and (entity[-1] == ENTITY_FLOOR).all()


def test_points_project_back_to_their_own_pixels(renderer):
    state = generate(ArenaConfig(num_agents=4), [0, 1])
    views = renderer.render(state, buffers=True)
    cfg = renderer.cfg
    rr, cc = np.mgrid[0 : cfg.height, 0 : cfg.width] + 0.5
    for b in range(2):
        for n in range(4):
            row, col, depth = project(views.points[b, n].numpy(), state.poses[b, n], cfg)
            np.testing.assert_allclose(row, rr, atol=2e-3)
            np.testing.assert_allclose(col, cc, atol=2e-3)
            np.testing.assert_allclose(depth, views.depth[b, n].numpy(), rtol=1e-4)


def test_points_seen_by_two_agents_land_on_the_same_world_point(renderer):
    """Cross-view correspondences: where B sees A's point unoccluded, B's buffer gives that point."""
    cfg = renderer.cfg
    state = generate(ArenaConfig(num_agents=6), range(4))
    views = renderer.render(state, buffers=True)
    sprite_start = entity_offsets(state.size, state.boxes.shape[1], state.items.shape[1])["item"]
    checked = agree = 0
    for b in range(4):
        for a in range(6):
            pts = views.points[b, a].numpy().reshape(-1, 3)
            static = views.entity[b, a].numpy().reshape(-1) < sprite_start  # billboards turn to face each viewer
            for o in range(6):
                if o == a:
                    continue
                row, col, depth = project(pts, state.poses[b, o], cfg)
                inside = static & (depth > 0.1) & (row >= 0) & (row < cfg.height) & (col >= 0) & (col < cfg.width)
                r, c = row[inside].astype(int), col[inside].astype(int)
                seen_depth = views.depth[b, o].numpy()[r, c]
                visible = np.abs(seen_depth - depth[inside]) < 0.02 * depth[inside]
                other = views.points[b, o].numpy()[r[visible], c[visible]]
                err = np.linalg.norm(other - pts[inside][visible], axis=-1)
                checked += int(visible.sum())
                agree += int((err < 0.05 * depth[inside][visible] + 0.05).sum())
    assert checked > 1000
    assert agree / checked > 0.97


def test_box_and_agent_pixels_carry_their_entity_ids(renderer):
    # Agent 0 looks east at a box two cells away, with agent 1 further away to its left.
    state = open_room(size=10, poses=[(1.5, 4.5, 0.0), (6.5, 2.0, np.pi)], boxes=[(4, 3)])
    views = renderer.render(state, buffers=True)
    offs = entity_offsets(10, 1, 0)
    seen = set(np.unique(views.entity[0, 0].numpy()).tolist())
    assert offs["box"] in seen
    assert offs["agent"] + 1 in seen  # agent 1 has colour id 1
    assert offs["agent"] + 0 not in seen  # an agent never sees its own body


def test_render_shapes_dtypes_and_config_validation():
    cfg = RenderConfig(height=32, width=48, fov_degrees=70)
    views = Raycaster(cfg).render(generate(ArenaConfig(num_agents=3), [0, 1]), buffers=True)
    assert views.rgb.shape == (2, 3, 32, 48, 3) and views.rgb.dtype.is_floating_point is False
    assert views.depth.shape == (2, 3, 32, 48) and views.points.shape == (2, 3, 32, 48, 3)
    with pytest.raises(ValueError, match="even"):
        RenderConfig(height=31)
    with pytest.raises(ValueError, match="fov"):
        RenderConfig(fov_degrees=200)


def test_top_down_map_and_mosaic():
    state = generate(ArenaConfig(num_agents=5), [0])
    img = top_down(state)
    assert img.shape == (1, 128, 128, 3) and img.dtype == np.uint8
    views = Raycaster().render(state).rgb[0].numpy()
    tile = mosaic(views, img[0])
    assert tile.dtype == np.uint8 and tile.shape[0] % 16 == 0 and tile.shape[1] % 16 == 0


def test_compiled_renderer_matches_eager_bit_for_bit():
    state = generate(ArenaConfig(num_agents=4), [5, 6])
    eager = Raycaster().render(state, buffers=True)
    compiled = Raycaster(compile=True).render(state, buffers=True)
    for name in ("rgb", "depth", "entity", "points"):
        assert bool((getattr(eager, name) == getattr(compiled, name)).all()), name
