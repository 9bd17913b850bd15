"""How fast `multiworld view` opens a long world and answers a scrub.

    python benchmarks/viewer_bench.py [--steps 10000] [--agents 4] [--scrubs 300] [--no-browser]

Writes a synthetic store (multiworld.state.synthetic: a 16x16 world, 4 agents, random events and
rewards every step) of one world of ``--steps`` steps whose frames are real raycast views of its
states (so PNG encoding costs what it costs on recorded runs, not on flat test colours), then:

- **open, HTTP**: a fresh server (nothing cached) answers what the page asks to show the world
  (``/api/store``, ``/api/worlds/ID``, the first step's views and map), then the timeline data of
  every step (``/track``: poses and returns; ``/marks``); median over ``--opens`` fresh servers;
- **scrub, HTTP**: random steps never asked before, each one step request = the views PNG and
  the map PNG (two requests in a row; the page sends them at once): median and p95 latency;
- **Chromium** (unless ``--no-browser``; needs chromium + chromedriver): the time from loading
  the world's URL to its first step drawn and to its timeline drawn (nothing cached on the
  server), and from moving the timeline to a random step to that step's views and map drawn.

Results: benchmarks/results/viewer.{json,md}.
"""

from __future__ import annotations

import argparse
import http.client
import os
import pathlib
import statistics
import tempfile
import time

import numpy as np
from common import markdown_table, write_results
from tqdm import tqdm

from multiworld.state import WorldStore
from multiworld.state import synthetic as syn

WORLD = "long"


def build_store(path: pathlib.Path, steps: int, agents: int) -> dict:
    from multiworld.world.render import Raycaster
    from multiworld.world.state import WorldState

    shapes = syn.Shapes(size=16, agents=agents, boxes=4, items=6, tokens=None, frame_hw=(64, 64))
    ray = Raycaster()
    static = syn.initial_state(0, shapes)

    def render(rows: list[dict]) -> np.ndarray:
        b = len(rows)
        fixed = ("walls", "floor", "goals", "items", "colors")
        fields = {k: np.repeat(np.asarray(static[k])[None], b, 0) for k in fixed}
        for k in ("poses", "boxes", "items_alive", "step"):
            fields[k] = np.stack([np.asarray(r[k]) for r in rows])
        return ray.render(WorldState(**fields)).rgb.numpy()

    start = time.perf_counter()
    with WorldStore.open(path, mode="w") as store:
        extras = syn.initial_extras(0, shapes)
        extras["frames"] = render([static])[0]
        kwargs = {**shapes.world_kwargs(), **extras}
        config = {"backend": "synthetic"}
        with store.create_world(WORLD, static, scenario="synthetic", seed=0, config=config, **kwargs) as writer:
            batch = 256
            for lo in tqdm(range(1, steps, batch), desc="write", unit="batch", mininterval=5):
                rows = [syn.step_row(0, t, shapes) for t in range(lo, min(steps, lo + batch))]
                for row, frames in zip(rows, render([r["state"] for r in rows])):
                    row["frames"] = frames  # the raycast views of the row's state
                    writer.append(**row, commit=False)
                writer.commit()
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"steps": steps, "agents": agents, "write_seconds": round(time.perf_counter() - start, 1), "bytes": size}


class Client:
    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str) -> bytes:
        self.conn.request("GET", path)
        res = self.conn.getresponse()
        body = res.read()
        if res.status != 200:
            raise RuntimeError(f"{path}: {res.status} {body[:200]!r}")
        return body


def start_server(store: pathlib.Path):
    from multiworld.viewer.server import make_server

    server = make_server(str(store), port=0, read_only=True)
    server.start_background()
    return server


def stop_server(server) -> None:
    server.shutdown()
    server.server_close()
    server.viewer.close()


def _stats(ms) -> dict:
    ms = np.asarray(ms, np.float64)
    return {
        "median": round(float(np.median(ms)), 2),
        "p95": round(float(np.percentile(ms, 95)), 2),
        "max": round(float(ms.max()), 2),
    }


def bench_open(store: pathlib.Path, repeats: int) -> dict:
    first, timeline, first_cpu, timeline_cpu, sizes = [], [], [], [], {}
    for _ in range(repeats):
        server = start_server(store)
        client = Client(server.port)
        t0, c0 = time.perf_counter(), time.process_time()
        sizes["store"] = len(client.get("/api/store"))
        sizes["world"] = len(client.get(f"/api/worlds/{WORLD}"))
        sizes["views"] = len(client.get(f"/api/worlds/{WORLD}/views/0.png"))
        sizes["map"] = len(client.get(f"/api/worlds/{WORLD}/map/0.png"))
        t1, c1 = time.perf_counter(), time.process_time()
        sizes["track"] = len(client.get(f"/api/worlds/{WORLD}/track"))
        sizes["marks"] = len(client.get(f"/api/worlds/{WORLD}/marks"))
        t2, c2 = time.perf_counter(), time.process_time()
        first.append(1000 * (t1 - t0))
        timeline.append(1000 * (t2 - t1))
        first_cpu.append(1000 * (c1 - c0))
        timeline_cpu.append(1000 * (c2 - c1))
        stop_server(server)
    return {
        "first_step_ms_median": round(statistics.median(first), 1),
        "timeline_ms_median": round(statistics.median(timeline), 1),
        "first_step_cpu_ms_median": round(statistics.median(first_cpu), 1),
        "timeline_cpu_ms_median": round(statistics.median(timeline_cpu), 1),
        "first_step_ms_all": [round(x, 1) for x in first],
        "timeline_ms_all": [round(x, 1) for x in timeline],
        "response_bytes": sizes,
    }


def bench_scrub(store: pathlib.Path, steps: int, scrubs: int, seed: int = 0) -> dict:
    server = start_server(store)
    client = Client(server.port)
    client.get(f"/api/worlds/{WORLD}")
    chosen = np.random.default_rng(seed).choice(np.arange(1, steps), size=scrubs, replace=False)
    both, views, maps = [], [], []
    c0 = time.process_time()
    for t in chosen:
        t0 = time.perf_counter()
        client.get(f"/api/worlds/{WORLD}/views/{t}.png")
        t1 = time.perf_counter()
        client.get(f"/api/worlds/{WORLD}/map/{t}.png")
        t2 = time.perf_counter()
        both.append(1000 * (t2 - t0))
        views.append(1000 * (t1 - t0))
        maps.append(1000 * (t2 - t1))
    cpu = 1000 * (time.process_time() - c0) / scrubs
    stop_server(server)
    return {
        "requests": scrubs,
        "step_ms": _stats(both),
        "views_ms": _stats(views),
        "map_ms": _stats(maps),
        "step_cpu_ms_mean": round(cpu, 2),
    }


SCRUB_JS = """
const [t, done] = arguments;
const t0 = performance.now();
const s = document.getElementById('scrubber');
s.value = String(t);
s.dispatchEvent(new Event('input'));
const poll = () => document.body.dataset.shownStep === String(t) ? done(performance.now() - t0) : setTimeout(poll, 1);
poll();
"""


def bench_browser(store: pathlib.Path, steps: int, scrubs: int, opens: int, seed: int = 1) -> dict:
    from multiworld.viewer.browser import chromium, wait_for

    server = start_server(store)
    driver = chromium()
    try:
        first_ms, loaded_ms = [], []
        for k in range(opens):
            server.viewer._summaries.data.clear()  # nothing cached: as on a fresh server
            server.viewer._images.data.clear()
            driver.get("about:blank")
            t0 = time.perf_counter()
            driver.get(f"{server.url}#/world/{WORLD}?t={k}")
            wait_for(driver, f"document.body.dataset.shownStep === '{k}'", timeout=120)
            first_ms.append(1000 * (time.perf_counter() - t0))
            wait_for(driver, f"document.body.dataset.ready === 'world:{WORLD}'", timeout=120)
            loaded_ms.append(1000 * (time.perf_counter() - t0))
        marks = driver.execute_script(f"return Object.values(app.marks['{WORLD}']).reduce((n, s) => n + s.length, 0);")
        chosen = np.random.default_rng(seed).choice(np.arange(opens, steps), size=scrubs, replace=False)
        scrub_ms = [driver.execute_async_script(SCRUB_JS, int(t)) for t in chosen]
    finally:
        driver.quit()
        stop_server(server)
    return {
        "first_step_ms_median": round(statistics.median(first_ms), 1),
        "loaded_ms_median": round(statistics.median(loaded_ms), 1),
        "first_step_ms_all": [round(x, 1) for x in first_ms],
        "loaded_ms_all": [round(x, 1) for x in loaded_ms],
        "timeline_marks": marks,
        "scrubs": scrubs,
        "scrub_ms": _stats(scrub_ms),
    }


def report(args, built: dict, opened: dict, scrub: dict, browser: dict | None, load_start) -> str:
    rows = [
        {
            "measure": "open, HTTP: store list, world, first views and map (fresh server)",
            "median ms": opened["first_step_ms_median"],
            "p95 ms": "",
            "CPU ms": opened["first_step_cpu_ms_median"],
            "target": "< 1000",
        },
        {
            "measure": "open, HTTP: then poses, returns and marks of every step",
            "median ms": opened["timeline_ms_median"],
            "p95 ms": "",
            "CPU ms": opened["timeline_cpu_ms_median"],
            "target": "",
        },
        {
            "measure": "scrub, HTTP: a step's views PNG + map PNG (never asked before)",
            "median ms": scrub["step_ms"]["median"],
            "p95 ms": scrub["step_ms"]["p95"],
            "CPU ms": scrub["step_cpu_ms_mean"],
            "target": "< 100",
        },
    ]
    if browser:
        rows += [
            {
                "measure": "open, Chromium: URL loaded to the first step's views and map drawn",
                "median ms": browser["first_step_ms_median"],
                "p95 ms": "",
                "CPU ms": "",
                "target": "< 1000",
            },
            {
                "measure": "open, Chromium: ... to trails, returns and timeline marks drawn",
                "median ms": browser["loaded_ms_median"],
                "p95 ms": "",
                "CPU ms": "",
                "target": "",
            },
            {
                "measure": "scrub, Chromium: timeline moved to that step's views and map drawn",
                "median ms": browser["scrub_ms"]["median"],
                "p95 ms": browser["scrub_ms"]["p95"],
                "CPU ms": "",
                "target": "< 100",
            },
        ]
    marks = f", {browser['timeline_marks']} timeline marks" if browser else ""
    return (
        f"One synthetic world of {args.steps} steps, {args.agents} agents, 64x64 raycast frames "
        f"({built['bytes'] / 1e6:.0f} MB store{marks}), on "
        f"{os.cpu_count()} cores: load average {load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} "
        "at the end. The times are wall-clock, as a user would have seen them then; CPU ms is the CPU time of "
        "the benchmark process (HTTP client and server threads), what the viewer itself costs.\n\n"
        + markdown_table(rows)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--scrubs", type=int, default=300)
    parser.add_argument("--opens", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--dir", default=None, help="where to write the temporary store (default: system temp)")
    parser.add_argument("--no-write", action="store_true", help="print the results, do not write them")
    args = parser.parse_args()

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="viewer-bench-", dir=args.dir) as tmp:
        store = pathlib.Path(tmp) / "long.zarr"
        built = build_store(store, args.steps, args.agents)
        print("store", built)
        opened = bench_open(store, args.opens)
        print("open", opened)
        scrub = bench_scrub(store, args.steps, args.scrubs)
        print("scrub", scrub)
        browser = None if args.no_browser else bench_browser(store, args.steps, min(args.scrubs, 100), args.opens)
        print("browser", browser)
    table = report(args, built, opened, scrub, browser, load_start)
    print(table)
    if not args.no_write:
        payload = {
            "config": vars(args),
            "load_avg_start": list(load_start),
            "load_avg_end": list(os.getloadavg()),
            "store": built,
            "open": opened,
            "scrub": scrub,
            "browser": browser,
        }
        write_results("viewer", payload, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
