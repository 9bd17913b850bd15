"""Image metrics on uint8 views: PSNR, SSIM, mean absolute difference, decided per image.

Every function takes arrays ``(..., H, W, 3)`` (uint8 or float in [0, 255]) and returns one
value per image ``(...)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP = 100.0  # dB reported for identical images (MSE 0), so means and JSON stay finite
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared error per image, in (0..255)^2 units."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return (d * d).mean(axis=(-3, -2, -1))


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``10 log10(255^2 / MSE)`` per image, capped at :data:`PSNR_CAP` (identical images)."""
    err = mse(a, b)
    with np.errstate(divide="ignore"):
        value = 10 * np.log10(255.0**2 / err)
    return np.minimum(value, PSNR_CAP)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference per image over pixels and channels (0..255)."""
    return np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean(axis=(-3, -2, -1))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity per image (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
    K1 0.01, K2 0.03, dynamic range 255), per channel over valid windows, then averaged."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    lead = a.shape[:-3]
    h, w = a.shape[-3:-1]
    x = torch.from_numpy(a.reshape(-1, h, w, 3)).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    y = torch.from_numpy(b.reshape(-1, h, w, 3)).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    g = _gaussian_window(min(11, h, w))
    k = g.numel()

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, g.view(1, 1, k, 1))
        return F.conv2d(t, g.view(1, 1, 1, k))

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + _C1) * (2 * sxy + _C2)) / ((mx * mx + my * my + _C1) * (sxx + syy + _C2))
    per_channel = s.mean(dim=(1, 2, 3)).reshape(-1, 3)
    return per_channel.mean(dim=1).double().numpy().reshape(lead)


def sharpness(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Detail of ``a`` relative to ``b`` per image: the mean squared difference of neighbouring
    pixels (across and down, every channel) of ``a`` over that of ``b``. 1 = as much fine detail
    as the reference; a blurred view is below 1, a noisy one can be above it."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)

    def energy(x: np.ndarray) -> np.ndarray:
        dx = np.diff(x, axis=-2) ** 2
        dy = np.diff(x, axis=-3) ** 2
        return dx.mean(axis=(-3, -2, -1)) + dy.mean(axis=(-3, -2, -1))

    return energy(a) / np.maximum(energy(b), 1e-9)
