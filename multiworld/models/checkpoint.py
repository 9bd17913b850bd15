"""World-model checkpoints: ``model.safetensors`` + ``config.json`` (+ ``metrics.json``), no pickle.

``config.json`` records the resolved :class:`WorldModelConfig` and the sha256 of the weights file
written beside it; loading checks both, so a checkpoint whose weights and config do not belong
together fails with a clear message instead of producing garbage.

Checkpoints written before the generative head (the flow-matching "refiner") was removed still
load: their ``refiner``/``refiner_views`` config keys and ``refiner.*`` weights are dropped, and
only those (any other unknown key or tensor is still an error).
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import torch
from safetensors.torch import load_file, save, save_file

from multiworld.models.stacked import KIND as STACKED_KIND
from multiworld.models.stacked import StackedFramesConfig, StackedFramesModel
from multiworld.models.world_model import WorldModel, WorldModelConfig

FORMAT = "multiworld-world-model"
FORMAT_VERSION = 2  # 2: the learned latent world model (encoder, state update, ray renderer)
SHIPPED = pathlib.Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = SHIPPED / "default"
# The private-state baseline: the same preset, data and budget, trained with `--private-state`.
PRIVATE_CHECKPOINT = SHIPPED / "private"
# The stacked-frames baseline (no state): the same data and budget, trained with `--stacked-frames`.
STACKED_CHECKPOINT = SHIPPED / "stacked"


# What checkpoints of the removed generative head carry and loading drops: config keys, tensor prefix.
RETIRED_CONFIG_KEYS = ("refiner", "refiner_views")
RETIRED_WEIGHTS = "refiner."
# Added after the first checkpoints: loading one without it allows every payout class, as before.
PAYOUTS_SEEN = "dynamics.payouts_seen"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, or whose config and weights do not match."""


def sha256_file(path: str | pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(
    model: WorldModel, path: str | pathlib.Path, metrics: dict | None = None, extra: dict | None = None
) -> str:
    """Write the checkpoint directory ``path``; returns the weights' sha256."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path / "model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": FORMAT})
    digest = sha256_file(tmp)
    tmp.chmod(0o644)
    tmp.replace(path / "model.safetensors")
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights_sha256": digest,
        "model": model.cfg.to_dict(),
    }
    config.update(extra or {})
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return digest


def read_config(path: str | pathlib.Path) -> dict:
    path = pathlib.Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"no world-model checkpoint at {path} (expected a directory with config.json and model.safetensors)"
        )
    for name in ("config.json", "model.safetensors"):
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
    try:
        config = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint {path}: config.json is not valid JSON ({e})") from None
    if config.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path}: config.json is not a {FORMAT} config (format={config.get('format')!r})"
        )
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {config.get('format_version')!r} is not supported "
            f"(expected {FORMAT_VERSION})"
        )
    return config


def build_model(model_config: dict) -> WorldModel | StackedFramesModel:
    """The untrained model a checkpoint's ``"model"`` config describes: the latent world model, or
    the stacked-frames baseline when ``kind`` says so."""
    if model_config.get("kind") == STACKED_KIND:
        return StackedFramesModel(StackedFramesConfig.from_dict(model_config))
    kept = {k: v for k, v in model_config.items() if k not in RETIRED_CONFIG_KEYS}
    return WorldModel(WorldModelConfig.from_dict(kept))


def load_checkpoint(
    path: str | pathlib.Path | None = None, device: str | torch.device = "cpu"
) -> WorldModel | StackedFramesModel:
    """The model stored at ``path`` (default: the world model shipped with the package), in eval mode.
    A stacked-frames checkpoint loads as :class:`~multiworld.models.stacked.StackedFramesModel`."""
    path = pathlib.Path(path) if path is not None else DEFAULT_CHECKPOINT
    config = read_config(path)
    digest = sha256_file(path / "model.safetensors")
    if digest != config.get("weights_sha256"):
        raise CheckpointError(
            f"checkpoint {path}: model.safetensors does not match config.json "
            f"(sha256 {digest[:12]}..., config records {str(config.get('weights_sha256'))[:12]}...); "
            "the weights or the config were replaced or corrupted"
        )
    try:
        model = build_model(config["model"])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {path}: config.json does not describe a valid world model: {e}") from None
    tensors = load_file(str(path / "model.safetensors"), device=str(device))
    retired = sorted(k for k in tensors if k.startswith(RETIRED_WEIGHTS)) if isinstance(model, WorldModel) else []
    for k in retired:  # the removed generative head's weights
        del tensors[k]
    if isinstance(model, WorldModel) and PAYOUTS_SEEN not in tensors:
        # Written before the payout classes were read off the data: every class stays allowed.
        tensors[PAYOUTS_SEEN] = model.dynamics.payouts_seen.to(device)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit the config in config.json: {' '.join(first)}"
        ) from None
    model = model.to(device).eval()
    if retired:
        # Without the dropped tensors these weights hash to another sha256 than the file's, which is
        # the one stored worlds record: remember the file's for as long as the weights are unchanged.
        model._file_sha256 = (_state_sha256(model), digest)
    return model


def _state_sha256(model) -> str:
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return hashlib.sha256(save(tensors, metadata={"format": FORMAT})).hexdigest()


def weights_sha256(model) -> str:
    """sha256 of ``model``'s weights as ``save_checkpoint`` writes them (``model.safetensors``):
    the hash a checkpoint of this model records in its ``config.json``. For weights loaded, and not
    changed since, from a checkpoint written with the removed generative head: that file's sha256."""
    digest = _state_sha256(model)
    loaded = getattr(model, "_file_sha256", None)
    return loaded[1] if loaded is not None and loaded[0] == digest else digest


def _shipped_name(digest: str | None) -> str:
    """`` (the shipped 'default' checkpoint)`` if ``digest`` is a shipped checkpoint's, else ``""``."""
    if digest:
        for config in sorted(SHIPPED.glob("*/config.json")):
            try:
                if json.loads(config.read_text()).get("weights_sha256") == digest:
                    return f" (the shipped {config.parent.name!r} checkpoint)"
            except (OSError, ValueError):
                continue
    return ""


def check_checkpoint(world_id: str, stored: str | None, mine: str | None) -> None:
    """Raise CheckpointError unless a stored world's tokens were written by this checkpoint."""
    if stored is not None and stored == mine:
        return
    if stored is None:
        raise CheckpointError(
            f"stored world {world_id!r} has scene tokens but records no checkpoint sha256 (checkpoint_hash "
            f"is null), so the weights that wrote them are unknown; this simulator runs checkpoint sha256 "
            f"{mine}{_shipped_name(mine)}. Tokens mean something only to the checkpoint that wrote them: "
            "resume the world's symbolic state instead (options={'start_state': ...}) or record it again"
        )
    raise CheckpointError(
        f"stored world {world_id!r} was written by checkpoint sha256 {stored}{_shipped_name(stored)}, "
        f"but this simulator runs checkpoint sha256 {mine}{_shipped_name(mine)}; tokens of one checkpoint "
        f"mean nothing to another: pass checkpoint=<the directory whose config.json records weights_sha256 "
        f"{stored}>"
    )
