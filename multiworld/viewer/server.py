"""The viewer's HTTP server: the standard library's ThreadingHTTPServer, the page, the API.

Routes (every world id and step is validated by :mod:`multiworld.viewer.api`):

    GET  /                                    the page (an error page if the store cannot be read)
    GET  /static/app.js, /static/style.css    the page's script and style (shipped in the package)
    GET  /api/store                           the worlds, newest first, with their fork links
    GET  /api/worlds/ID                       one world's description (agents, lineage, forks, ...)
    GET  /api/worlds/ID/track                 poses and returns of every step (float32 binary)
    GET  /api/worlds/ID/marks                 the steps with pushes, pickups, rewards, endings
    GET  /api/worlds/ID/events?start=S&stop=E the events of steps [S, E)
    GET  /api/worlds/ID/views/STEP.png        every agent's view at STEP, side by side
    GET  /api/worlds/ID/map/STEP.png          the top-down map at STEP
    GET  /api/compare?a=ID&b=ID               how two worlds line up
    GET  /api/psnr?a=ID&b=ID&start=S&stop=E   per-step PSNR between their views
    POST /api/worlds/ID/fork  {"step": T}     fork at T (absent on a read-only store: 403)

Requests whose Host header is not this server's (DNS rebinding) are refused while it listens
on a loopback address, and the fork needs a JSON body from a page of this origin.
"""

from __future__ import annotations

import html
import http.server
import importlib.resources
import ipaddress
import json
import re
import socket
import sys
import threading
import traceback
import urllib.parse
from typing import Any

from multiworld.state import StoreError
from multiworld.viewer.api import ApiError, Viewer

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
_ID = r"([^/]{1,200})"
ROUTES = [
    (re.compile(rf"^/api/worlds/{_ID}/views/([^/]{{1,20}})\.png$"), "views"),
    (re.compile(rf"^/api/worlds/{_ID}/map/([^/]{{1,20}})\.png$"), "map"),
    (re.compile(rf"^/api/worlds/{_ID}/fork$"), "fork"),
    (re.compile(rf"^/api/worlds/{_ID}/track$"), "track"),
    (re.compile(rf"^/api/worlds/{_ID}/marks$"), "marks"),
    (re.compile(rf"^/api/worlds/{_ID}/events$"), "events"),
    (re.compile(rf"^/api/worlds/{_ID}$"), "world"),
    (re.compile(r"^/api/store$"), "store"),
    (re.compile(r"^/api/compare$"), "compare"),
    (re.compile(r"^/api/psnr$"), "psnr"),
]
MAX_BODY = 4096


def _static_files() -> dict[str, bytes]:
    root = importlib.resources.files("multiworld.viewer") / "static"
    return {name: (root / name).read_bytes() for name, _ in STATIC.values()}


def error_page(title: str, message: str) -> bytes:
    """A small standalone HTML page saying what is wrong (no script)."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>multiworld view: error</title>"
        "<link rel=stylesheet href=/static/style.css></head><body><main class=error-page>"
        f"<h1>{html.escape(title)}</h1><p class=error-message>{html.escape(message)}</p>"
        "<p>Fix the store or restart <code>multiworld view</code> with another one.</p></main></body></html>"
    ).encode()


class ViewerServer(http.server.ThreadingHTTPServer):
    """A ThreadingHTTPServer serving one :class:`Viewer`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, viewer: Viewer, host: str = "127.0.0.1", port: int = 8765, quiet: bool = True):
        self.viewer = viewer
        self.quiet = quiet
        self.static = _static_files()
        if ":" in host:  # an IPv6 address
            self.address_family = socket.AF_INET6
        super().__init__((host, port), ViewerHandler)
        self.host, self.port = self.server_address[0], self.server_address[1]
        try:
            self.loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            self.loopback = host == "localhost"
        self.allowed_hosts = {f"{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]", host)}

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread (tests, benchmarks, the screenshot script); ``shutdown()`` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="multiworld-view", daemon=True)
        thread.start()
        return thread


class ViewerHandler(http.server.BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK hold the body back ~40 ms per response.
    disable_nagle_algorithm = True
    server_version = "multiworld-view"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # ------------------------------------------------------------------ responses
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        self._send(status, body, "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message, "status": status})

    def _host_ok(self) -> bool:
        if not self.server.loopback:
            return True
        return self.headers.get("Host", "") in self.server.allowed_hosts

    # ------------------------------------------------------------------ methods
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._error(405, "method not allowed")

    do_DELETE = do_PATCH = do_PUT

    def _dispatch(self, method: str) -> None:
        try:
            if not self._host_ok():
                self._error(421, f"unexpected Host header {self.headers.get('Host', '')[:100]!r}")
                return
            parsed = urllib.parse.urlsplit(self.path)
            path = parsed.path
            if path in STATIC:
                if method != "GET":
                    self._error(405, "method not allowed")
                elif STATIC[path][0] == "index.html":
                    self._page()
                else:
                    name, kind = STATIC[path]
                    self._send(200, self.server.static[name], kind)
                return
            if path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
                return
            for pattern, name in ROUTES:
                m = pattern.match(path)
                if m:
                    if (name == "fork") != (method == "POST"):
                        self._error(405, f"{method} is not allowed on {path}")
                        return
                    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
                    self._api(name, m.groups(), query)
                    return
            self._error(404, f"no such page: {path[:200]}")
        except ApiError as e:
            self._error(e.status, e.message)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # the page gets a message, the console the traceback
            traceback.print_exc(file=sys.stderr)
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _page(self) -> None:
        try:
            self.server.viewer.check()
        except StoreError as e:
            self._send(503, error_page("The store cannot be read", str(e)), "text/html; charset=utf-8")
            return
        self._send(200, self.server.static["index.html"], "text/html; charset=utf-8")

    def _api(self, name: str, groups: tuple[str, ...], query: dict[str, list[str]]) -> None:
        viewer = self.server.viewer

        def arg(key: str) -> str:
            values = query.get(key)
            if not values or len(values) != 1:
                raise ApiError(400, f"query parameter {key!r} is required once")
            return values[0]

        if name == "store":
            self._json(200, viewer.store_info())
        elif name == "world":
            self._json(200, viewer.world(groups[0]))
        elif name == "track":
            self._send(200, viewer.track(groups[0]), "application/octet-stream")
        elif name == "marks":
            self._json(200, viewer.marks(groups[0]))
        elif name == "events":
            self._json(200, viewer.events(groups[0], arg("start"), arg("stop")))
        elif name == "views":
            self._send(200, viewer.views_png(groups[0], groups[1]), "image/png")
        elif name == "map":
            self._send(200, viewer.map_png(groups[0], groups[1]), "image/png")
        elif name == "compare":
            self._json(200, viewer.compare(arg("a"), arg("b")))
        elif name == "psnr":
            self._json(200, viewer.psnr(arg("a"), arg("b"), arg("start"), arg("stop")))
        elif name == "fork":
            self._json(200, viewer.fork(groups[0], self._fork_step()))

    def _fork_step(self) -> int:
        if self.server.viewer.read_only:
            raise ApiError(403, "the store is served read-only: forking is disabled")
        origin = self.headers.get("Origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != self.headers.get("Host"):
            raise ApiError(403, "forks are only accepted from the viewer's own page")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise ApiError(415, "the fork request needs a JSON body (Content-Type: application/json)")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ApiError(411, "the fork request needs a Content-Length") from None
        if not 0 < length <= MAX_BODY:
            raise ApiError(413, f"the fork request body must be 1..{MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the fork request body is not valid JSON") from None
        if not isinstance(body, dict) or "step" not in body:
            raise ApiError(400, 'the fork request body must be {"step": T}')
        step = body["step"]
        if isinstance(step, bool) or not isinstance(step, int):
            raise ApiError(400, f"step must be a non-negative integer, got {step!r}"[:200])
        return step


def make_server(
    store: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    read_only: bool | None = None,
    checkpoints: list[str] | tuple[str, ...] = (),
    quiet: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> ViewerServer:
    """Open ``store`` (raising its StoreError if it is missing, foreign or corrupt) and bind the
    server (``port=0``: any free port); call ``serve_forever()`` or ``start_background()``."""
    viewer = Viewer(store, read_only=read_only, checkpoints=checkpoints, storage_options=storage_options)
    try:
        return ViewerServer(viewer, host, port, quiet=quiet)
    except BaseException:
        viewer.close()
        raise
