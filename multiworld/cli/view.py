"""`multiworld view STORE`: a local web page to look inside a store.

The worlds and their fork tree; one world's views, map, trails, events and returns on a
timeline; two worlds side by side with the per-step PSNR between their views; and, unless
the store is served read-only, a button that forks the world at the current step.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="serve a web page to look inside a store", description=__doc__)
    p.add_argument("store", help="store path or URL (file://, s3://)")
    p.add_argument("--port", type=_port, default=8765, help="port, 0 for any free one (default: %(default)s)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s, this machine only; 0.0.0.0 opens it to the network)",
    )
    p.add_argument(
        "--read-only",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve without the fork button (default: read-only for object stores, forks allowed on local paths)",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="DIR",
        help="world-model checkpoint to render model worlds recorded without frames (repeatable; "
        "the shipped checkpoints are always known)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=view)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text}")
    return value


def view(args: argparse.Namespace) -> int:
    from multiworld.viewer.server import make_server

    try:
        server = make_server(
            args.store,
            args.host,
            args.port,
            read_only=args.read_only,
            checkpoints=args.checkpoint,
            quiet=not args.verbose,
        )
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    viewer = server.viewer
    worlds = len(viewer.store.worlds())
    mode = "read-only" if viewer.read_only else "forks allowed"
    print(f"serving {viewer.url} ({worlds} worlds, {mode}) at {server.url}", flush=True)
    print("press Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        viewer.close()
    return 0
