"""atomsim.run: execute a scenario's plan with real modules on real videos.

    from atomsim.run import run_scenario
    result = run_scenario("scenarios/examples/assembly-tiny.yaml", ["a.mp4", "b.mov"],
                          policy="reuse-parallel", out_dir="out/")
    result.trace      # atomsim.schema.trace.Trace (source "measured")
    result.summary    # dict, same keys as the simulator's summary.json (+ measured extras)
    result.results    # dict written to results.json

Writes into out_dir: summary.json, trace.json, timeline.png (if atomsim.report.timeline is
present), results.json, and assembly.mp4 for the assembly task; every file atomically.
The runner executes the plan of `atomsim.plan.make_plan(scenario, policy, clips=n)` where n is
the number of clips really cut from the readable videos; it does not rebuild plans.
"""
from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import AtomsimError, VideoError
from ..io import atomic_write_json, check_writable_dir
from ..procfs import huge_pages

__all__ = ["RunResult", "run_scenario", "read_videos"]
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


def read_videos(videos, workload, progress=None):
    """Clips of every readable video; (clips, infos, skipped[{video, reason}])."""
    clips, infos, skipped = [], [], []
    from .video import read_clips
    for v in videos:
        if progress is not None:
            progress.set_description(f"video {Path(v).name}")
        try:
            info = read_clips(v, workload.clip_length_s, workload.clip_stride_s, workload.frames_per_clip,
                              workload.frame_size)
        except VideoError as e:
            skipped.append({"video": str(v), "reason": str(e)})
        else:
            infos.append(info)
            clips.extend(info.clips)
        if progress is not None:
            progress.update(1)
    return clips, infos, skipped


def run_scenario(scenario, videos, policy=None, out_dir=None, store=None, queries=None, prompt=None,
                 progress=True) -> RunResult:
    """Run `scenario` (a Scenario or a YAML path) on `videos` under `policy` (default: the scenario's).

    `queries` (retrieval) and `prompt` (assembly prompt / qa question) override the scenario's.
    Raises OutputError before any work if `out_dir` cannot be written, VideoError if no video
    could be read (the unreadable ones are listed in `results["skipped"]` otherwise).
    """
    from tqdm import tqdm

    from .. import models
    from ..plan import make_plan
    from ..schema.trace import Trace, summary_dict, write_trace
    from .assemble import assemble
    from .executor import Executor
    from .memory import MemoryMonitor
    from .pipeline import Pipeline

    if out_dir is None:
        raise AtomsimError("run_scenario needs out_dir (where summary.json, trace.json, results.json go)")
    out_dir = check_writable_dir(out_dir)
    sc = _scenario(scenario)
    changes = {}
    if queries:
        changes["workload.queries"] = list(queries)
    if prompt:
        changes["workload.prompt"] = prompt
    if changes:
        sc = sc.with_changes(**changes)
    policy = policy or sc.policy
    videos = [str(v) for v in videos]
    if not videos:
        raise VideoError("no videos given")
    w = sc.workload
    store = Path(store) if store else models.default_store()

    bar = tqdm(total=len(videos), disable=not progress, unit="step", dynamic_ncols=True, leave=False)
    try:
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
        for ref in plan.instances.values():
            models.build(sc.models.preset, ref.model, ref.quant, store=store)
            # import the model's code now: lazy imports (transformers) racing in lane threads
            # fail, and import time is not load time
            models.spec(sc.models.preset, ref.model)

        bar.total = len(videos) + len(plan.steps)
        bar.refresh()
        pipe = Pipeline(w.task, clips, w.queries, w.prompt, w.top_k,
                        assemble_fn=lambda chosen: assemble(chosen, out_dir / "assembly.mp4"))
        trace = Trace.for_plan(plan, "measured", scenario=sc.name, preset=sc.models.preset, clips=len(clips))
        t0 = time.perf_counter()
        monitor = MemoryMonitor(trace, t0, inputs_fn=pipe.inputs_bytes)

        def load_fn(role, ref):
            # models.load is not thread-safe (it patches nn.Module construction to the meta
            # device process-wide while building): loads on parallel lanes take turns
            with _LOAD_LOCK:
                return models.load(sc.models.preset, ref.model, ref.quant, store=store)

        def on_step(step):
            bar.set_description(step.id)
            bar.update(1)

        # what start-up created (imports, model code, decoded clips) stays alive for the run:
        # freeze it, as a long-running app does after start-up, so that the collections at each
        # load and free walk only what the pipeline creates (the profiler's workers do the same);
        # and give the decoder's freed buffers back (malloc_trim), so that the pipeline starts
        # from the heap the profile's baseline_rss_bytes describes, whatever length of video was
        # decoded (measured: without it the start RSS minus the inputs was 451 MB after a 31 s
        # video and 470 MB after a 65 s one, against 436-438 MB trimmed)
        gc.collect()
        models.malloc_trim()
        gc.freeze()
        monitor.start()
        try:
            Executor(plan, load_fn, pipe, trace=trace, t0=t0, monitor=monitor, on_step=on_step).run()
        finally:
            monitor.stop()
        trace.memory.sort(key=lambda m: m[0])
    finally:
        bar.close()
        gc.unfreeze()

    peak, breakdown, method = monitor.peak()
    trace.meta.update({"memory_sample_hz": round(monitor.rate_hz(), 1), "peak_method": method})
    summary = summary_dict(trace, scenario=sc.name, extra={
        "videos": len(infos), "clips": len(clips), "skipped": len(skipped), "video_read_s": round(read_s, 6),
        "peak_method": method, "sampled_peak_bytes": trace.peak()[0],
        "memory_sample_hz": round(monitor.rate_hz(), 1), "preset": sc.models.preset, "huge_pages": huge_pages(),
        "instances": {k: v.key for k, v in plan.instances.items()},
        "memory_events": monitor.events})
    summary["peak_bytes"], summary["breakdown_bytes"] = int(peak), {k: int(v) for k, v in breakdown.items()}
    from ..report.energy import add_energy
    summary = add_energy(summary, trace, sc.device)

    results = pipe.results()
    results.update({"policy": plan.policy, "scenario": sc.name, "skipped": skipped,
                    "videos": [{"video": i.path, "duration_s": i.duration_s, "width": i.width, "height": i.height,
                                "fps": i.fps, "rotation": i.rotation, "codec": i.codec, "audio": i.has_audio,
                                "clips": len(i.clips)} for i in infos]})
    write_trace(out_dir, trace, summary)
    try:
        from ..report.timeline import plot_timeline
    except ImportError:
        summary["timeline"] = "not drawn: atomsim.report.timeline is not available"
    else:
        plot_timeline([trace], out_dir / "timeline.png", titles=[f"{sc.name} / {plan.policy} (measured)"])
        summary["timeline"] = "timeline.png"
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_json(out_dir / "results.json", results)
    return RunResult(trace, summary, results, out_dir)
