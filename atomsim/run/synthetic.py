"""Synthetic videos made with PyAV: for tests, benchmarks and the profiler's assemble cost.

`make_video(path, seconds, width, height, fps, codec, audio)` writes a video whose frame k shows
a colour pattern that changes with k, so decoded frames can be told apart.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def make_video(path, seconds=3.0, width=64, height=48, fps=10, codec="libx264", audio=False,
               pix_fmt="yuv420p", rotate=None) -> Path:
    import av
    path = Path(path)
    n = int(round(seconds * fps))
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            vs.options = {"preset": "ultrafast", "tune": "zerolatency"}
        if rotate is not None:
            vs.metadata["rotate"] = str(rotate)
        a_s = None
        if audio:
            a_s = out.add_stream("aac", rate=16000)
            a_s.layout = "mono"
        yy, xx = np.mgrid[0:height, 0:width]
        for k in range(n):
            img = np.zeros((height, width, 3), dtype=np.uint8)
            img[..., 0] = (xx * 255 // max(width - 1, 1) + 7 * k) % 256
            img[..., 1] = (yy * 255 // max(height - 1, 1)) % 256
            img[..., 2] = (25 * k) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = k
            frame.time_base = Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if a_s is not None:
            samples = 1024
            t = 0
            total = int(seconds * 16000)
            while t < total:
                wave = (0.1 * np.sin(2 * np.pi * 440 * (np.arange(samples) + t) / 16000)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
                af.sample_rate = 16000
                af.pts = t
                af.time_base = Fraction(1, 16000)
                for pkt in a_s.encode(af):
                    out.mux(pkt)
                t += samples
            for pkt in a_s.encode():
                out.mux(pkt)
    return path
