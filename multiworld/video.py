"""Video files of runs: MP4 through imageio-ffmpeg, or GIF, chosen by the file extension."""

from __future__ import annotations

import pathlib

import imageio.v2 as imageio
import numpy as np


class VideoWriter:
    """Append uint8 RGB frames one at a time; ``.mp4`` or ``.gif`` by suffix."""

    def __init__(self, path: str | pathlib.Path, fps: int = 15) -> None:
        self.path = pathlib.Path(path)
        suffix = self.path.suffix.lower()
        if suffix == ".mp4":
            self._writer = imageio.get_writer(self.path, fps=fps, codec="libx264", quality=7, macro_block_size=16)
        elif suffix == ".gif":
            self._writer = imageio.get_writer(self.path, mode="I", duration=1 / fps, loop=0)
        else:
            raise ValueError(f"video path must end in .mp4 or .gif, got {self.path.name!r}")
        self.frames = 0

    def append(self, frame: np.ndarray) -> None:
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
