"""Stitch the chosen clips into one video with PyAV, re-encoded with libx264.

- Output frame rate: the first chosen clip's video rate (30 if unknown); output size: that
  video's display size rounded down to even numbers. Clips of other sizes or orientations are
  scaled to fit inside it and centered on black (letterbox/pillarbox), never stretched.
- Boundaries exact to the frame: clip [start, end) becomes exactly round((end - start) * fps)
  output frames; output frame k shows the source frame on screen at `start + k / fps` (the last
  decoded frame whose time is <= it), so every clip lasts its length within one frame.
- Audio is not carried over (the source clips may have none, or different layouts).
- Written to a temporary name beside the target and renamed only when complete. The temporary
  goes away on an error, on Ctrl-C, and at exit when the process ends while a lane thread is still
  encoding (a second Ctrl-C); temporaries left by a killed run are removed by the next assemble.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import VideoError
from ..io import atomic_path
from .video import _open, _rotation


_WRITING: set[Path] = set()      # temporaries being written, removed at exit if still there
_WRITING_LOCK = threading.Lock()


@atexit.register
def _remove_unfinished() -> None:
    with _WRITING_LOCK:
        for tmp in list(_WRITING):
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def _unfinished(out_path: Path):
    """atomic_path for a video, plus: stale temporaries of `out_path` removed first, and this one
    removed at exit if the process ends before it is complete."""
    for stale in out_path.parent.glob(f".{out_path.name}.*.mp4"):
        with contextlib.suppress(OSError):
            stale.unlink()
    with atomic_path(out_path, suffix=".mp4") as tmp:
        with _WRITING_LOCK:
            _WRITING.add(tmp)
        try:
            yield tmp
        finally:
            with _WRITING_LOCK:
                _WRITING.discard(tmp)


def _upright_rgb(frame) -> np.ndarray:
    img = frame.to_ndarray(format="rgb24")
    rot = _rotation(frame)
    return np.rot90(img, k=rot // 90) if rot else img


def _fit(frame, width: int, height: int) -> np.ndarray:
    """Upright RGB [height, width, 3]: scaled to fit, centered on black."""
    import av
    img = _upright_rgb(frame)
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return np.ascontiguousarray(img)
    s = min(width / w, height / h)
    tw, th = max(2, int(round(w * s))) // 2 * 2, max(2, int(round(h * s))) // 2 * 2
    tw, th = min(tw, width), min(th, height)
    small = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(
        width=tw, height=th, interpolation="BICUBIC").to_ndarray()
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    y0, x0 = (height - th) // 2, (width - tw) // 2
    canvas[y0:y0 + th, x0:x0 + tw] = small
    return canvas


def _clip_frames(path: str, start: float, end: float, fps: float, width: int, height: int):
    """Yield the round((end-start)*fps) output frames of one clip (arrays)."""
    import av
    n = max(1, int(round((end - start) * fps)))
    targets = [start + k / fps for k in range(n)]
    container = _open(Path(path))
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = None
        for f in container.decode(stream):   # the first frame's time is the video's origin
            origin = float(f.time or 0.0)
            break
        if origin is None:
            raise VideoError(f"{path}: no decodable frames")
        seek_t = max(0.0, origin + start - 1.0)
        if seek_t > origin and stream.time_base:
            container.seek(int(seek_t / stream.time_base), stream=stream, backward=True)
        else:
            container.seek(0)
        ti, prev, emitted = 0, None, 0
        try:
            for f in container.decode(stream):
                t = float(f.time or 0.0) - origin
                while ti < n and targets[ti] < t - 1e-6:
                    yield _fit(prev if prev is not None else f, width, height)
                    emitted += 1
                    ti += 1
                if ti >= n:
                    break
                prev = f
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: decoding failed while assembling ({e})") from None
        if prev is None:
            raise VideoError(f"{path}: no frames in clip [{start}, {end})")
        last = _fit(prev, width, height)
        while emitted < n:       # the clip's tail shows the last frame
            yield last
            emitted += 1
    finally:
        container.close()


def assemble(clips, out_path, fps: float | None = None, size: tuple[int, int] | None = None, crf: int = 23) -> Path:
    """Stitch `clips` (objects with .video, .start_s, .end_s) in order into `out_path` (mp4, h264)."""
    import av
    from .video import probe
    if not clips:
        raise VideoError("nothing to assemble: no clips chosen")
    out_path = Path(out_path)
    first = probe(clips[0].video)
    fps = fps or (first.fps if first.fps and first.fps > 0 else 30.0)
    rate = Fraction(fps).limit_denominator(1001)
    width, height = size or (max(2, first.width // 2 * 2), max(2, first.height // 2 * 2))
    with _unfinished(out_path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=rate)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            vs.options = {"preset": "veryfast", "crf": str(crf)}
            frame_tb = Fraction(1, 1) / rate
            k = 0
            for c in clips:
                for img in _clip_frames(c.video, c.start_s, c.end_s, float(rate), width, height):
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts = k
                    frame.time_base = frame_tb
                    for pkt in vs.encode(frame):
                        out.mux(pkt)
                    k += 1
            for pkt in vs.encode():
                out.mux(pkt)
    return out_path


def decoded_duration(path) -> tuple[float, int, float]:
    """(seconds, frames, fps) of a video by decoding it fully: frames / fps."""
    container = _open(Path(path))
    try:
        stream = container.streams.video[0]
        n = sum(1 for _ in container.decode(stream))
        rate = float(stream.average_rate or stream.guessed_rate or 0)
    finally:
        container.close()
    return (n / rate if rate else 0.0), n, rate
