"""`multiworld replay STORE --world ID --out FILE`: the video of a stored world, made again.

Uses the views recorded with the world when there are any; otherwise renders the stored
symbolic states with the oracle renderer.
"""

from __future__ import annotations

import argparse
import pathlib

from tqdm import tqdm


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="make a stored world's video again", description=__doc__)
    p.add_argument("store", help="store path or URL")
    p.add_argument("--world", required=True, help="world id (see `multiworld inspect`)")
    p.add_argument("--out", type=pathlib.Path, required=True, help="video file, .mp4 or .gif")
    p.add_argument("--fps", type=int, default=15)
    p.set_defaults(func=replay)


def replay(args: argparse.Namespace) -> int:
    from multiworld.state import WorldStore
    from multiworld.video import VideoWriter
    from multiworld.world.render import Raycaster
    from multiworld.world.topdown import mosaic, top_down

    if args.out.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"--out must end in .mp4 or .gif, got {args.out.name!r}")
    with WorldStore.open(args.store, mode="r") as store:
        world = store.world(args.world)
        renderer = None if world.has_frames else Raycaster()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with VideoWriter(args.out, fps=args.fps) as video:
            for t in tqdm(range(world.steps), desc=f"replay {args.world}", unit="step"):
                state = world.state(t)
                views = world.frames(t) if renderer is None else renderer.render(state).rgb[0].numpy()
                video.append(mosaic(views, top_down(state)[0]))
    print(f"wrote {args.out} ({world.steps} steps, {'recorded views' if renderer is None else 'oracle re-render'})")
    return 0
