"""The one place that picks a torch device and a precision (training and inference alike).

``resolve_device`` turns ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` into a ``torch.device``
and fails loudly, naming the fix, when the accelerator asked for is not there: a silent CPU
fallback would make a GPU run 50x slower without saying so. ``training_precision`` /
``inference_precision`` choose fp32 or bf16; ``autocast`` is the matching context, and
``configure`` turns on TF32 matmuls on CUDA. Models never call ``.cuda()`` themselves.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def _no_cuda_message(device: str) -> str:
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    return (
        f"device {device!r} requested but CUDA is not available on this machine (torch {torch.__version__} is "
        f"{build}); use --device cpu / device='cpu' (or auto), or install a CUDA build of torch on a machine "
        "with an NVIDIA GPU"
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``device``: ``"auto"`` is ``cuda`` when a GPU is visible, else ``mps``
    when available, else ``cpu``; an explicit accelerator that is not there is a ValueError."""
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(_no_cuda_message(str(device)))
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} requested but this machine has {count} CUDA device(s) (0-{count - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available on this machine; use the cpu device")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast runs on this device (CUDA: compute capability 8.0+ for full speed; CPU: always,
    natively with AVX512-BF16 or AMX, emulated and slower otherwise)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type in ("cpu", "mps")


def inference_precision(device: torch.device) -> str:
    """bf16 where the device computes it natively (CUDA, CPUs with AVX512-BF16), else fp32."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu" and getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "bf16"
    return "fp32"


# The name the inference code has always used.
default_precision = inference_precision


def training_precision(device: torch.device, precision: str | None = None) -> str:
    """The precision to train in: ``precision`` when given (checked), else bf16 on a CUDA device
    that supports it and fp32 elsewhere (CPU training stays fp32 unless asked: its bf16 gradients
    are noisier and, without AMX, slower)."""
    if precision is None:
        return "bf16" if device.type == "cuda" and bf16_supported(device) else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and not bf16_supported(device):
        raise ValueError(f"bf16 is not supported on {device} (a GPU older than compute capability 8.0?); use fp32")
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` on ``device`` (a no-op for fp32): matmuls and
    convolutions in bf16, reductions and the loss in fp32, weights and optimizer state in fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def configure(device: torch.device) -> None:
    """Process-wide settings for fast training on ``device``: TF32 matmuls and convolutions on
    CUDA (Ampere and newer; 10 mantissa bits, what bf16 training tolerates anyway)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
