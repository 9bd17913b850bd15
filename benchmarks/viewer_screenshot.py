"""Regenerate the README's screenshots of `multiworld view` (docs/viewer.png, docs/viewer-compare.png).

    python benchmarks/viewer_screenshot.py [--out docs/viewer.png] [--compare-out docs/viewer-compare.png]

Builds the demo store (multiworld.viewer.demo: a scripted forage-v0 run, its twin recorded
without frames, a fork continued with random actions) in a temporary directory, serves it on
127.0.0.1 and photographs the page in headless Chromium (Debian's chromium + chromedriver):
one world at a step with a pickup, and the fork beside its parent with the PSNR plot.
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _shrink(png: bytes) -> bytes:
    """Re-encode with a 256-colour palette when Pillow is there (it keeps the README light)."""
    try:
        from PIL import Image
    except ImportError:
        return png
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue() if len(out.getvalue()) < len(png) else png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "viewer.png")
    parser.add_argument("--compare-out", type=pathlib.Path, default=ROOT / "docs" / "viewer-compare.png")
    parser.add_argument("--steps", type=int, default=120, help="steps of the demo run")
    args = parser.parse_args(argv)

    from multiworld.state import WorldStore
    from multiworld.viewer.browser import chromium, wait_for
    from multiworld.viewer.demo import FORK, WORLD, build_demo_store
    from multiworld.viewer.server import make_server

    here = pathlib.Path.cwd()
    args.out, args.compare_out = args.out.resolve(), args.compare_out.resolve()
    with tempfile.TemporaryDirectory(prefix="viewer-shot-") as tmp:
        os.chdir(tmp)  # the page shows the store's path as given: a short relative one
        store = build_demo_store("demo.zarr", steps=args.steps)
        reader = WorldStore.open(store, mode="r").world(WORLD)
        pickups = [t for t, row in enumerate(reader.read("events")) if any(e["type"] == "pickup" for e in row)]
        step = pickups[-1] if pickups else reader.last_step // 2
        server = make_server(store, port=0)
        server.start_background()
        driver = chromium(width=1280, height=900)
        try:
            shots = [
                (args.out, f"#/world/{WORLD}?t={step}", f"world:{WORLD}", str(step), None),
                (args.compare_out, f"#/compare/{FORK}/{WORLD}?t=60", f"compare:{FORK}:{WORLD}", "60", "psnrLoaded"),
            ]
            for out, route, ready, shown, extra in shots:
                driver.get(server.url + route)
                wait_for(driver, f"document.body.dataset.ready === '{ready}'", timeout=60)
                wait_for(driver, f"document.body.dataset.shownStep === '{shown}'", timeout=60)
                if extra:
                    wait_for(driver, f"document.body.dataset.{extra} === '1'", timeout=120)
                driver.execute_script(
                    "const t = document.getElementById('trail'); t.value = '200';t.dispatchEvent(new Event('change'));"
                )
                height = driver.execute_script("return document.documentElement.scrollHeight;")
                metrics = {
                    "width": 1280,
                    "height": min(max(height, 600), 1400),
                    "deviceScaleFactor": 1,
                    "mobile": False,
                }
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
                wait_for(driver, f"document.body.dataset.shownStep === '{shown}'", timeout=60)
                png = _shrink(driver.get_screenshot_as_png())
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(png)
                print(f"wrote {out} ({len(png) // 1024} KB)")
        finally:
            driver.quit()
            server.shutdown()
            server.server_close()
            server.viewer.close()
            os.chdir(here)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
