"""The viewer API's arguments and errors: URL text checked into steps and world ids, and
store errors turned into :class:`ApiError` (an HTTP status and a one-line message).
"""

from __future__ import annotations

import re
from typing import Any

from multiworld.state import (
    CorruptStoreError,
    InvalidWorldIdError,
    StepOutOfRangeError,
    StoreError,
    StoreNotFoundError,
    check_world_id,
)

_STEP = re.compile(r"[0-9]{1,10}")


class ApiError(Exception):
    """A request the API refuses or cannot answer: an HTTP ``status`` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def is_local_url(url: str) -> bool:
    """A plain path or ``file://`` URL (as opposed to ``s3://``, ``memory://``, ...)."""
    return "://" not in url or url.startswith("file://")


def parse_step(text: str | int) -> int:
    """A step from a URL: decimal digits only (no sign, no spaces, at most 10 digits)."""
    if isinstance(text, bool):
        raise ApiError(400, f"step must be a non-negative integer, got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ApiError(400, f"step must be a non-negative integer, got {text}")
        return text
    if not isinstance(text, str) or not _STEP.fullmatch(text):
        raise ApiError(400, f"step must be a non-negative integer, got {str(text)[:40]!r}")
    return int(text)


def parse_world_id(text: Any) -> str:
    try:
        return check_world_id(text)
    except InvalidWorldIdError as e:
        raise ApiError(400, str(e)) from None


def _store_error(e: StoreError) -> ApiError:
    if isinstance(e, StoreNotFoundError):
        return ApiError(503, f"the store is gone: {e}")
    if isinstance(e, CorruptStoreError):
        return ApiError(500, f"corrupt store: {e}")
    if isinstance(e, StepOutOfRangeError):
        return ApiError(404, str(e))
    return ApiError(500, f"{type(e).__name__}: {e}")
