"""`multiworld view`: the API (ids, steps, images, compare, fork, broken stores), the HTTP server,
and the page itself in headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

The browser tests fail when Chromium is missing; set MULTIWORLD_SKIP_BROWSER=1 to skip them.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from multiworld.cli import main
from multiworld.state import WorldStore
from multiworld.viewer.api import ApiError, Viewer, _shared_rows
from multiworld.viewer.demo import FORK, TWIN, WORLD, build_demo_store
from multiworld.viewer.png import decode_png, encode_png
from multiworld.viewer.server import make_server
from multiworld.viewer.views import psnr

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> pathlib.Path:
    """The demo store: an oracle run with frames, its twin without frames, a fork continued."""
    path = tmp_path_factory.mktemp("viewer") / "demo.zarr"
    build_demo_store(path, steps=60, fork_step=20, fork_steps=15)
    return path


@pytest.fixture()
def store_copy(demo, tmp_path) -> pathlib.Path:
    path = tmp_path / "copy.zarr"
    shutil.copytree(demo, path)
    return path


class Client:
    """Raw HTTP against a running server (http.client: nothing normalises the paths we send)."""

    def __init__(self, server):
        self.server = server

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            res = conn.getresponse()
            return res.status, dict(res.getheaders()), res.read()
        finally:
            conn.close()

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def json(self, path: str):
        status, _, body = self.get(path)
        return status, json.loads(body)


@pytest.fixture()
def serve():
    servers = []

    def start(store, **kw) -> Client:
        server = make_server(str(store), port=0, **kw)
        server.start_background()
        servers.append(server)
        return Client(server)

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()
        s.viewer.close()


def expected_marks(reader) -> set[tuple[int, str]]:
    """One timeline mark per (step, type): the store's events, reward steps, ending steps."""
    marks = set()
    for t, row in enumerate(reader.read("events")):
        for ev in row:
            kind = ev.get("type")
            marks.add((t, kind if kind in ("push", "pickup", "reward", "end") else "other"))
    rewards = np.nan_to_num(reader.rewards())
    marks |= {(int(t), "reward") for t in np.flatnonzero((rewards != 0).any(axis=1))}
    ends = reader.terminations().any(axis=1) | reader.truncations().any(axis=1)
    marks |= {(int(t), "end") for t in np.flatnonzero(ends)}
    return marks


def tree_snapshot(path: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- PNG
@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 3), (64, 256, 3), (9, 4)])
def test_png_round_trip(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(img)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert np.array_equal(decode_png(data), img)


def test_png_is_readable_by_an_independent_decoder():
    import imageio.v3 as imageio  # a dependency of the package, with its PNG plugin (Pillow)

    img = np.random.default_rng(1).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    got = imageio.imread(encode_png(img), extension=".png")
    assert got.shape == img.shape and np.array_equal(got, img)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((0, 3, 3))])
def test_png_rejects_what_it_cannot_encode(bad):
    with pytest.raises(ValueError):
        encode_png(bad)


# ----------------------------------------------------------------------------- the API
def test_store_lists_every_world_newest_first_with_the_fork_link(demo):
    viewer = Viewer(str(demo))
    info = viewer.store_info()
    ids = [w["id"] for w in info["worlds"]]
    assert ids == [FORK, TWIN, WORLD]  # created in this order
    fork = info["worlds"][0]
    assert fork["parent"] == {"world": WORLD, "step": 20}
    assert fork["steps"] == 36 and fork["backend"] == "oracle" and fork["views"] == "stored"
    twin = info["worlds"][1]
    assert twin["views"] == "oracle" and "rendered from the stored state" in twin["views_note"]
    assert info["scenarios"] == ["forage-v0"] and info["read_only"] is False


def test_views_and_map_are_the_stored_frames_and_the_top_down_map(demo):
    from multiworld.world.topdown import top_down

    viewer = Viewer(str(demo))
    reader = WorldStore.open(demo, mode="r").world(WORLD)
    for t in (0, 7, reader.last_step):
        views = decode_png(viewer.views_png(WORLD, str(t)))
        frames = reader.frames(t)
        n, h, w, _ = frames.shape
        assert views.shape == (h, n * w, 3)
        for i in range(n):
            assert np.array_equal(views[:, i * w : (i + 1) * w], frames[i])
        assert np.array_equal(decode_png(viewer.map_png(WORLD, t)), top_down(reader.state(t), cell_px=8)[0])


def test_map_painter_draws_the_pixels_of_top_down_anywhere(demo):
    from multiworld.viewer.maps import MapPainter
    from multiworld.world.topdown import top_down

    state = WorldStore.open(demo, mode="r").world(WORLD).state(0)
    painter = MapPainter(WorldStore.open(demo, mode="r").world(WORLD).static)
    rng = np.random.default_rng(0)
    n = state.num_agents
    for _ in range(100):  # poses anywhere, off the map too; boxes and items anywhere, alive or not
        state.poses[0] = np.stack([rng.uniform(-1, 17, n), rng.uniform(-1, 17, n), rng.uniform(-7, 7, n)], -1)
        state.boxes[0] = rng.integers(0, 16, state.boxes.shape[1:])
        state.items_alive[0] = rng.random(state.items_alive.shape[1]) < 0.5
        got = painter.paint(state.poses[0], state.boxes[0], state.items_alive[0])
        assert np.array_equal(got, top_down(state)[0])


def test_a_world_without_frames_renders_the_views_of_its_stored_state(demo):
    """The twin ran the same seed and actions without recording frames: its on-demand views are
    the recorded ones of the original, pixel for pixel."""
    viewer = Viewer(str(demo))
    reader = WorldStore.open(demo, mode="r").world(WORLD)
    for t in (0, 30):
        got = decode_png(viewer.views_png(TWIN, t))
        frames = reader.frames(t)
        assert np.array_equal(got, np.concatenate(list(frames), axis=1))


def test_world_description_track_marks_and_events(demo):
    viewer = Viewer(str(demo))
    reader = WorldStore.open(demo, mode="r").world(FORK)
    s = viewer.world(FORK)
    assert s["steps"] == reader.steps and s["agent_names"] == reader.agents and s["size"] == 16
    assert s["lineage"] == [[WORLD, 20], [FORK, reader.last_step]]
    assert {c["id"]: c["relation"] for c in s["compare"]} == {WORLD: "parent", TWIN: "same seed, oracle"}
    assert viewer.world(WORLD)["children"] == [{"id": FORK, "step": 20}]
    # The track: u32 steps, u32 agents, float32 poses (steps, agents, 3), float32 returns (agents, steps).
    track = viewer.track(FORK)
    n, agents = np.frombuffer(track[:8], "<u4")
    assert (n, agents) == (reader.steps, len(reader.agents))
    poses = np.frombuffer(track[8 : 8 + n * agents * 12], "<f4").reshape(n, agents, 3)
    returns = np.frombuffer(track[8 + n * agents * 12 :], "<f4").reshape(agents, n)
    assert np.array_equal(poses, reader.poses())
    assert np.allclose(returns, np.cumsum(np.nan_to_num(reader.rewards()), axis=0).T, atol=1e-5)
    # The marks: every (step, kind) of the store's events, reward steps and ending steps.
    marks = viewer.marks(FORK)
    assert {(t, kind) for kind, steps in marks["marks"].items() for t in steps} == expected_marks(reader)
    assert marks["counts"]["pickup"] == sum(e["type"] == "pickup" for row in reader.read("events") for e in row)
    # The events of a range of steps: the store's as recorded, then the derived ones.
    got = viewer.events(FORK, "0", str(reader.steps))["events"]
    stored = [(t, ev["type"]) for t, row in enumerate(reader.read("events")) for ev in row]
    assert [(e["step"], e["type"]) for e in got if e["type"] not in ("reward", "end")] == stored
    assert {(e["step"], e["type"]) for e in got} == expected_marks(reader)
    end = [e for e in got if e["type"] == "end"]
    assert end == [{"type": "end", "step": reader.last_step, "terminated": [], "truncated": reader.agents}]
    for bad, status in ((("5", "5"), 400), (("0", "2000"), 400), (("0", "999"), 404), (("a", "3"), 400)):
        with pytest.raises(ApiError) as e:
            viewer.events(FORK, *bad)
        assert e.value.status == status


def test_compare_fork_with_parent_from_the_fork_step(demo):
    viewer = Viewer(str(demo))
    c = viewer.compare(FORK, WORLD)
    assert c["shared_steps"] == 21 and c["start"] == 20 and c["stop"] == 36 and c["psnr_problem"] is None
    assert c["actions_differ_at"] == 21
    got = viewer.psnr(FORK, WORLD, "18", "36")["psnr"]
    store = WorldStore.open(demo, mode="r")
    a, b = store.world(FORK).read("frames", 21, 36), store.world(WORLD).read("frames", 21, 36)
    assert got[:3] == [100.0, 100.0, 100.0]  # shared rows are the same rows
    assert np.allclose(got[3:], psnr(a, b), atol=1e-3)
    assert min(got[3:]) < 40  # random actions took the fork elsewhere
    # The twin: same seed and actions, views rendered from state: identical to the recorded ones.
    twin = viewer.compare(WORLD, TWIN)
    assert twin["actions_differ_at"] is None and twin["shared_steps"] == 0
    assert viewer.psnr(WORLD, TWIN, 0, 20)["psnr"] == [100.0] * 20


def test_shared_rows_follow_fork_chains():
    root = [("r", 99)]
    child = [("r", 50), ("c", 70)]
    grandchild = [("r", 50), ("c", 60), ("g", 80)]
    assert _shared_rows(root, child) == 51
    assert _shared_rows(child, grandchild) == 61
    assert _shared_rows(root, grandchild) == 51
    assert _shared_rows(root, [("x", 10)]) == 0


@pytest.mark.parametrize("bad", ["../x", "..", ".hidden", "zarr.json", "a/b", "x" * 129, "%2e%2e", "", "w0\x00"])
def test_bad_world_ids_are_refused(demo, bad):
    viewer = Viewer(str(demo))
    for call in (viewer.world, lambda i: viewer.views_png(i, 0), lambda i: viewer.map_png(i, 0)):
        with pytest.raises(ApiError) as e:
            call(bad)
        assert e.value.status == 400 and "invalid world id" in e.value.message


@pytest.mark.parametrize(
    ("step", "status"),
    [("-1", 400), ("1.5", 400), ("1e3", 400), (" 1", 400), ("0x1", 400), ("\u0661", 400), ("61", 404), ("9" * 10, 404)],
)
def test_bad_steps_are_refused(demo, step, status):
    viewer = Viewer(str(demo))
    with pytest.raises(ApiError) as e:
        viewer.views_png(WORLD, step)
    assert e.value.status == status
    assert "step" in e.value.message


def test_unknown_world_is_404(demo):
    with pytest.raises(ApiError) as e:
        Viewer(str(demo)).world("nope")
    assert e.value.status == 404 and "no world 'nope'" in e.value.message


def test_fork_creates_a_branch_and_copies_nothing(store_copy):
    viewer = Viewer(str(store_copy))
    before = tree_snapshot(store_copy / "worlds" / WORLD)
    out = viewer.fork(WORLD, "33")
    assert out["parent"] == WORLD and out["step"] == 33
    store = WorldStore.open(store_copy, mode="r")
    child = store.world(out["id"])
    assert child.parent == {"world": WORLD, "step": 33} and child.steps == 34
    assert np.array_equal(child.frames(33), store.world(WORLD).frames(33))
    assert tree_snapshot(store_copy / "worlds" / WORLD) == before  # the parent is untouched
    assert out["id"] in [w["id"] for w in viewer.store_info()["worlds"]]


def test_read_only_viewer_refuses_to_fork(store_copy):
    viewer = Viewer(str(store_copy), read_only=True)
    with pytest.raises(ApiError) as e:
        viewer.fork(WORLD, 3)
    assert e.value.status == 403
    assert WorldStore.open(store_copy, mode="r").worlds() == sorted([WORLD, TWIN, FORK])


def test_object_store_urls_are_read_only_by_default():
    from multiworld.viewer.api import is_local_url

    assert is_local_url("runs/a/world.zarr") and is_local_url("file:///x")
    assert not is_local_url("s3://bucket/x") and not is_local_url("memory://x")


def test_model_world_without_frames_renders_from_its_tokens(tmp_path):
    """A model run recorded with frames and the same run without: the views rendered from the
    stored tokens with the recorded checkpoint are the recorded views."""
    out = tmp_path / "run"
    argv = ["run", "--backend", "model", "--agents", "2", "--steps", "6", "--seed", "4", "--no-video"]
    argv += ["--out", str(out)]
    assert main(argv) == 0
    assert main([*argv, "--no-frames"]) == 0
    viewer = Viewer(str(out / "world.zarr"))
    worlds = {w["id"]: w for w in viewer.store_info()["worlds"]}
    assert worlds["ep000"]["views"] == "stored" and worlds["ep001"]["views"] == "model"
    assert worlds["ep001"]["checkpoint_name"] == "default"  # the run recorded the checkpoint's hash
    recorded = WorldStore.open(out / "world.zarr", mode="r").world("ep000")
    for t in (0, 6):
        assert np.array_equal(decode_png(viewer.views_png("ep001", t)), np.concatenate(list(recorded.frames(t)), 1))
    # The oracle run of the same seed and (random policy) actions: the model against the oracle.
    assert main([*argv[:2], "oracle", *argv[3:]]) == 0
    viewer = Viewer(str(out / "world.zarr"))
    assert {"id": "ep002", "relation": "same seed, oracle", "step": 0} in viewer.world("ep000")["compare"]
    c = viewer.compare("ep000", "ep002")
    assert c["actions_differ_at"] is None and c["shared_steps"] == 0 and c["psnr_problem"] is None
    values = viewer.psnr("ep000", "ep002", 0, 7)["psnr"]
    assert all(10 < v < 40 for v in values)  # the learned model's views are close to the oracle's, not equal


def test_model_world_of_an_unknown_checkpoint_says_so(tmp_path):
    from multiworld.state import synthetic as syn

    shapes = syn.Shapes(agents=2, tokens=(16 * 16 + 2, 32), tokens_dtype="float32")
    with WorldStore.open(tmp_path / "s.zarr", mode="w") as store:
        w = store.create_world(
            "m",
            syn.initial_state(0, shapes),
            scenario="forage-v0",
            seed=0,
            config={"backend": "model"},
            checkpoint_hash="ab" * 32,
            **shapes.world_kwargs(),
            **syn.initial_extras(0, shapes),
        )
        w.close()
    viewer = Viewer(str(tmp_path / "s.zarr"))
    info = viewer.world("m")
    assert info["views"] is None and "abababababab" in info["views_note"] and "--checkpoint" in info["views_note"]
    with pytest.raises(ApiError) as e:
        viewer.views_png("m", 0)
    assert e.value.status == 404 and "not available" in e.value.message
    assert decode_png(viewer.map_png("m", 0)).shape == (64, 64, 3)  # the map needs no views


# ----------------------------------------------------------------------------- HTTP
def test_http_serves_the_page_and_the_api(demo, serve):
    client = serve(demo)
    status, headers, body = client.get("/")
    assert status == 200 and b"/static/app.js" in body and "script-src 'self'" in headers["Content-Security-Policy"]
    for path in ("/static/app.js", "/static/style.css"):
        assert client.get(path)[0] == 200
    status, info = client.json("/api/store")
    assert status == 200 and len(info["worlds"]) == 3
    status, headers, body = client.get(f"/api/worlds/{WORLD}/views/5.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and decode_png(body).shape == (64, 256, 3)
    status, c = client.json(f"/api/compare?a={FORK}&b={WORLD}")
    assert status == 200 and c["start"] == 20
    status, p = client.json(f"/api/psnr?a={FORK}&b={WORLD}&start=20&stop=30")
    assert status == 200 and len(p["psnr"]) == 10


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/api/worlds/..%2F..%2Fetc/views/0.png", 400, "invalid world id"),
        ("/api/worlds/%2e%2e/views/0.png", 400, "invalid world id"),
        ("/api/worlds/../views/0.png", 400, "invalid world id"),
        ("/api/worlds/.hidden", 400, "invalid world id"),
        ("/api/worlds/nope/views/0.png", 404, "no world"),
        (f"/api/worlds/{WORLD}/views/-1.png", 400, "non-negative integer"),
        (f"/api/worlds/{WORLD}/views/abc.png", 400, "non-negative integer"),
        (f"/api/worlds/{WORLD}/views/99999.png", 404, "outside world"),
        (f"/api/worlds/{WORLD}/map/61.png", 404, "outside world"),
        (f"/api/worlds/{WORLD}/map/1%2E5.png", 400, "non-negative integer"),
        (f"/api/psnr?a={WORLD}&b={FORK}&start=0&stop=999", 404, "both worlds"),
        (f"/api/psnr?a={WORLD}&b={WORLD}&start=0&stop=3", 400, "two different worlds"),
        (f"/api/psnr?a={WORLD}&start=0&stop=3", 400, "'b'"),
        ("/api/compare?a=x&a=y&b=z", 400, "'a'"),
        ("/static/../../etc/passwd", 404, "no such page"),
        ("/static/app.py", 404, "no such page"),
        ("/etc/passwd", 404, "no such page"),
    ],
)
def test_http_refuses_bad_ids_and_steps_with_a_clear_json_error(demo, serve, path, status, words):
    got, headers, body = serve(demo).get(path)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert words in json.loads(body)["error"]


def test_http_refuses_foreign_hosts_and_cross_site_forks(store_copy, serve):
    client = serve(store_copy)
    status, _, body = client.get("/api/store", headers={"Host": "evil.example:80"})
    assert status == 421 and b"Host" in body
    fork = f"/api/worlds/{WORLD}/fork"
    good = {"Content-Type": "application/json"}
    body = json.dumps({"step": 3}).encode()
    assert client.request("GET", fork)[0] == 405
    assert client.request("POST", fork, body, {"Content-Type": "text/plain"})[0] == 415
    origin = {**good, "Origin": "http://evil.example"}
    assert client.request("POST", fork, body, origin)[0] == 403
    for bad in (b"{", b'{"step": -1}', b'{"step": "3"}', b'{"step": true}', b"[3]", b'{"step": 1e3}'):
        status, _, _ = client.request("POST", fork, bad, good)
        assert status == 400, bad
    assert client.request("POST", fork, json.dumps({"step": 999}).encode(), good)[0] == 404
    assert WorldStore.open(store_copy, mode="r").worlds() == sorted([WORLD, TWIN, FORK])  # nothing forked yet
    status, _, res = client.request("POST", fork, body, {**good, "Origin": f"http://127.0.0.1:{client.server.port}"})
    assert status == 200 and json.loads(res)["step"] == 3


def test_http_never_writes_to_the_store_on_reads(store_copy, serve):
    client = serve(store_copy)
    before = tree_snapshot(store_copy)
    reads = ["/", "/api/store", f"/api/worlds/{FORK}", f"/api/worlds/{TWIN}/views/3.png"]
    reads.append(f"/api/worlds/{FORK}/map/30.png")
    for path in reads:
        assert client.get(path)[0] == 200
    client.get(f"/api/psnr?a={FORK}&b={WORLD}&start=20&stop=36")
    client.get("/api/worlds/../views/0.png")
    assert tree_snapshot(store_copy) == before


def test_read_only_server_has_no_fork(store_copy, serve):
    client = serve(store_copy, read_only=True)
    assert client.json("/api/store")[1]["read_only"] is True
    status, _, body = client.request(
        "POST", f"/api/worlds/{WORLD}/fork", b'{"step": 1}', {"Content-Type": "application/json"}
    )
    assert status == 403 and b"read-only" in body


def test_corrupt_and_vanished_stores_give_clear_errors(store_copy, serve):
    client = serve(store_copy)
    # A committed row's chunk is gone: the API names the world, array and row.
    shard = store_copy / "worlds" / WORLD / "frames" / "c.0.0.0.0.0"
    shard.write_bytes(shard.read_bytes()[:100])
    status, _, body = client.get(f"/api/worlds/{WORLD}/views/4.png")
    assert status == 500 and b"corrupt store" in body and WORLD.encode() in body
    # The world's metadata is garbage.
    (store_copy / "worlds" / TWIN / "zarr.json").write_text("{not json")
    status, _, body = client.get(f"/api/worlds/{TWIN}")
    assert status == 500 and TWIN.encode() in body
    # The root is no longer a multiworld store: an error page, and the API says so.
    (store_copy / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    status, headers, body = client.get("/")
    assert status == 503 and headers["Content-Type"].startswith("text/html") and b"not a multiworld store" in body
    assert client.get("/api/store")[0] == 500
    # The store is gone.
    shutil.rmtree(store_copy)
    status, _, body = client.get("/api/store")
    assert status == 503 and b"the store is gone" in body


# ----------------------------------------------------------------------------- CLI
def test_cli_view_errors_on_missing_foreign_and_corrupt_stores(tmp_path, capsys):
    assert main(["view", str(tmp_path / "missing.zarr"), "--port", "0"]) == 2
    assert "no multiworld store" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("hello")
    assert main(["view", str(tmp_path / "foreign"), "--port", "0"]) == 2
    assert "not a multiworld store" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "zarr.json").write_text("{oops")
    assert main(["view", str(tmp_path / "bad"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("multiworld view: error:") and "zarr.json" in err


def test_cli_view_serves_until_interrupted(demo):
    """The real command in a subprocess: it prints its URL, serves the page, binds 127.0.0.1."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "multiworld.cli", "view", str(demo), "--port", "0", "--read-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "serving" in line and "read-only" in line and "http://127.0.0.1:" in line
        port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/store")
        res = conn.getresponse()
        assert res.status == 200 and json.loads(res.read())["read_only"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_run_ends_by_printing_the_view_command_for_its_store(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--backend", "oracle", "--agents", "2", "--steps", "3", "--out", str(out), "--no-video"]) == 0
    assert f"look inside: multiworld view {out / 'world.zarr'}" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the page in Chromium
@pytest.fixture(scope="module")
def browser():
    if os.environ.get("MULTIWORLD_SKIP_BROWSER") == "1":
        pytest.skip("MULTIWORLD_SKIP_BROWSER=1")
    from multiworld.viewer.browser import chromium

    driver = chromium()  # BrowserUnavailable fails the test loudly: CI installs chromium
    yield driver
    driver.quit()


def _open(driver, client, route: str, ready: str):
    from multiworld.viewer.browser import wait_for

    driver.get_log("browser")  # what earlier pages logged is theirs (see _browser_errors)
    port = client.server.port
    driver.get(f"http://127.0.0.1:{port}/{route}")
    # get() can return while the page before is still there (when that page was writing its URL
    # as it was left), and that page may be as ready: wait for this server's page to be ready.
    script = f"location.port === '{port}' && document.body?.dataset.ready === {json.dumps(ready)}"
    wait_for(driver, script, message=f"page {route} never got ready")


def _canvas_pixels(driver, agent: int) -> np.ndarray:
    data = driver.execute_script(
        "const c = document.querySelectorAll('.pane canvas.view')[arguments[0]];"
        "return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];",
        agent,
    )
    w, h, rgba = data
    return np.asarray(rgba, np.uint8).reshape(h, w, 4)[..., :3]


def _browser_errors(driver, client) -> list[str]:
    """The severe console messages since ``_open`` (which empties the browser's log, shared by the
    module's tests), except any naming another test's server: a request that a previous test's
    page left open fails when that server stops, whenever the browser notices."""
    ours = f"127.0.0.1:{client.server.port}/"
    errors = []
    for e in driver.get_log("browser"):
        message = e["message"]
        if e["level"] == "SEVERE" and "favicon" not in message and ("127.0.0.1:" not in message or ours in message):
            errors.append(message)
    return errors


def test_page_lists_worlds_and_the_fork_tree(browser, store_copy, serve):
    from selenium.webdriver.common.by import By

    client = serve(store_copy)
    _open(browser, client, "#/", "list")
    rows = browser.find_elements(By.CSS_SELECTOR, "#worlds tbody tr")
    assert [r.get_attribute("data-world") for r in rows] == [FORK, TWIN, WORLD]
    assert f"{WORLD} @ 20" in rows[0].text and "oracle" in rows[1].text
    # The fork sits under its parent in the tree; the other two are roots.
    nested = browser.find_element(By.CSS_SELECTOR, f'#fork-tree li[data-world="{WORLD}"] li[data-world="{FORK}"]')
    assert "forked at step 20" in nested.text
    roots = browser.find_elements(By.CSS_SELECTOR, '#fork-tree > li[data-depth="0"]')
    assert sorted(r.get_attribute("data-world") for r in roots) == sorted([WORLD, TWIN])
    assert not _browser_errors(browser, client)


def test_page_filters_the_worlds_by_scenario(browser, store_copy, serve):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from multiworld.state import synthetic as syn
    from multiworld.viewer.browser import wait_for

    shapes = syn.Shapes(agents=2, tokens=None)
    with WorldStore.open(store_copy, mode="r+") as store:
        kw = {**shapes.world_kwargs(), **syn.initial_extras(0, shapes)}
        store.create_world("other", syn.initial_state(0, shapes), scenario="roam-v0", seed=1, config={}, **kw).close()
    client = serve(store_copy)
    _open(browser, client, "#/", "list")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#worlds tbody tr")) == 4
    Select(browser.find_element(By.ID, "scenario-filter")).select_by_value("roam-v0")
    wait_for(browser, "document.body.dataset.ready === 'list' && location.hash.includes('roam-v0')")
    rows = browser.find_elements(By.CSS_SELECTOR, "#worlds tbody tr")
    assert [r.get_attribute("data-world") for r in rows] == ["other"]
    tree = browser.find_elements(By.CSS_SELECTOR, "#fork-tree li")
    assert [li.get_attribute("data-world") for li in tree] == ["other"]
    assert "1 of 4 worlds" in browser.find_element(By.ID, "world-count").text


def test_page_plays_and_jumps_between_events_with_the_keyboard(browser, store_copy, serve):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    from multiworld.viewer.browser import wait_for

    client = serve(store_copy)
    reader = WorldStore.open(store_copy, mode="r").world(WORLD)
    _open(browser, client, f"#/world/{WORLD}", f"world:{WORLD}")
    Select(browser.find_element(By.ID, "speed")).select_by_value("16")
    ActionChains(browser).send_keys(" ").perform()  # play
    wait_for(browser, "app.playing && app.step >= 10")
    ActionChains(browser).send_keys(" ").perform()  # pause
    wait_for(browser, "!app.playing")
    ActionChains(browser).send_keys(Keys.HOME).perform()
    wait_for(browser, "document.body.dataset.shownStep === '0'")
    marked = sorted({t for t, _ in expected_marks(reader)} - {0})
    ActionChains(browser).send_keys("n").perform()
    wait_for(browser, f"document.body.dataset.shownStep === '{marked[0]}'")
    ActionChains(browser).send_keys("n").perform()
    wait_for(browser, f"document.body.dataset.shownStep === '{marked[1]}'")
    ActionChains(browser).send_keys("p").perform()
    wait_for(browser, f"document.body.dataset.shownStep === '{marked[0]}'")
    ActionChains(browser).send_keys(Keys.PAGE_DOWN).perform()
    wait_for(browser, f"document.body.dataset.shownStep === '{min(reader.last_step, marked[0] + 100)}'")


def test_page_scrubs_to_a_step_and_shows_the_stored_frames(browser, store_copy, serve):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from multiworld.viewer.browser import wait_for

    client = serve(store_copy)
    reader = WorldStore.open(store_copy, mode="r").world(WORLD)
    _open(browser, client, f"#/world/{WORLD}", f"world:{WORLD}")
    wait_for(browser, "document.body.dataset.shownStep === '0'")
    first = [_canvas_pixels(browser, i) for i in range(len(reader.agents))]
    for i, img in enumerate(first):
        assert np.array_equal(img, reader.frames(0)[i])
    # Keyboard: End, then back 10 (shift+left) and one more; the step's views are the stored ones.
    scrubber = browser.find_element(By.ID, "scrubber")
    scrubber.send_keys(Keys.END)
    scrubber.send_keys(Keys.SHIFT, Keys.ARROW_LEFT)
    scrubber.send_keys(Keys.ARROW_LEFT)
    target = reader.last_step - 11
    wait_for(browser, f"document.body.dataset.shownStep === '{target}'")
    assert browser.find_element(By.ID, "step-label").text == f"step {target} / {reader.last_step}"
    changed = 0
    for i in range(len(reader.agents)):
        img = _canvas_pixels(browser, i)
        assert np.array_equal(img, reader.frames(target)[i]), f"agent {i} at step {target}"
        changed += not np.array_equal(img, first[i])
    assert changed >= 1
    # The step goes into the URL at most every 200 ms while scrubbing, so it may follow the views.
    wait_for(browser, f"location.hash.endsWith('?t={target}')")
    # Event marks: one per (step, kind) of the store's events, reward and ending steps, each drawn
    # on the timeline in its kind's colour.
    marks = browser.execute_script(f"return app.marks[{json.dumps(WORLD)}];")
    drawn = {(t, kind) for kind, steps in marks.items() for t in steps}
    assert drawn == expected_marks(reader) and len(drawn) == len(expected_marks(reader))
    colours = {"push": (232, 89, 12), "pickup": (242, 183, 5), "reward": (47, 158, 68), "end": (201, 42, 42)}
    pixels = browser.execute_script(
        "const c = document.getElementById('marks'); const ctx = c.getContext('2d');"
        "const kinds = ['push', 'pickup', 'reward', 'end', 'other'];"
        "return arguments[0].map(([t, k]) => Array.from(ctx.getImageData("
        "Math.round(markX(t, c.width)), kinds.indexOf(k) * MARK_ROW + 3, 1, 1).data));",
        sorted([t, k] for t, k in drawn),
    )
    for (t, kind), rgba in zip(sorted(drawn), pixels):
        assert tuple(rgba[:3]) == colours[kind], (t, kind, rgba)
    # Clicking a mark goes to its step and lists its events there.
    step, kind = sorted(drawn)[len(drawn) // 2]
    browser.execute_script(
        "const c = document.getElementById('marks'); const box = c.getBoundingClientRect();"
        "c.dispatchEvent(new MouseEvent('click', {bubbles: true, clientX: box.left + markX(arguments[0], box.width),"
        "clientY: box.top + 3}));",
        step,
    )
    wait_for(browser, f"document.body.dataset.shownStep === '{step}'")
    wait_for(browser, f"document.getElementById('events-list').dataset.step === '{step}'")
    listed = browser.find_elements(By.CSS_SELECTOR, "#events-list li[data-type]")
    assert kind in [li.get_attribute("data-type") for li in listed]
    assert not _browser_errors(browser, client)


def test_page_renders_a_world_without_frames(browser, store_copy, serve):
    from multiworld.viewer.browser import wait_for

    client = serve(store_copy)
    reader = WorldStore.open(store_copy, mode="r").world(WORLD)  # the twin's views are these
    _open(browser, client, f"#/world/{TWIN}?t=25", f"world:{TWIN}")
    wait_for(browser, "document.body.dataset.shownStep === '25'")
    assert np.array_equal(_canvas_pixels(browser, 1), reader.frames(25)[1])


def test_page_forks_at_the_current_step_and_lists_the_new_world(browser, store_copy, serve):
    from selenium.webdriver.common.by import By

    from multiworld.viewer.browser import wait_for

    client = serve(store_copy)
    _open(browser, client, f"#/world/{WORLD}?t=33", f"world:{WORLD}")
    wait_for(browser, "document.body.dataset.shownStep === '33'")
    browser.find_element(By.ID, "fork-button").click()
    wait_for(browser, "(document.body.dataset.ready || '').startsWith('world:scripted.fork33')")
    new_id = browser.execute_script("return document.body.dataset.ready.slice(6);")
    assert browser.find_element(By.ID, "world-meta").text.endswith(f"fork of {WORLD} at step 33")
    store = WorldStore.open(store_copy, mode="r")
    assert store.world(new_id).parent == {"world": WORLD, "step": 33}
    _open(browser, client, "#/", "list")
    rows = [r.get_attribute("data-world") for r in browser.find_elements(By.CSS_SELECTOR, "#worlds tbody tr")]
    assert rows[0] == new_id and len(rows) == 4
    assert browser.find_elements(By.CSS_SELECTOR, f'#fork-tree li[data-world="{WORLD}"] li[data-world="{new_id}"]')


def test_page_on_a_read_only_store_has_no_fork_button(browser, demo, serve):
    from selenium.webdriver.common.by import By

    client = serve(demo, read_only=True)
    _open(browser, client, f"#/world/{WORLD}", f"world:{WORLD}")
    assert browser.find_elements(By.ID, "fork-button") == []
    assert browser.find_element(By.ID, "store-mode").text == "read-only"


def test_page_compares_a_fork_with_its_parent(browser, demo, serve):
    from selenium.webdriver.common.by import By

    from multiworld.viewer.browser import wait_for

    client = serve(demo, read_only=True)
    _open(browser, client, f"#/compare/{FORK}/{WORLD}", f"compare:{FORK}:{WORLD}")
    wait_for(browser, "document.body.dataset.psnrLoaded === '1'")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#panes .pane")) == 2
    assert browser.find_element(By.ID, "scrubber").get_attribute("min") == "20"
    values = browser.execute_script("return Array.from(app.psnr);")
    assert len(values) == 16 and values[0] == 100.0 and min(values) < 40
    assert "actions differ from step 21" in browser.find_element(By.ID, "world-meta").text


def test_page_shows_an_error_page_for_a_broken_store(browser, store_copy, serve):
    from multiworld.viewer.browser import wait_for

    client = serve(store_copy)
    (store_copy / "zarr.json").write_text("{}")
    browser.get(f"http://127.0.0.1:{client.server.port}/")
    # get() can return before the new document is in (see _open): wait for its heading.
    wait_for(browser, f"location.port === '{client.server.port}' && document.querySelector('h1') !== null")
    assert "The store cannot be read" in browser.page_source


# ----------------------------------------------------------------------------- the screenshot
def test_readme_screenshots_are_regenerated_by_their_script(tmp_path):
    if os.environ.get("MULTIWORLD_SKIP_BROWSER") == "1":
        pytest.skip("MULTIWORLD_SKIP_BROWSER=1")
    readme = (ROOT / "README.md").read_text()
    outs = {"--out": tmp_path / "viewer.png", "--compare-out": tmp_path / "viewer-compare.png"}
    argv = [sys.executable, str(ROOT / "benchmarks" / "viewer_screenshot.py"), "--steps", "60"]
    subprocess.run([*argv, *(str(x) for kv in outs.items() for x in kv)], check=True, timeout=600)
    for out in outs.values():
        assert f"docs/{out.name}" in readme and (ROOT / "docs" / out.name).stat().st_size < 300_000
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        assert width == 1280 and height >= 600
        assert len(data) < 300_000
