"""A small PNG encoder for uint8 RGB images (numpy + zlib, no imaging library)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = 3) -> bytes:
    """PNG bytes of ``image``: uint8 ``(H, W, 3)`` RGB or ``(H, W)`` grey, 8 bits per channel.

    Rows use the "Up" filter (each byte minus the byte above), which suits the views' flat
    walls and floors; ``level`` is zlib's (1 fastest, 9 smallest).
    """
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"encode_png needs a uint8 image, got {img.dtype}")
    if img.ndim == 2:
        colour_type, channels = 0, 1
    elif img.ndim == 3 and img.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise ValueError(f"encode_png needs an (H, W) or (H, W, 3) image, got shape {img.shape}")
    h, w = img.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"encode_png needs a non-empty image, got shape {img.shape}")
    rows = np.ascontiguousarray(img).reshape(h, w * channels)
    up = rows.copy()
    up[1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG's filters do
    filtered = np.empty((h, w * channels + 1), np.uint8)
    filtered[:, 0] = 2  # filter type "Up" (the first row's "above" is zeros, so it is unchanged)
    filtered[:, 1:] = up
    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


def decode_png(data: bytes) -> np.ndarray:
    """The image of a PNG written by :func:`encode_png` (8-bit grey or RGB, not interlaced,
    every filter type); ValueError for anything else. Tests and tools read the API's images with it."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG (bad signature)")
    pos, header, idat = len(_SIGNATURE), None, []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    w, h, depth, colour_type, _, _, interlace = header
    if depth != 8 or colour_type not in (0, 2) or interlace:
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {colour_type}, interlace {interlace})")
    c = 1 if colour_type == 0 else 3
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, w * c + 1)
    out = np.zeros((h, w * c), np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = out[y - 1] if y else np.zeros(w * c, np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) % 256
        elif f in (1, 3, 4):
            cur = np.zeros(w * c, np.int32)
            for x in range(w * c):
                a = cur[x - c] if x >= c else 0
                b = prev[x]
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    cc = prev[x - c] if x >= c else 0
                    p = a + b - cc
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
                cur[x] = (line[x] + pred) % 256
        else:
            raise ValueError(f"bad PNG filter type {f} in row {y}")
        out[y] = cur
    img = out.astype(np.uint8)
    return img.reshape(h, w) if c == 1 else img.reshape(h, w, 3)
