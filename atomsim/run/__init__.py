"""atomsim.run: execute a scenario's plan with real modules on real videos.

    from atomsim.run import run_scenario
    result = run_scenario("scenarios/user/caption-search.yaml", ["a.mp4", "b.mov"],
                          policy="reuse-parallel", out_dir="out/")
    result.trace      # atomsim.schema.trace.Trace (source "measured")
    result.summary    # dict, same keys as the simulator's summary.json (+ measured extras)
    result.results    # dict written to results.json

Writes into out_dir: summary.json, trace.json, results.json (each request's named outputs), and
the video of an assemble stage as `<out>.mp4` (`<out>-r<k>.mp4` for request k >= 1); every
file atomically. timeline.png is the
command's (`run.cli.draw_timeline`): the runner imports nothing of atomsim.report. Clips are
decoded by the plan's `decode:i` steps (streamed, at most `queue_size` clips of frames
resident) in a decoder process of the run's own (decoder.py: PyAV away from the lanes'
interpreter lock; `ATOMSIM_DECODE_IN_THREAD=1` decodes in the lane's thread instead), started and
warmed with the first clip before the run's clock starts, stopped at its end and on any error or
Ctrl-C; the summary's `decoder_peak_bytes` is that process's peak RSS. Under a RAM limit: `limit.py`.
The runner executes the plan of `atomsim.plan.make_plan(scenario, policy, clips=n)` where n is
the number of clips really cut from the readable videos; it does not rebuild plans.
"""
from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import AtomsimError, VideoError
from ..io import atomic_write_json, check_writable_dir
from ..procfs import huge_pages
from .events import EventLog

__all__ = ["RunResult", "run_scenario", "read_videos", "expand_videos"]
_LOAD_LOCK = threading.Lock()


@dataclass
class RunResult:
    trace: object
    summary: dict
    results: dict
    out_dir: Path | None = None


def _scenario(scenario):
    from ..schema.scenario import Scenario, load_scenario
    if isinstance(scenario, Scenario):
        return scenario
    return load_scenario(scenario)


VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".3gp", ".ts", ".flv", ".wmv"}


def expand_videos(videos) -> list[str]:
    """The paths given, a directory standing for its video files (by extension, sorted)."""
    out = []
    for v in videos:
        p = Path(v)
        if p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise VideoError(f"{p}: a directory with no video files ({', '.join(sorted(VIDEO_EXTENSIONS))})")
            out.extend(found)
        else:
            out.append(str(v))
    return out


def read_videos(videos, workload, progress=None, keep_frames=False):
    """Clips of every readable video; (clips, infos, skipped[{video, reason}]). Each video is
    decoded once to its end (corrupt and truncated files are skipped here, with the reason);
    the clips' frames are decoded later, by the plan's `decode:i` steps, unless `keep_frames`."""
    clips, infos, skipped = [], [], []
    from .video import read_clips
    for v in videos:
        if progress is not None:
            progress.set_description(f"video {Path(v).name}")
        try:
            info = read_clips(v, workload.clip_length_s, workload.clip_stride_s, workload.frames_per_clip,
                              workload.frame_size, keep_frames=keep_frames)
        except VideoError as e:
            skipped.append({"video": str(v), "reason": str(e)})
        else:
            infos.append(info)
            clips.extend(info.clips)
        if progress is not None:
            progress.update(1)
    return clips, infos, skipped


def reads_during(fn):
    """(fn(), bytes the process read from storage meanwhile (/proc/self/io read_bytes), or None
    where unknown). Per process, not per thread: pages a load maps fault in from torch's OpenMP
    workers too (counted per thread, a cold memory-mapped small int8 sentence-encoder load read
    18-23 MB of its 59 MB file). Another lane's storage reads during the load count as well (the
    video lane's: the benchmark's whole video is 0.36 MB)."""
    from ..procfs import io_counters
    before = io_counters().get("read_bytes")
    out = fn()
    after = io_counters().get("read_bytes")
    return out, (None if before is None or after is None else after - before)


def make_loader(sc, pipe, store, loads: list, log=None):
    """load_fn for the Executor: loads one module at a time and records, per load, the page-cache
    residency of its weight files before it (mincore) and the bytes the process read from storage
    during it (`reads_during`); cold = more than half the files' bytes read. `pipe`: the plan's
    pipeline, which says where each module comes from (models/sources.py)."""
    from ..models import sources
    from ..pagecache import resident_fraction

    def load_fn(role, ref):
        # models.load is not thread-safe (it patches nn.Module construction to the meta
        # device process-wide while building): loads on parallel lanes take turns
        with _LOAD_LOCK:
            files = [str(p) for p in sources.weight_files(pipe, role, ref, sc.models.preset, store)]
            size = sum(Path(f).stat().st_size for f in files)
            resident = resident_fraction(files)
            module, read = reads_during(lambda: sources.load(pipe, role, ref, sc.models.preset, store))
        rec = {"instance": role, "module": ref.key, "file_bytes": size, "resident_before": resident,
               "read_bytes": read, "cold": None if read is None else read > size / 2}
        loads.append(rec)
        if log is not None:
            log.write(kind="load", **rec)
        return module
    return load_fn


def run_scenario(scenario, videos, policy=None, out_dir=None, store=None, queries=None, prompt=None,
                 progress=True, events=None) -> RunResult:
    """Run `scenario` (a Scenario or a YAML path) on `videos` under `policy` (default: the scenario's).

    `queries` and `prompt` override the workload's values of those names.
    `events`: a path for the event log (events.py) that lets a parent rebuild the trace if the
    run is killed. Raises OutputError before any work if `out_dir` cannot be written, VideoError
    if no video could be read (the unreadable ones are listed in `results["skipped"]` otherwise).
    """
    from tqdm import tqdm

    from .. import models

    if out_dir is None:
        raise AtomsimError("run_scenario needs out_dir (where summary.json, trace.json, results.json go)")
    out_dir = check_writable_dir(out_dir)
    sc = _with_texts(_scenario(scenario), queries, prompt)
    videos = expand_videos(videos)
    if not videos:
        raise VideoError("no videos given")
    store = Path(store) if store else models.default_store()
    bar = tqdm(total=len(videos), disable=not progress, unit="step", dynamic_ncols=True, leave=False)
    log = EventLog(events) if events else None
    decoder = None
    try:
        prep = _prepare(sc, videos, policy or sc.policy, store, bar)
        decoder = _start_decoder(prep["clips"][0], sc.workload)
        trace, monitor, pipe, loads = _execute(sc, prep, store, out_dir, bar, log, decoder)
        if decoder is not None:
            prep["decoder_peak_bytes"] = decoder.peak_bytes()
    finally:
        if decoder is not None:
            decoder.stop()
        bar.close()
        gc.unfreeze()
        if log is not None:
            log.close()
    return _finish(sc, prep, trace, monitor, pipe, loads, out_dir)


def _with_texts(sc, queries, prompt):
    changes = {}
    if queries:
        changes["workload.queries"] = list(queries)
    if prompt:
        changes["workload.prompt"] = prompt
    return sc.with_changes(**changes) if changes else sc


def _prepare(sc, videos, policy, store, bar) -> dict:
    """Scan the videos, make the plan, build (if needed) and import the plan's modules."""
    from ..models import sources
    from ..plan import make_plan
    w = sc.workload
    t_read = time.perf_counter()
    clips, infos, skipped = read_videos(videos, w, bar)
    if w.clips is not None:
        clips = clips[:w.clips]   # the scenario asks for at most this many clips
    read_s = time.perf_counter() - t_read
    if not clips:
        reasons = "; ".join(s["reason"] for s in skipped)
        raise VideoError(f"no video could be read: {reasons}")
    plan = make_plan(sc, policy, clips=len(clips))
    bar.set_description("models")
    for name, ref in plan.instances.items():
        # builds what is missing, and imports the model's code now: lazy imports (transformers)
        # racing in lane threads fail, and import time is not load time
        sources.build(plan.pipeline, name, ref, sc.models.preset, store)
    bar.total = len(videos) + len(plan.steps)
    bar.refresh()
    return {"clips": clips, "infos": infos, "skipped": skipped, "read_s": read_s, "plan": plan}


def _start_decoder(first_clip, w):
    """The decode steps' worker process (decoder.py), warmed with the run's first clip: start-up,
    before the run's clock (None under ATOMSIM_DECODE_IN_THREAD=1)."""
    from .decoder import start_decoder
    return start_decoder(warm=(first_clip, w.frames_per_clip, w.frame_size))


def _execute(sc, prep, store, out_dir, bar, log, decoder=None):
    from .. import models
    from ..schema.trace import Trace
    from .assemble import assemble
    from .executor import Executor
    from .memory import MemoryMonitor
    from .pipeline import Dataflow

    plan, clips = prep["plan"], prep["clips"]
    pipe = Dataflow(plan.pipeline, clips, sc.workload, decoder=decoder,
                    assemble_fn=lambda chosen, name, r: assemble(chosen, out_dir / _video_name(name, r)))
    trace = Trace.for_plan(plan, "measured", scenario=sc.name, preset=sc.models.preset, clips=len(clips))
    loads: list[dict] = []

    def on_start(step, t):
        if log is not None:
            log.write(kind="start", step=step.id, t_s=round(t, 6))

    def on_step(step, start, end):
        if log is not None:
            log.write(kind="end", step=step.id, start_s=round(start, 6), end_s=round(end, 6))
        bar.set_description(step.id)
        bar.update(1)

    # what start-up created (imports, model code) stays alive for the run: freeze it, as a
    # long-running app does after start-up, so that the collections at each load and free walk
    # only what the pipeline creates (the profiler's workers do the same); and give the video
    # scan's freed buffers back (malloc_trim), so that the pipeline starts from the heap the
    # profile's baseline_rss_bytes describes, whatever length of video was scanned (measured:
    # without it the start RSS was 451 MB after a 31 s video and 470 MB after a 65 s one,
    # against 436-438 MB trimmed). Before that, the imports every load needs, as the profiler's
    # workers make them before they time a load (models.preload): a first load that imports
    # holds the interpreter lock, and the lanes beside it wait
    models.preload()
    gc.collect()
    models.malloc_trim()
    gc.freeze()
    # the run's clock starts here, where the plan's first step may start, as the simulator's does:
    # the collection, trim and freeze above are the runner's own start-up (measured: 0.14 s of a
    # 1.2 s run of the tiny preset, charged to the run when the clock started before them)
    t0 = time.perf_counter()
    on_sample = (lambda t, b: log.write(quiet=True, kind="memory", t_s=round(t, 6), b=b)) if log else None
    monitor = MemoryMonitor(trace, t0, inputs_fn=pipe.inputs_bytes, on_sample=on_sample)
    if log is not None:
        log.write(kind="t0", epoch=time.time(), steps=len(plan.steps), clips=len(clips))
    monitor.start()
    try:
        Executor(plan, make_loader(sc, plan.pipeline, store, loads, log), pipe, trace=trace, t0=t0, monitor=monitor,
                 on_step=on_step, on_start=on_start).run()
    finally:
        monitor.stop()
    trace.memory.sort(key=lambda m: m[0])
    return trace, monitor, pipe, loads


def match_loads(plan, loads: list[dict]) -> list[dict]:
    """The load records (in the order they ran) beside their plan steps: each step takes the
    first unmatched record of its instance."""
    left = list(loads)
    out = []
    for s in plan.steps:
        if s.kind != "load":
            continue
        rec = next((r for r in left if r["instance"] == s.instance), None)
        if rec is None:
            continue
        left.remove(rec)
        out.append({"step": s.id, "request": s.request, **rec})
    return out


def _video_name(out: str, request: int) -> str:
    """An assemble stage's video: its output's name (`<out>-r<k>.mp4` for request k >= 1)."""
    return f"{out}.mp4" if request == 0 else f"{out}-r{request}.mp4"


def _finish(sc, prep, trace, monitor, pipe, loads, out_dir) -> RunResult:
    from ..schema.trace import summary_dict, write_trace
    plan, infos = prep["plan"], prep["infos"]
    peak, breakdown, method = monitor.peak()
    trace.meta.update({"memory_sample_hz": round(monitor.rate_hz(), 1), "peak_method": method})
    summary = summary_dict(trace, scenario=sc.name, extra={
        "videos": len(infos), "clips": len(prep["clips"]), "skipped": len(prep["skipped"]),
        "video_read_s": round(prep["read_s"], 6), "requests": sc.workload.request_count(),
        "peak_method": method, "sampled_peak_bytes": trace.peak()[0],
        "memory_sample_hz": round(monitor.rate_hz(), 1), "preset": sc.models.preset, "huge_pages": huge_pages(),
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"), "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "instances": {k: v.key for k, v in plan.instances.items()},
        "loads": match_loads(plan, loads),
        "memory_events": monitor.events, "outcome": "completed"})
    summary["peak_bytes"], summary["breakdown_bytes"] = int(peak), {k: int(v) for k, v in breakdown.items()}
    if "decoder_peak_bytes" in prep:   # the decoder process's own peak RSS, apart (memory.py)
        summary["decoder_peak_bytes"] = prep["decoder_peak_bytes"]
    if plan.evictions():   # a budget policy's frees, each with its reason (the simulator's summary has the same)
        summary["evictions"] = plan.evictions()
    from ..schema.energy import add_energy
    summary = add_energy(summary, trace, sc.device, threads={s.id: s.threads for s in plan.steps})

    results = pipe.results()
    results.update({"policy": plan.policy, "scenario": sc.name, "skipped": prep["skipped"],
                    "videos": [{"video": i.path, "duration_s": i.duration_s, "width": i.width, "height": i.height,
                                "fps": i.fps, "rotation": i.rotation, "codec": i.codec, "audio": i.has_audio,
                                "clips": len(i.clips)} for i in infos]})
    write_trace(out_dir, trace, summary)   # trace.json, summary.json
    atomic_write_json(out_dir / "results.json", results)
    return RunResult(trace, summary, results, out_dir)
