"""The heap an alternation of encode and caption keeps: small torch-dynamic-int8 video encoder
and BERT caption decoder loaded together, 1 thread, in a lane thread as the runner runs them;
anonymous memory after each call over what the loads left.

    python benchmarks/heap_interleave.py notrim|trim|stream|decode

- notrim: the same frames encoded and captioned 6 times, no malloc_trim;
- trim: the same with malloc_trim after each call;
- stream: 12 clips of new frames made by another thread and handed over through a queue of 2
  (as the runner's decode lane hands clips to the encoder), no trim;
- decode: as stream, the frames decoded from a 25 s synthetic video (made in a temporary folder).

Measured (benchmarks/results/heap-interleave-*.md): on 2026-12-01 the same frames kept 78-86 MB;
on 2026-12-03 (after the tensor-by-tensor int8 loader) 112 MB, streamed frames 124 MB, decoded
ones 130 MB. The simulator, each op's retained heap apart: 113 MB while encode runs (its 85 MB
peak beside caption's 28 MB kept); with one heap serving any op it had 85 MB.

Needs the small preset built (atomsim models build --preset small --quant torch-dynamic-int8).
Exits 1 when a call fails (nothing measured)."""
import gc
import queue
import sys
import tempfile
import threading
from pathlib import Path

from atomsim.process import pin_measurement_process, quiet_import_noise

pin_measurement_process()   # huge pages and malloc settings as the runner has them, before torch
quiet_import_noise()

import torch  # noqa: E402

from atomsim import models  # noqa: E402
from atomsim.profile import memory  # noqa: E402

MODE = sys.argv[1] if len(sys.argv) > 1 else "notrim"
CLIPS = 6 if MODE in ("notrim", "trim") else 12
torch.set_num_threads(1)
out = []


def anon() -> float:
    return memory.split()["anon"] / 1e6


def frames_source(enc, tmp: Path):
    """Yields each clip's frames: the same tensor (notrim, trim), or new ones made in another
    thread and handed over through a queue of 2 (stream, decode)."""
    (same,) = enc.example_inputs("encode")
    if MODE in ("notrim", "trim"):
        yield from (same for _ in range(CLIPS))
        return
    if MODE == "decode":
        from atomsim.run.synthetic import make_video
        from atomsim.run.video import decode_clip, read_clips
        make_video(tmp / "v.mp4", seconds=25.0, width=320, height=240, fps=10)
        clips = read_clips(str(tmp / "v.mp4"), 10.0, 5.0, 6, 224).clips
        make = [lambda c=clips[i % len(clips)]: decode_clip(c) for i in range(CLIPS)]
    else:
        make = [lambda: same.clone() for _ in range(CLIPS)]
    q: queue.Queue = queue.Queue(2)
    th = threading.Thread(target=lambda: [q.put(f()) for f in make], daemon=True)
    th.start()
    for _ in range(CLIPS):
        yield q.get()
    th.join()


def body():
    enc = models.load("small", "video-encoder", "torch-dynamic-int8")
    dec = models.load("small", "bert-decoder", "torch-dynamic-int8")
    gc.collect()
    models.malloc_trim()
    base = anon()
    out.append(f"after loads: {base:.0f}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, frames in enumerate(frames_source(enc, Path(tmp))):
            feats = enc.encode(frames)
            del frames
            a1 = anon()
            if MODE == "trim":
                models.malloc_trim()
            a1t = anon()
            dec.caption(feats)
            a2 = anon()
            if MODE == "trim":
                models.malloc_trim()
            out.append(f"clip {i}: after encode +{a1 - base:.0f} (trimmed +{a1t - base:.0f}), "
                       f"after caption +{a2 - base:.0f}, trimmed +{anon() - base:.0f}")


th = threading.Thread(target=body)
th.start()
th.join()
print(f"== {MODE}")
print("\n".join(out))
sys.exit(0 if len(out) == CLIPS + 1 else 1)
