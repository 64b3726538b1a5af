"""Video input with PyAV: probe, cut into clips, sample frames, resize, CLIP-normalize.

Clips: `clip_spans(duration, length, stride)` (paper appendix A); a video shorter than one clip
is one clip. Each clip yields `frames` frames at evenly spaced times: the middle of `frames` equal
slices of the clip, `start + (j + 0.5) * (end - start) / frames`; a frame shown at time t is the
last decoded frame whose timestamp is <= t (what a player shows).

Aspect ratio (what CLIP's own preprocessing does): the frame is first rotated upright (the
stream's display matrix, e.g. a phone's portrait video stored landscape), then resized so that
its SHORTER side equals `frame_size` (bicubic), then center-cropped to `frame_size` x
`frame_size`. Nothing is stretched; the borders of the longer side are cut (a 16:9 frame loses
about 22% of its width on each side). Then pixel values are scaled to [0, 1] and normalized with
CLIP's mean and std.

`read_clips` decodes all clips of a video in one sequential pass (each frame decoded at most
once); with `keep_frames=False` it only checks that the video decodes to its end and returns the
clips without frames (the runner's scan before a run). `decode_clip` then decodes one clip's
frames, seeking to the keyframe before it: the same frames as the sequential pass (a test checks),
for the runner's `decode:i` steps, which stream clips through a bounded queue. It is two halves:
`clip_images` (PyAV and numpy only: uint8 frames) and `normalize` (torch); the runner's decoder
process (decoder.py) runs the first, the lane thread the second.
Any container and codec FFmpeg decodes works, with or without audio (only the first video stream
is read). A file that cannot be opened, has no video stream, fails to decode, or decodes to
clearly less than its header declares (truncated) raises `VideoError` naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VideoError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TRUNCATION_SLACK_S = 1.0   # decoding may end this much (or 10%) before the declared duration


@dataclass
class Clip:
    video: str
    index: int            # index of the clip within its video
    start_s: float
    end_s: float
    frames: object = None   # torch.Tensor [F, 3, S, S] float32, CLIP-normalized (None once encoded)
    origin_s: float = 0.0   # time of the video's first frame: clip times are relative to it


@dataclass
class VideoInfo:
    path: str
    duration_s: float
    width: int            # display size (after rotation)
    height: int
    fps: float
    rotation: int
    codec: str
    has_audio: bool
    clips: list[Clip] = field(default_factory=list)


def _open(path: Path):
    import av
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if not path.is_file():
        raise VideoError(f"{path}: not a file")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as e:
        raise VideoError(f"{path}: cannot be opened as a video ({e}); is it a video file, and complete?") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def _declared_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


def _rotation(frame) -> int:
    """Counter-clockwise degrees to turn the decoded picture upright (0, 90, 180, 270)."""
    try:
        r = frame.rotation
    except AttributeError:
        return 0
    return int(round((r or 0) / 90.0)) % 4 * 90


def frame_to_array(frame, size: int) -> np.ndarray:
    """Upright RGB uint8 [size, size, 3]: rotate, resize the shorter side to `size`, center-crop."""
    rot = _rotation(frame)
    w, h = frame.width, frame.height
    dw, dh = (h, w) if rot in (90, 270) else (w, h)         # display size
    scale = size / min(dw, dh)
    tw, th = max(size, round(dw * scale)), max(size, round(dh * scale))
    rw, rh = (th, tw) if rot in (90, 270) else (tw, th)     # resize in stored orientation
    img = frame.reformat(width=rw, height=rh, format="rgb24", interpolation="BICUBIC").to_ndarray()
    if rot:
        img = np.rot90(img, k=rot // 90)
    y0, x0 = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return np.ascontiguousarray(img[y0:y0 + size, x0:x0 + size])


def normalize(images: np.ndarray):
    """uint8 [F, S, S, 3] -> float32 torch [F, 3, S, S] (contiguous), CLIP mean/std:
    ((x / 255) - mean) / std, each step in float32. Four torch calls into one new tensor, in place
    (the same bytes as out-of-place ops): the lane thread that calls it beside other busy lanes
    takes the interpreter lock back after each call (measured beside a pure-Python loop: 0.8 ms
    as alone, against 11 ms for the former seven out-of-place calls)."""
    import torch
    f, h, w, c = images.shape
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    t = torch.empty((f, c, h, w), dtype=torch.float32)
    t.copy_(torch.from_numpy(images).permute(0, 3, 1, 2))
    return t.div_(255.0).sub_(mean).div_(std)


def sample_times(start: float, end: float, frames: int) -> list[float]:
    return [start + (j + 0.5) * (end - start) / frames for j in range(frames)]


def probe(path) -> VideoInfo:
    """Metadata only (no full decode); VideoError if it cannot be opened or has no video."""
    path = Path(path)
    container = _open(path)
    try:
        import av
        stream = container.streams.video[0]
        dur = _declared_duration(container, stream)
        rot = 0
        try:
            for frame in container.decode(stream):
                rot = _rotation(frame)
                w, h = frame.width, frame.height
                break
            else:
                raise VideoError(f"{path}: video stream has no decodable frames")
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: cannot decode ({e})") from None
        if rot in (90, 270):
            w, h = h, w
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(str(path), dur or 0.0, w, h, float(rate) if rate else 0.0, rot,
                         stream.codec_context.name, bool(container.streams.audio))
    finally:
        container.close()


def read_clips(path, length_s=10.0, stride_s=5.0, frames=6, frame_size=224, keep_frames=True) -> VideoInfo:
    """Decode `path` once: its clips with their frames (CLIP-normalized tensors); without
    `keep_frames`, the clips only (every frame still decoded: corrupt files are found here).

    Raises VideoError (naming the file) for corrupt, truncated or non-video files.
    """
    import av

    from ..schema.scenario import clip_spans
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = _declared_duration(container, stream)
        if declared is None:   # no duration in the header: demux packets (cheap) to find it
            declared = _demux_duration(container, stream, path)
            container.close()
            container = _open(path)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
        spans = clip_spans(declared, length_s, stride_s)
        targets = sorted((t, ci, j) for ci, (s, e) in enumerate(spans) for j, t in enumerate(sample_times(s, e, frames)))
        images = np.zeros((len(spans) if keep_frames else 1, frames, frame_size, frame_size, 3), dtype=np.uint8)
        filled = np.zeros((len(spans), frames), dtype=bool)
        ti = 0
        prev = None   # (time, frame) of the last decoded frame
        last_t = None
        info = None
        origin = None   # time of the first frame: clip times are relative to it
        try:
            for frame in container.decode(stream):
                if frame.pts is None and frame.time is None:
                    continue
                t = float(frame.time) if frame.time is not None else 0.0
                if origin is None:
                    origin = t
                t -= origin
                if info is None:
                    rot = _rotation(frame)
                    w, h = (frame.height, frame.width) if rot in (90, 270) else (frame.width, frame.height)
                    rate = stream.average_rate or stream.guessed_rate
                    info = VideoInfo(str(path), declared, w, h, float(rate) if rate else 0.0, rot,
                                     stream.codec_context.name, bool(container.streams.audio))
                # targets before this frame are shown by the previous frame (or this one if first)
                while ti < len(targets) and targets[ti][0] < t:
                    src = prev if prev is not None else frame
                    _, ci, j = targets[ti]
                    if keep_frames:
                        images[ci, j] = frame_to_array(src, frame_size)
                    filled[ci, j] = True
                    ti += 1
                prev = frame
                last_t = t
                if ti == len(targets):
                    break
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: decoding failed ({e}); the file is corrupt or truncated") from None
        if prev is None or info is None:
            raise VideoError(f"{path}: video stream has no decodable frames (corrupt or truncated)")
        if ti < len(targets):
            # decoding ended before the last target: fine if within slack (frames past the
            # last pts belong to the last frame), truncated otherwise
            shortfall = declared - last_t
            if shortfall > max(TRUNCATION_SLACK_S, 0.1 * declared):
                raise VideoError(f"{path}: truncated: decodes to {last_t:.2f} s of the {declared:.2f} s its "
                                 "header declares")
            while ti < len(targets):
                _, ci, j = targets[ti]
                if keep_frames:
                    images[ci, j] = frame_to_array(prev, frame_size)
                filled[ci, j] = True
                ti += 1
    finally:
        container.close()
    for ci, (s, e) in enumerate(spans):
        info.clips.append(Clip(str(path), ci, s, e, normalize(images[ci]) if keep_frames else None, origin))
    return info


def decode_clip(clip: Clip, frames: int = 6, frame_size: int = 224):
    """One clip's frames (CLIP-normalized tensor), as `read_clips` makes them: `clip_images`
    then `normalize`, in this thread (run/decoder.py does the first half in a process of its own)."""
    return normalize(clip_images(clip, frames, frame_size))


def clip_images(clip: Clip, frames: int = 6, frame_size: int = 224) -> np.ndarray:
    """One clip's frames, uint8 [frames, size, size, 3] (no torch: the decoder process calls it):
    seek to the keyframe at or before the clip's start, decode up to its last sample time."""
    import av
    path = Path(clip.video)
    container = _open(path)
    targets = sample_times(clip.start_s, clip.end_s, frames)
    images = np.zeros((frames, frame_size, frame_size, 3), dtype=np.uint8)
    ti, prev = 0, None
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if clip.start_s > 0 and stream.time_base:
            container.seek(int((clip.origin_s + clip.start_s) / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is None and frame.time is None:
                continue
            t = (float(frame.time) if frame.time is not None else 0.0) - clip.origin_s
            while ti < frames and targets[ti] < t:
                images[ti] = frame_to_array(prev if prev is not None else frame, frame_size)
                ti += 1
            prev = frame
            if ti == frames:
                break
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: decoding clip {clip.index} failed ({e})") from None
    finally:
        container.close()
    if prev is None:
        raise VideoError(f"{path}: clip {clip.index} has no decodable frames")
    while ti < frames:   # past the last frame: the last frame is shown
        images[ti] = frame_to_array(prev, frame_size)
        ti += 1
    return images


def _demux_duration(container, stream, path) -> float:
    import av
    end = 0.0
    try:
        for pkt in container.demux(stream):
            if pkt.pts is not None and pkt.time_base is not None:
                d = float((pkt.duration or 0) * pkt.time_base)
                end = max(end, float(pkt.pts * pkt.time_base) + d)
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: demuxing failed ({e})") from None
    if end <= 0:
        raise VideoError(f"{path}: cannot find the video's duration")
    return end
