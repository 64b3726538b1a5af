"""Small test videos made with PyAV (no fixtures on disk).

`make_video(path, seconds, width, height, fps, codec, audio)` writes a video whose frame k shows
a colour pattern that changes with k, so decoded frames can be told apart.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from atomsim.run.synthetic import make_video  # noqa: F401  (the tests' videos come from here)


def make_corrupt(path) -> Path:
    """Bytes that look like nothing FFmpeg decodes."""
    path = Path(path)
    rng = np.random.default_rng(0)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return path


def make_text(path) -> Path:
    path = Path(path)
    path.write_text("this is not a video\n" * 20)
    return path


def make_truncated(path, seconds=12.0) -> Path:
    """A Matroska video cut at 40% of its bytes: it opens, then decoding ends far too early."""
    path = Path(path)
    full = path.with_name(path.stem + ".full.mkv")
    make_video(full, seconds=seconds, width=64, height=48, fps=10)
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.4)])
    full.unlink()
    return path


def make_truncated_mp4(path, seconds=6.0) -> Path:
    """An MP4 cut in the middle: its index (moov, written at the end) is missing."""
    path = Path(path)
    full = path.with_name(path.stem + ".full.mp4")
    make_video(full, seconds=seconds)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()
    return path


def video_set(d) -> dict[str, Path]:
    """The standard set: durations incl. one shorter than a clip, odd sizes, portrait, audio."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    return {
        "short": make_video(d / "short.mp4", seconds=4.0, width=130, height=98, fps=10),          # < one clip
        "portrait": make_video(d / "portrait.mp4", seconds=15.0, width=72, height=128, fps=12, audio=True),
        "webm": make_video(d / "clip.webm", seconds=11.0, width=97, height=61, fps=8, codec="libvpx", pix_fmt="yuv420p"),
        "mpeg4": make_video(d / "clip.avi", seconds=20.0, width=160, height=90, fps=10, codec="mpeg4"),
    }
