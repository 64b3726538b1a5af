"""The measuring side: runs in processes that have never held a module.

`python -m atomsim.profile.worker serve` is a fork server (a "zygote", as on Android): it imports
Python, torch, transformers, torchao and atomsim once and never runs a torch op; for every job
(one JSON line on stdin) it forks a child that runs the job from a clean state and answers one
JSON line on stdout. `python -m atomsim.profile.worker run JOB_JSON` runs one job in this fresh
process instead (used with `fresh=True`, and where fork is unavailable).

Jobs (`mode`): `load` (cold or warm load of one module), `ops` (latency and activation peak of
each op at each thread count), and, in device_jobs.py, `corun` (two ops at once in two threads)
and `baseline` (runtime RSS, torch settings, rank and assemble cost). Test hook:
ATOMSIM_TEST_TRANSIENT_BYTES allocates and frees that many bytes inside the measured load.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from .. import pagecache, procfs
from . import memory

# the reference video the runner-state jobs decode, and the clips assemble_cost stitches from it
ASSEMBLE_REFERENCE = {"width": 320, "height": 240, "fps": 10, "clip_s": 10.0, "clips": 3}


# ------------------------------------------------------------------ targets

def weight_files(job) -> list[str]:
    t, src = job.get("target"), job.get("source")
    if t:
        return [t["path"]]
    if src and "pte" in src:   # a pipeline's program of its own
        return [src["pte"]]
    if src:   # a pipeline's Hugging Face module
        from atomsim.models import hf
        return [str(p) for p in hf.weight_files(src["hf"], src["kind"], job["quant"], job.get("store"))]
    from atomsim import models
    return [str(p) for p in models.weight_files(job["preset"], job["model"], job["quant"], job.get("store"))]


def load_target(job):
    t, src = job.get("target"), job.get("source")
    if t:  # a bare safetensors file (tests: known bytes)
        from safetensors.torch import load_file
        return load_file(t["path"])
    if src and "pte" in src:
        from atomsim.models.pte_user import load
        return load(src["pte"], src["kind"], src["manifest"])
    if src:
        from atomsim.models import hf
        return hf.load(src["hf"], src["kind"], job["quant"], store=job.get("store"))
    from atomsim import models
    return models.load(job["preset"], job["model"], job["quant"], store=job.get("store"))


def _test_transient():
    n = int(os.environ.get("ATOMSIM_TEST_TRANSIENT_BYTES") or 0)
    if n > 0:
        x = b"\x01" * n  # written, so resident
        del x


def timed_load(job):
    t0 = time.perf_counter()
    mod = load_target(job)
    _test_transient()
    return mod, time.perf_counter() - t0


# ------------------------------------------------------------------ jobs

def job_load(job) -> dict:
    files = weight_files(job)
    out = {"files": files, "file_bytes": sum(os.path.getsize(f) for f in files)}
    if job.get("cold"):
        out["evict"] = pagecache.evict_checked(files)
    else:
        pagecache.touch(files)
        out["resident_before"] = pagecache.resident_fraction(files)
    memory.settle()
    s0, io0 = memory.split(), procfs.io_counters()
    if job.get("memray"):  # heap peak and heap kept, from memray (its overhead: not timed)
        import memray
        fd, tmp = tempfile.mkstemp(prefix="atomsim-memray-", suffix=".bin")
        os.close(fd)
        os.unlink(tmp)
        try:
            with memray.Tracker(tmp, native_traces=False):
                mod, _ = in_lane(timed_load, job)
            reader = memray.FileReader(tmp)
            peak_all = int(reader.metadata.peak_memory)
            # heap only: file mappings (mmap'd weights) are not temporaries, leave them out
            mm = getattr(getattr(memray, "AllocatorType", None), "MMAP", None)

            def heap(records):
                return sum(int(a.size) for a in records if a.allocator != mm)

            peak = heap(reader.get_high_watermark_allocation_records(merge_threads=True))
            kept = heap(reader.get_leaked_allocation_records(merge_threads=True))
            out["memray_peak_with_mmap"] = peak_all
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        out.update(memray_peak=peak, memray_kept=kept, transient_memray=max(0, peak - kept))
        del mod
        return out
    with memory.Peak() as pk:
        mod, secs = in_lane(timed_load, job)   # in a thread, as the runner loads
    memory.settle()
    s1, io1 = memory.split(), procfs.io_counters()
    wmap = memory.mapped_rss(files)
    if s1["anon"] is not None and wmap is not None:
        # weights = heap kept + pages of the weight files mapped; other file-backed growth is
        # library code paged in by the first load (reported apart)
        out.update(resident=s1["anon"] - s0["anon"] + wmap, resident_method="anon-delta+weight-mappings",
                   other_file=(s1["file"] - s0["file"]) - wmap)
    else:
        out.update(resident=s1["rss"] - s0["rss"], resident_method="rss-delta")
    out.update(seconds=secs, peak_method=pk.method, rss_before=s0["rss"], rss_after=s1["rss"],
               retained=s1["rss"] - s0["rss"], split_source=s1["source"],
               retained_anon=None if s1["anon"] is None else s1["anon"] - s0["anon"],
               retained_file=wmap,
               transient_hwm=max(0, pk.peak - s1["rss"]),
               read_bytes=(io1["read_bytes"] - io0["read_bytes"]) if "read_bytes" in io1 and "read_bytes" in io0 else None,
               rchar=(io1["rchar"] - io0["rchar"]) if "rchar" in io1 and "rchar" in io0 else None,
               params=getattr(mod, "params", None))
    if job.get("touch") and isinstance(mod, dict):  # bare tensors: use them once (mmap'd pages fault in)
        for t in mod.values():
            float(t.float().sum())
        memory.settle()
        s2 = memory.split()
        w2 = memory.mapped_rss(files) or 0
        out["resident_used"] = s2["anon"] - s0["anon"] + w2 if s2["anon"] is not None else s2["rss"] - s0["rss"]
    return out


def input_bytes(x) -> int:
    import torch
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, str):
        return len(x.encode())
    if isinstance(x, (list, tuple)):
        return sum(input_bytes(v) for v in x)
    return 0


def _items(op, shape, inputs):
    if op == "embed":
        return len(inputs[0])
    return 1


def _resident(s0, files):
    s = memory.split()
    w = memory.mapped_rss(files)
    if s["anon"] is None or w is None:
        return {"resident": s["rss"] - s0["rss"], "anon": None, "file": None}
    return {"resident": s["anon"] - s0["anon"] + w, "anon": s["anon"] - s0["anon"], "file": w}


def sample_op(fn, inputs, samples: int, warmups: int, min_samples: int, budget_s: float | None):
    """(warm-up times, sample times) of `fn(*inputs)`.

    Up to `samples` timed calls after up to `warmups` calls kept apart. A time budget, as pyperf
    bounds a benchmark's runtime: once `min_samples` are taken, sampling stops when the samples
    so far add up to `budget_s`; warm-ups stop after the first one when it alone took more than
    `budget_s / samples` (a slow op's first call already warmed its code paths). `warmups=0`
    (a slow op at its second thread count: its code is warm, and a new thread pool costs
    milliseconds) takes none."""
    warm, xs = [], []
    for i in range(warmups):
        t0 = time.perf_counter()
        fn(*inputs)
        warm.append(time.perf_counter() - t0)
        if budget_s and warm[0] > budget_s / max(1, samples):  # slow: one warm-up is enough
            break
    for i in range(samples):
        if budget_s and len(xs) >= min_samples and sum(xs) >= budget_s:
            break
        t0 = time.perf_counter()
        fn(*inputs)
        xs.append(time.perf_counter() - t0)
    return warm, xs


def in_lane(fn, *args):
    """`fn(*args)` in a new thread, as the runner runs every step (loads and ops) in a lane thread.
    With more than one malloc arena, glibc served a thread's buffers from an arena of its own and
    kept a different share of them (video-encoder/torch-dynamic-int8, small, 1 thread, first call
    after load: activation peak 78-98 MB in the main thread, 148-151 MB in a thread); `import
    atomsim` now allows one arena, and the lane thread keeps the runner's order of work."""
    out = {}

    def body():
        try:
            out["result"] = fn(*args)
        except BaseException as e:   # re-raised in the caller
            out["error"] = e

    t = threading.Thread(target=body, name="atomsim-lane-profile")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


def runner_heap(video) -> None:
    """Put this process's allocator in the state of `atomsim run` before its first load: the clips
    of a reference video decoded (`video`, made here when missing) and their frames dropped.
    Called in a thread of its own, as the runner streams clips from its video lane: with the
    clips decoded in the main thread instead, the first small fp32 encode in the lane thread grew
    by 138 MB and kept 114 MB, against 92-95 and 40-43 MB decoded in a thread, and the runner's
    first encode (reuse-serial, cgroup anonymous memory) by about 73 MB."""
    from atomsim.run.synthetic import make_video
    from atomsim.run.video import read_clips
    ref = ASSEMBLE_REFERENCE
    video = Path(video)
    if not video.exists():
        video.parent.mkdir(parents=True, exist_ok=True)
        part = video.with_name(f".{video.name}.{os.getpid()}.mp4")
        make_video(part, seconds=ref["clip_s"] * ref["clips"] + 1, width=ref["width"], height=ref["height"],
                   fps=ref["fps"])
        os.replace(part, video)
    clips = read_clips(str(video), 10.0, 5.0, 6, 224).clips
    del clips


def op_memory(fn, inputs) -> tuple[int, int, str, float]:
    """(activation peak, heap kept, peak method, seconds) of one call from a trimmed heap: the
    high-water mark above the RSS before, and what it leaves after gc without a trim, both in
    anonymous memory: the library code a first call pages in (file pages, about 12 MB for
    video-encoder/fp32 encode) is page cache that a RAM limit takes back, not the op's memory."""
    memory.settle()
    s0 = memory.split()
    t0 = time.perf_counter()
    with memory.Peak() as pk:
        r = fn(*inputs)
        del r
    dt = time.perf_counter() - t0
    gc.collect()
    s1 = memory.split()
    if s0["anon"] is None or s1["anon"] is None:   # no anonymous/file split: RSS throughout
        return max(0, pk.peak - s0["rss"]), max(0, s1["rss"] - s0["rss"]), pk.method, dt
    paged_in = max(0, s1["file"] - s0["file"])     # file pages only grow during the call
    return (max(0, pk.peak - s0["rss"] - paged_in), max(0, s1["anon"] - s0["anon"]), pk.method, dt)


def job_ops(job) -> dict:
    """One round of a module's ops: load it, then for each op and thread count (`todo`: op ->
    thread counts still wanted; default all) warm-ups and `samples` timed calls. With `memory`
    the process first takes the runner's state (`runner_heap`, when `reference_video` is given),
    and each op's first call at each thread count, from a trimmed heap, gives its activation peak
    and the heap it keeps (as the pipeline's first call after its loads); that call counts as a
    warm-up. An op listed in `cold_ok` (slow: a call costs far more than a first call's set-up)
    takes no other warm-up. The load and the ops run in one thread (`in_lane`), as a runner lane's."""
    files = weight_files(job)
    mem = job.get("memory", True)
    if mem and job.get("reference_video"):
        in_lane(runner_heap, job["reference_video"])   # in a thread, as the runner's video lane decodes
    return in_lane(_ops_in_lane, job, files, mem)


def _ops_in_lane(job, files, mem) -> dict:
    import torch
    memory.settle()
    s0 = memory.split()
    # the load's temporaries in the runner's state (memory jobs): anonymous memory only, as the
    # file pages a load maps (library code, mapped weights) are page cache, not temporaries
    anon_ok = memory.anon() is not None
    with (memory.AnonPeak() if anon_ok else memory.Peak()) as pk:
        mod, _ = timed_load(job)
    memory.settle()
    load_transient = max(0, pk.peak - (memory.anon() if anon_ok else memory.rss()))
    after_load = _resident(s0, files)
    res = {}
    budget, n = job.get("budget_s"), int(job["samples"])
    todo, cold_ok = job.get("todo") or {}, set(job.get("cold_ok") or ())
    for op, shape in job["ops"].items():
        # the most threads first: an op's first call pays its one-time set-up, and what that
        # keeps depends on the thread count (video-encoder/fp32 encode, first call from a trimmed
        # heap: peak +131 MB at 1 thread, +80 MB at 2; 65-79 MB at either one afterwards); the
        # runner's first call runs at the plan's threads, all cores unless told otherwise
        threads = sorted(todo.get(op, job["threads"]), key=int, reverse=True)
        if not threads:
            continue
        inputs = mod.example_inputs(op, **shape)
        fn = getattr(mod, op)
        lat, peaks, retained, method, first_call = {}, {}, {}, None, None
        warmups, slow = max(1, job.get("warmups", 1)), op in cold_ok
        for t in threads:
            torch.set_num_threads(int(t))
            first = []
            if mem:
                peaks[str(t)], retained[str(t)], method, dt = op_memory(fn, inputs)
                first = [dt]
                # the op's first call since the load (the most threads come first): what a runner's
                # first call after each load pays again (one-time set-up: a tiny captioner's 0.6 s
                # against 0.25 s for the next calls)
                first_call = first_call or {"threads": int(t), "seconds": dt}
            warm, xs = sample_op(fn, inputs, n, 0 if (slow or first) else warmups, job.get("min_samples", n), budget)
            warm = first + warm
            slow = slow or (bool(budget) and min(warm + xs) > budget / max(1, job.get("samples_total", n)))
            lat[str(t)] = {"samples": xs, "warmups": warm}
        res[op] = {"latency": lat, "slow": slow, "input_bytes": input_bytes(inputs),
                   "items": _items(op, shape, inputs), "shape": shape, "first_call": first_call}
        if mem:
            res[op].update(activation_peak_by_threads=peaks, peak_method=method, heap_retained_by_threads=retained)
    if callable(getattr(mod, "planned_activation_bytes", None)):   # an ExecuTorch program: read once,
        planned = mod.planned_activation_bytes()                   # after every op's memory was taken
        for r in res.values():
            r["planned_activation_bytes"] = planned
    memory.settle()
    after_ops = _resident(s0, files)
    from atomsim.models.quant import engine_used
    from .fingerprint import thread_cpus
    seen = {"engine": engine_used(job.get("quant")), "affinity": sorted(os.sched_getaffinity(0)),
            "thread_cpus": thread_cpus()}  # what the fingerprint reports (fingerprint.ops_seen)
    t0 = time.perf_counter()
    mod.free()
    free_s = time.perf_counter() - t0
    mod = fn = inputs = None   # drop the module and its op inputs before measuring what stays
    memory.settle()
    kept = _resident(s0, files)   # what stays in the process once the module is freed
    return {"ops": res, "resident_after_load": after_load, "resident_after_ops": after_ops, "free_s": free_s,
            "load_transient": load_transient if mem else None,
            "kept_after_free": kept["anon"] if kept["anon"] is not None else kept["resident"], **seen}


def run_job(job) -> dict:
    from .device_jobs import job_baseline, job_corun
    jobs = {"load": job_load, "ops": job_ops, "corun": job_corun, "baseline": job_baseline}
    try:
        return {"ok": True, "result": jobs[job["mode"]](job)}
    except BaseException as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}


def _private_stdout():
    """Keep a private handle on stdout for results; route fd 1 to stderr so that nothing else
    (library chatter) can corrupt the protocol."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def serve() -> None:
    from atomsim.models import preload
    out = _private_stdout()
    preload()
    # freeze the imports' objects (as the runner does before its first load): a forked child's
    # collections then skip them and do not copy-on-write every page of the parent's heap
    gc.collect()
    gc.freeze()
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: a process that never held a module
            os.close(r)
            try:
                data = json.dumps(run_job(job)).encode()
                with os.fdopen(w, "wb") as f:
                    f.write(data)
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            data = json.dumps({"ok": False, "error": f"worker child died (wait status {status})"}).encode()
        out.write(data.decode() + "\n")
        out.flush()


def main(argv=None) -> int:
    from ..process import pin_measurement_process, quiet_import_noise
    pin_measurement_process()   # before preload() imports torch (workers.py starts us with them in the environment)
    quiet_import_noise()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        serve()
        return 0
    if len(argv) == 2 and argv[0] == "run":
        from atomsim.models import preload
        out = _private_stdout()
        preload()
        gc.collect()
        gc.freeze()
        out.write(json.dumps(run_job(json.loads(argv[1]))) + "\n")
        out.flush()
        return 0
    sys.stderr.write("usage: python -m atomsim.profile.worker serve | run JOB_JSON\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
