"""Where a stored world's agent views come from: its recorded frames, or rendered on demand.

A world recorded with frames is read row by row from its Zarr chunks. A world recorded
without them is rendered from what the store holds: the oracle state (walls, boxes, poses, ...)
through the raycaster, or the learned model's packed tokens through the checkpoint that
produced them, found by its sha256 among the shipped checkpoints and any given with
``--checkpoint``. torch is imported only when a world needs rendering.
"""

from __future__ import annotations

import json
import pathlib
import threading
from collections.abc import Sequence

import numpy as np

from multiworld.state import WorldReader

PSNR_CAP = 100.0  # dB for identical views, as multiworld.bench.metrics reports them
RANGE_BATCH = 64  # steps rendered per batch when a range is asked for


def frame_size(reader: WorldReader) -> tuple[int, int]:
    """(H, W) of the world's views: the recorded frames', else the config's, else 64 x 64."""
    if reader.has_frames:
        shape = reader.arrays["frames"][0]
        return int(shape[1]), int(shape[2])
    config = reader.config
    h, w = config.get("height", 64), config.get("width", 64)
    if not all(isinstance(v, int) and 2 <= v <= 1024 and v % 2 == 0 for v in (h, w)):
        h, w = 64, 64
    return h, w


def backend_of(reader: WorldReader) -> str:
    """The backend that produced the world's rows: the config's ``backend``, else ``model`` when a
    checkpoint is recorded, else ``oracle`` (training data and older runs record no backend)."""
    backend = reader.config.get("backend")
    if isinstance(backend, str) and backend:
        return backend
    return "model" if reader.checkpoint_hash else "oracle"


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR of the mean squared error over each leading index's images: ``(n, N, H, W, 3)`` -> ``(n,)``."""
    d = a.astype(np.float32) - b.astype(np.float32)
    err = (d * d).reshape(len(d), -1).mean(axis=1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        value = 10 * np.log10(255.0**2 / err)
    return np.minimum(value, PSNR_CAP)


class Checkpoints:
    """World-model checkpoints by weights sha256: the shipped ones and the ``extra`` directories.

    Models are loaded on first use and kept; one lock serialises rendering (torch on 2 cores)."""

    def __init__(self, extra: Sequence[str | pathlib.Path] = ()):
        self.extra = [pathlib.Path(p) for p in extra]
        self._index: dict[str, pathlib.Path] | None = None
        self._models: dict[pathlib.Path, object] = {}
        self.lock = threading.Lock()

    def index(self) -> dict[str, pathlib.Path]:
        if self._index is None:
            from multiworld.models.checkpoint import SHIPPED

            dirs = [*self.extra, *sorted(p for p in SHIPPED.iterdir() if p.is_dir())]
            index: dict[str, pathlib.Path] = {}
            for d in dirs:
                try:
                    digest = json.loads((d / "config.json").read_text()).get("weights_sha256")
                except (OSError, ValueError):
                    continue
                if isinstance(digest, str):
                    index.setdefault(digest, d)
            self._index = index
        return self._index

    def find(self, digest: str | None) -> pathlib.Path | None:
        """The checkpoint directory whose weights hash is (or starts with) ``digest``."""
        if not digest:
            return None
        for full, path in self.index().items():
            if full == digest or (len(digest) >= 8 and full.startswith(digest)):
                return path
        return None

    def model(self, path: pathlib.Path):
        if path not in self._models:
            from multiworld.models.checkpoint import load_checkpoint

            self._models[path] = load_checkpoint(path, "cpu")
        return self._models[path]


class ViewSource:
    """The views of one world: ``views(t)`` ``(N, H, W, 3)`` uint8 and ``views_range(start, stop)``.

    ``kind``: ``"stored"``, ``"oracle"`` (rendered from the stored state), ``"model"`` (rendered
    from the stored tokens) or ``None`` (no views: ``note`` says why). ``note`` also says which
    checkpoint renders a model world."""

    def __init__(self, reader: WorldReader, checkpoints: Checkpoints):
        self.reader = reader
        self.checkpoints = checkpoints
        self.height, self.width = frame_size(reader)
        self.kind: str | None = None
        self.note: str | None = None
        self._checkpoint: pathlib.Path | None = None
        self._raycaster = None
        backend = backend_of(reader)
        if reader.has_frames:
            self.kind = "stored"
        elif backend == "oracle":
            self.kind = "oracle"
            self.note = "recorded without frames: rendered from the stored state"
        elif backend == "model":
            self._init_model()
        else:
            self.note = f"recorded without frames by backend {backend!r}, which cannot be rendered here"

    def _init_model(self) -> None:
        reader = self.reader
        if not reader.has_tokens:
            self.note = "model world recorded without frames or tokens: nothing to render its views from"
            return
        digest = reader.checkpoint_hash
        path = self.checkpoints.find(digest)
        if path is None and digest:
            self.note = (
                f"recorded without frames by checkpoint {digest[:12]}, which is not available: "
                "pass its directory with --checkpoint to render the views"
            )
            return
        if path is None:
            from multiworld.models.checkpoint import DEFAULT_CHECKPOINT

            path = self.checkpoints.extra[0] if self.checkpoints.extra else DEFAULT_CHECKPOINT
            self.note = f"recorded without frames or checkpoint hash: rendered from the tokens with {path.name}"
        else:
            self.note = f"recorded without frames: rendered from the stored tokens with checkpoint {path.name}"
        self.kind, self._checkpoint = "model", path

    # ------------------------------------------------------------------ reading
    def views(self, t: int) -> np.ndarray:
        return self.views_range(t, t + 1)[0]

    def views_range(self, start: int, stop: int) -> np.ndarray:
        if self.kind is None:
            raise LookupError(f"world {self.reader.world_id!r}: {self.note}")
        if self.kind == "stored":
            return np.asarray(self.reader.read("frames", start, stop))
        parts = []
        for lo in range(start, stop, RANGE_BATCH):
            hi = min(stop, lo + RANGE_BATCH)
            parts.append(self._render_oracle(lo, hi) if self.kind == "oracle" else self._render_model(lo, hi))
        return np.concatenate(parts) if parts else np.zeros((0, 0, self.height, self.width, 3), np.uint8)

    def render_config(self):
        """The oracle's renderer config at the world's frame size; its ``.camera`` renders model worlds."""
        from multiworld.world.render import RenderConfig

        return RenderConfig(height=self.height, width=self.width)

    def _render_oracle(self, start: int, stop: int) -> np.ndarray:
        from multiworld.world.render import Raycaster

        states = self.reader.states(start, stop)
        with self.checkpoints.lock:
            if self._raycaster is None:
                self._raycaster = Raycaster(self.render_config())
            return self._raycaster.render(states).rgb.cpu().numpy()

    def _render_model(self, start: int, stop: int) -> np.ndarray:
        import contextlib

        import torch

        from multiworld.models.world_model import LatentState

        tokens = np.asarray(self.reader.read("tokens", start, stop), np.float32)
        if not np.isfinite(tokens).all():
            bad = start + int(np.flatnonzero(~np.isfinite(tokens.reshape(len(tokens), -1)).all(axis=1))[0])
            raise LookupError(f"world {self.reader.world_id!r}: step {bad} was stored without tokens")
        size = int(self.reader.static["walls"].shape[0])
        with self.checkpoints.lock, torch.no_grad():
            model = self.checkpoints.model(self._checkpoint)
            if not hasattr(model, "encode"):
                raise LookupError(f"checkpoint {self._checkpoint.name} is not a latent world model: it has no tokens")
            if tokens.shape[-1] != model.cfg.dim:
                raise LookupError(
                    f"world {self.reader.world_id!r}: tokens of width {tokens.shape[-1]} do not fit checkpoint "
                    f"{self._checkpoint.name} (width {model.cfg.dim})"
                )
            latent = LatentState.unpack(tokens, size)
            # The precision the run rendered at (bf16 autocast on CPUs that compute it natively):
            # the same tokens rendered in fp32 differ by a level here and there.
            precision = (self.reader.attrs.get("model") or {}).get("precision", "fp32")
            cast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
            with cast:
                rgb, _ = model.render(latent, self.render_config().camera)
            return (rgb.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
