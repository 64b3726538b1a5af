"""Worker jobs that measure the device rather than one module (run by worker.py's processes):
`baseline` (the runtime's memory in the runner's state, torch's settings, the cost of ranking and
of assembling clips) and `corun` (two ops at once in two threads: the slowdown each gives the other).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from . import memory
from .worker import ASSEMBLE_REFERENCE, load_target, op_memory, runner_heap


def job_corun(job) -> dict:
    """Each op alone, then both at once in two threads (torch.set_num_threads inside each thread),
    in interleaved rounds: round k takes one alone sample of each and one together sample of each,
    so that a drift of the machine's speed over the job affects alone and together alike.

    Together: both threads start at a barrier and repeat their op; a call counts when it ran
    entirely while the other op was running too (the faster op may complete several per round;
    its call still running when the slower one finishes is not counted)."""
    import torch
    specs = []
    for side in ("a", "b"):
        s = job[side]
        sub = dict(job, model=s["model"], quant=s["quant"], source=s.get("source"))
        mod = load_target(sub)
        specs.append((mod, getattr(mod, s["op"]), mod.example_inputs(s["op"], **s.get("shape", {})), int(s["threads"])))
    # alone at the thread count each side gets when both share the cores (see CoRun)
    alone_t = [int(job[side].get("alone_threads") or job[side]["threads"]) for side in ("a", "b")]
    for (mod, fn, inp, t), ta in zip(specs, alone_t):  # warm-up, alone
        torch.set_num_threads(ta)
        fn(*inp)
    alone, together, errors = [[], []], [[], []], []

    def run(i, stop, barrier, done):
        try:
            mod, fn, inp, t = specs[i]
            torch.set_num_threads(t)
            barrier.wait()
            while not stop.is_set():
                t0 = time.perf_counter()
                fn(*inp)
                if stop.is_set():
                    break
                together[i].append(time.perf_counter() - t0)
                done[i] = True
                if all(done):
                    stop.set()
        except BaseException as e:  # pragma: no cover
            errors.append(repr(e))
            stop.set()
            try:
                barrier.abort()
            except Exception:
                pass

    for _ in range(int(job["samples"])):
        for i, (mod, fn, inp, t) in enumerate(specs):
            torch.set_num_threads(alone_t[i])
            t0 = time.perf_counter()
            fn(*inp)
            alone[i].append(time.perf_counter() - t0)
        stop, barrier, done = threading.Event(), threading.Barrier(2), [False, False]
        ths = [threading.Thread(target=run, args=(i, stop, barrier, done)) for i in (0, 1)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        if errors:
            raise RuntimeError("; ".join(errors))
    for mod, *_ in specs:
        mod.free()
    return {"alone": alone, "together": together, "interleaved": True}


def process_settings() -> dict:
    """The settings this worker measures under (atomsim/process.py), for the fingerprint: the
    profiler's own process need not have them."""
    import os

    from ..procfs import huge_pages
    return {"huge_pages": huge_pages(), "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
            "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_")}


def job_baseline(job) -> dict:
    import platform

    # the state of a process about to run a pipeline (as `atomsim run` is before its first load):
    # the runner and PyAV imported, the code of the preset's models imported, the clips of a
    # reference video decoded (their frames are the run's inputs, dropped here: what stays is
    # the decoder's and the allocator's share), nothing loaded
    import tempfile

    import torch

    import atomsim.run.assemble  # noqa: F401
    import atomsim.run.executor  # noqa: F401
    import atomsim.run.pipeline  # noqa: F401
    from atomsim import models as zoo
    for m in job.get("models") or ():
        zoo.spec(job["preset"], m)
    tmp = tempfile.TemporaryDirectory()
    video = Path(tmp.name) / "ref.mp4"
    runner_heap(video)
    memory.settle()
    s = memory.split()
    out = {"rss": s["rss"], "anon": s["anon"], "file": s["file"], "split_source": s["source"],
           "torch": torch.__version__, "quantized_engine": torch.backends.quantized.engine,
           "supported_engines": list(torch.backends.quantized.supported_engines),
           "num_threads": torch.get_num_threads(), "num_interop_threads": torch.get_num_interop_threads(),
           "python": platform.python_version(), **process_settings()}
    for name in ("torchao", "transformers", "safetensors"):
        try:
            out[name] = __import__(name).__version__
        except Exception:
            out[name] = None
    try:
        import memray  # noqa: F401
        out["memray"] = True
    except Exception:
        out["memray"] = False
    # rank: the runner's own op (run/ops.py), one query against N L2-normalized 384-d vectors
    from atomsim.run import ops
    n = int(job.get("rank_items", 1000))
    g = torch.Generator().manual_seed(0)
    idx = ops.Vectors(torch.nn.functional.normalize(torch.randn(n, 384, generator=g), dim=1), ops.Texts([""] * n))
    q = ops.Vectors(torch.nn.functional.normalize(torch.randn(1, 384, generator=g), dim=1), ops.Texts(["q"]))
    ctx = ops.Context(clips=[], top_k=5)
    xs = []
    for i in range(job.get("samples", 5) + 2):
        t0 = time.perf_counter()
        ops.rank(None, [q, idx], {}, ctx)
        xs.append(time.perf_counter() - t0)
    out["rank"] = {"samples": xs[2:], "warmups": xs[:2], "items": n}
    out["assemble"] = assemble_cost(video, job.get("samples", 5))
    out["decode"] = decode_cost(video, job.get("samples", 5), int(job.get("frames", 6)), int(job.get("frame_size", 224)))
    tmp.cleanup()
    return out


def decode_cost(src: Path, samples: int, frames: int, frame_size: int) -> dict:
    """Seconds to decode one clip's frames from the reference video `src` (320x240, 10 fps h264)
    as the runner's `decode:i` step does (run/decoder.py: through a decoder process, started once
    before the samples and not timed, then normalized here; in this thread under
    ATOMSIM_DECODE_IN_THREAD=1), cycling over its clips; one warm-up, kept apart. Also the decoder
    process's peak RSS (`decoder_peak_bytes`, None in a thread): memory beside the runner's own
    that `baseline_rss_bytes` does not include, and its anonymous part after the samples
    (`decoder_anon_bytes`: what a memory cgroup charges for it)."""
    from atomsim.run.decoder import decode, start_decoder
    from atomsim.run.video import read_clips
    clips = read_clips(str(src), ASSEMBLE_REFERENCE["clip_s"], ASSEMBLE_REFERENCE["clip_s"] / 2, frames,
                       frame_size).clips
    dec = start_decoder()
    xs = []
    try:
        for i in range(samples + 1):
            t0 = time.perf_counter()
            decode(clips[i % len(clips)], frames, frame_size, dec)
            xs.append(time.perf_counter() - t0)
        peak = dec.peak_bytes() if dec is not None else None
        anon = dec.anon_bytes() if dec is not None else None
    finally:
        if dec is not None:
            dec.stop()
    return {"samples": xs[1:], "warmups": xs[:1], "decoder": "thread" if dec is None else "process",
            "decoder_peak_bytes": peak, "decoder_anon_bytes": anon,
            "reference": dict(ASSEMBLE_REFERENCE, frames=frames, frame_size=frame_size)}


def assemble_cost(src: Path, samples: int) -> dict:
    """Seconds to stitch 3 clips of 10 s from the reference video `src` (320x240, 10 fps h264; the
    simulator scales by clip count): decode, re-encode with libx264, write; and the memory its
    first call adds (one clip is decoded at a time: not scaled)."""
    import tempfile
    from types import SimpleNamespace

    from atomsim.run.assemble import assemble
    ref = ASSEMBLE_REFERENCE
    with tempfile.TemporaryDirectory() as d:
        clips = [SimpleNamespace(video=str(src), start_s=i * ref["clip_s"], end_s=(i + 1) * ref["clip_s"])
                 for i in range(ref["clips"])]
        # the first call, from a trimmed heap, gives its memory (decoder and encoder buffers)
        peak, _, method, first = op_memory(assemble, (clips, Path(d) / "out0.mp4"))
        xs = [first]
        for i in range(samples):
            t0 = time.perf_counter()
            assemble(clips, Path(d) / f"out{i + 1}.mp4")
            xs.append(time.perf_counter() - t0)
    return {"samples": xs[1:], "warmups": xs[:1], "items": ref["clips"], "reference": ref,
            "activation_peak_bytes": peak, "peak_method": method}
