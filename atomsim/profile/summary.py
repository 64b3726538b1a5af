"""The profile from its measurements: each module's figures (medians over rounds), the co-run
figures, and the whole `Profile` with the method of every figure; `finish_partial` writes one from
an interrupted profile's side file."""
from __future__ import annotations

import json
import statistics
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ProfileError
from ..schema.profile import (
    PROFILE_VERSION,
    CoRun,
    Load,
    ModuleProfile,
    Op,
    Profile,
    Stat,
    save_profile,
)
from . import fingerprint


def partial_path(out) -> Path:
    """The side file of a profile being taken (resumable)."""
    return Path(str(out) + ".partial.json")


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def module_profile(preset, model, quant, loads_cold, loads_warm, memray_r, ops_r, params) -> ModuleProfile:
    both = loads_cold + loads_warm
    ev = [r["evict"]["evicted"] for r in loads_cold]
    rb = [r.get("read_bytes") for r in loads_cold]
    file_bytes = both[0]["file_bytes"]
    if all(e is True for e in ev):
        evicted = True
    elif any(e is False for e in ev):
        evicted = False
    elif all(x is not None for x in rb) and file_bytes > 0:  # no mincore: did the cold loads hit storage?
        evicted = _med(rb) >= 0.5 * file_bytes
    else:
        evicted = None
    t_hwm = int(_med([r["transient_hwm"] for r in both]))
    t_memray = None if memray_r is None else int(memray_r["transient_memray"])
    lo_hi = (t_hwm, t_hwm) if t_memray is None else (min(t_hwm, t_memray), max(t_hwm, t_memray))
    load = Load(cold_s=Stat.of([r["seconds"] for r in loads_cold]), warm_s=Stat.of([r["seconds"] for r in loads_warm]),
                cold_evicted=evicted, transient_bytes=lo_hi, bytes_read=None if _med(rb) is None else int(_med(rb)),
                transient_hwm_bytes=t_hwm, transient_memray_bytes=t_memray,
                read_bytes_warm=None if _med([r.get("read_bytes") for r in loads_warm]) is None
                else int(_med([r.get("read_bytes") for r in loads_warm])),
                residency_after_evict=[r["evict"]["after"] for r in loads_cold],
                transient_runner_bytes=(ops_r or {}).get("load_transient"))
    ops = {}
    for op, r in (ops_r or {}).get("ops", {}).items():
        ops[op] = Op(latency_s={t: Stat.of(v["samples"], v["warmups"]) for t, v in r["latency"].items()},
                     activation_peak_bytes=max(r["activation_peak_by_threads"].values()),
                     input_bytes=r["input_bytes"], items=r["items"], shape=r["shape"],
                     activation_peak_by_threads=r["activation_peak_by_threads"], peak_method=r["peak_method"],
                     heap_retained_bytes=max(r["heap_retained_by_threads"].values()) if r.get("heap_retained_by_threads") else None,
                     heap_retained_by_threads=r.get("heap_retained_by_threads"),
                     activation_peak_rounds=r.get("activation_peak_rounds"),
                     **({"first_call_s": Stat.of(r["first_call_s"]), "first_call_threads": r["first_call_threads"]}
                        if r.get("first_call_s") else {}),
                     **({"planned_activation_bytes": r["planned_activation_bytes"]} if "planned_activation_bytes" in r else {}))
    after_load = int(_med([r["resident"] for r in both]))
    used = (ops_r or {}).get("resident_after_ops")
    if used:  # what a loaded module keeps once its ops ran (mmap'd weights fault in on first use)
        res, anon, wfile = used["resident"], used["anon"], used["file"]
    else:
        res, anon, wfile = after_load, _med([r.get("retained_anon") for r in both]), _med([r.get("retained_file") for r in both])
    return ModuleProfile(model=model, quant=quant, preset=preset, params=params, file_bytes=file_bytes,
                         resident_bytes=max(0, int(res)), resident_after_load_bytes=max(0, after_load),
                         resident_anon_bytes=None if anon is None else int(anon),
                         resident_file_bytes=None if wfile is None else int(wfile),
                         other_file_bytes=int(_med([r.get("other_file") or 0 for r in both])),
                         load=load, ops=ops,
                         kept_after_free_bytes=(max(0, int(ops_r["kept_after_free"]))
                                                if ops_r and ops_r.get("kept_after_free") is not None else None),
                         free_s=Stat.of(ops_r["free_s"] if isinstance(ops_r["free_s"], list) else [ops_r["free_s"]])
                         if ops_r and "free_s" in ops_r else None)


def ops_todo(rounds: list, ops: dict, threads: list[int], samples: int, config: dict) -> tuple[dict, set]:
    """What the next round of a module's ops still measures: op -> thread counts that have fewer
    than `samples` samples and have not used up the time budget (once `min_samples` are in); and
    the ops known to be slow (no warm-up needed)."""
    budget, least = config.get("op_budget_s") or 0, config.get("min_samples", samples)
    todo, slow = {}, set()
    for op in ops:
        todo[op] = []
        for t in threads:
            xs = [x for rd in rounds if rd for x in rd["ops"].get(op, {}).get("latency", {}).get(str(t), {}).get("samples", [])]
            spent = budget and len(xs) >= least and sum(xs) >= budget
            if len(xs) < samples and not spent:
                todo[op].append(t)
        if any(rd and rd["ops"].get(op, {}).get("slow") for rd in rounds):
            slow.add(op)
    return todo, slow


def _med_fig(xs):
    """Median of a memory figure over rounds: a number, or a dict of numbers key by key."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    if isinstance(xs[0], dict):
        return {k: _med_fig([x.get(k) for x in xs]) for k in xs[0]}
    return int(statistics.median(xs))


def merge_rounds(rounds: list) -> dict:
    """One ops result from the rounds of a module: every round's samples and warm-ups per op and
    thread count, free_s of all; each memory figure the median over the rounds that took it (each
    round is a new process, and a first call's memory varies between processes with the heap's
    layout: small dyn8 encode's first call peaked at 62-110 MB in 12 new processes), with every
    round's op peak kept in `activation_peak_rounds`."""
    rounds = [rd for rd in rounds if rd]
    mem = [rd for rd in rounds if rd.get("load_transient") is not None] or rounds[:1]
    first = mem[0]
    out = {"ops": {}, "free_s": [rd["free_s"] for rd in rounds], "memory_rounds": len(mem),
           **{k: _med_fig([rd.get(k) for rd in mem])
              for k in ("resident_after_load", "resident_after_ops", "kept_after_free", "load_transient")}}
    for op, r0 in first["ops"].items():
        lat = {}
        for t in r0["latency"]:
            lat[t] = {"samples": [x for rd in rounds for x in rd["ops"].get(op, {}).get("latency", {}).get(t, {}).get("samples", [])],
                      "warmups": [x for rd in rounds for x in rd["ops"].get(op, {}).get("latency", {}).get(t, {}).get("warmups", [])]}
        mops = [rd["ops"][op] for rd in mem if rd["ops"].get(op, {}).get("activation_peak_by_threads")]
        figs = {k: _med_fig([o.get(k) for o in mops]) for k in ("activation_peak_by_threads", "heap_retained_by_threads")}
        firsts = [rd["ops"][op]["first_call"] for rd in mem if (rd["ops"].get(op) or {}).get("first_call")]
        out["ops"][op] = dict(r0, latency=lat, **{k: v for k, v in figs.items() if v is not None},
                              activation_peak_rounds=[max(o["activation_peak_by_threads"].values()) for o in mops],
                              first_call_s=[f["seconds"] for f in firsts if f["threads"] == firsts[0]["threads"]],
                              first_call_threads=firsts[0]["threads"] if firsts else None)
    return out


def instability(profile: Profile) -> list[str]:
    """pyperf's warning: standard deviation over 10% of the mean."""
    out = []
    for key, m in profile.modules.items():
        for name, st in (("load cold", m.load.cold_s), ("load warm", m.load.warm_s)):
            if st.unstable:
                out.append(f"{key} {name}: stdev {st.stdev / st.mean:.0%} of the mean")
        for op, o in m.ops.items():
            for t, st in o.latency_s.items():
                if st.unstable:
                    out.append(f"{key} {op} @{t} threads: stdev {st.stdev / st.mean:.0%} of the mean")
    return out


def corun_profile(a: str, b: str, threads, alone_threads, rounds: dict) -> dict:
    """The co-run figure of ops `a` and `b` ("<model>/<quant>:<op>") from its rounds (alone and
    together samples)."""
    alone, together = rounds["alone"], rounds["together"]
    sa = statistics.median(together[0]) / statistics.median(alone[0])
    sb = statistics.median(together[1]) / statistics.median(alone[1])
    return CoRun(a=a, b=b, threads=tuple(threads),
                 alone_threads=list(alone_threads), slowdown_a=max(0.5, sa), slowdown_b=max(0.5, sb),
                 alone_s=[Stat.of(x).model_dump() for x in alone],
                 together_s=[Stat.of(x).model_dump() for x in together]).model_dump(mode="json")


def assemble(state: dict) -> Profile:
    cfg, whole = state["config"], state["whole"]
    base, bw = whole["baseline"], whole["storage"]
    rank = Stat.of(base["rank"]["samples"], base["rank"]["warmups"])
    assemble_s = Stat.of(base["assemble"]["samples"], base["assemble"]["warmups"]) if "assemble" in base else None
    has_memray = bool(base.get("memray"))
    device = fingerprint.fingerprint(base, fingerprint.ops_seen(state["rounds"]))
    method = method_text(cfg, whole, device)
    modules = {k: ModuleProfile.model_validate(v) for k, v in state["modules"].items()}
    prof = Profile(
        version=PROFILE_VERSION, source="measured", created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        preset=cfg["preset"], device=device, method=method,
        baseline_rss_bytes=int(base["rss"]), baseline_anon_bytes=int(base["anon"]) if base.get("anon") else None,
        decoder_anon_bytes=base.get("decode", {}).get("decoder_anon_bytes"),
        storage_read_bytes_per_s=bw["bytes_per_s"], memray=has_memray,
        modules=modules, corun=[CoRun.model_validate(v) for v in state["corun"].values()],
        pipeline_ops_s={"rank": rank.median, "assemble": assemble_s.median if assemble_s else 0.0,
                        **({"decode": Stat.of(base["decode"]["samples"]).median} if "decode" in base else {})},
        pipeline_ops_items={"rank": base["rank"]["items"], **({"assemble": base["assemble"]["items"]} if assemble_s else {})},
        pipeline_ops_bytes={"assemble": base["assemble"]["activation_peak_bytes"]}
        if "activation_peak_bytes" in base.get("assemble", {}) else {},
        assemble_s=assemble_s.model_dump() if assemble_s else None,
        settings=cfg, storage_read_s=bw["seconds"], rank_s=rank.model_dump(),
        profile_seconds=round(state.get("elapsed_s", 0.0), 1),
    )
    prof.warnings = instability(prof)
    return prof


def method_text(cfg: dict, whole: dict, device: dict) -> dict:
    """How each figure of the profile was measured (the profile's `method`)."""
    base, bw = whole["baseline"], whole["storage"]
    has_memray, n = bool(base.get("memray")), cfg["samples"]
    emulated = device["emulation"]["emulated"]
    return {
        "processes": "every load sample, and each round of a module's ops, run in a forked child of a fork server "
                     "that imported python, torch, transformers, torchao and atomsim, froze their objects "
                     "(gc.freeze) and never ran a torch op (a fresh process that never held a module; "
                     "Android-zygote style)",
        "samples": f"{n} samples per figure" + (" (--quick: fewer than the >=5 of a full profile)" if cfg["quick"] else "") +
                   f", taken in {n} rounds, pyperf-style: each round takes one cold and one warm load of every "
                   "module, runs every module's ops once (one sample per op and thread count after one warm-up "
                   "call kept apart, in a new process) and one co-run round, so that each median spans the whole "
                   "profile and several processes" +
                   (f"; time budget: an op and thread count stops once {cfg.get('min_samples', n)} samples add up "
                    f"to {cfg['op_budget_s']:g} s, and an op slower than budget/samples takes no warm-up after its "
                    "first (each op's latency_s.n is the count taken)" if cfg.get("op_budget_s") else ""),
        "baseline_rss_bytes": "VmRSS of a new interpreter (not a forked child) ready to run a pipeline: python, torch, transformers, torchao, "
                              "safetensors, atomsim, its runner and PyAV imported, the preset's model code imported "
                              "(models.spec), the clips of a reference video (320x240, 10 fps, 31 s) decoded and "
                              "their frames dropped (the frames are the run's inputs), nothing loaded",
        "load.cold_s": "wall time of models.load in a fresh process after posix_fadvise(DONTNEED) of the weight "
                       "files; cold_evicted from mincore residency after eviction (< 5% resident), else from "
                       "/proc/self/io read_bytes >= half the file, else null",
        "load.warm_s": "wall time of models.load in a fresh process after reading the weight files into the page cache",
        "load.bytes_read": "median /proc/self/io read_bytes during cold loads (storage reads)",
        "free_s": "wall time of Module.free() (drop references, gc.collect, malloc_trim) after the ops, one sample per module",
        "kept_after_free_bytes": "anonymous memory that stays in the process once the module, after load and one call of "
                                 "each op, is freed (gc, malloc_trim): the runtime's first-use state (kernels' buffers, "
                                 "thread pools, caches); median over the rounds (new processes)",
        "resident_bytes": "after load and one call of each op, gc and malloc_trim (resident_after_load_bytes: "
                          "right after load; mmap'd weights fault in on first use): growth of anonymous memory (smaps_rollup) plus resident "
                          "pages of mappings of the weight files (/proc/self/smaps); library code paged in by "
                          "the first load is kept apart in other_file_bytes",
        "load.transient_runner_bytes": "peak anonymous memory (RssAnon polled every ms) minus anonymous memory after it (gc, "
                                       "malloc_trim; where RssAnon is missing: VmHWM reset before the load minus RSS), for the load "
                                       "of each ops process (one a round; the median): in the runner's state (reference clips decoded "
                                       "in a thread, the load in a lane thread), which the simulator uses; the load jobs' "
                                       "own processes have never run torch, and their first load also carries the "
                                       "allocator's first-use growth",
        "load.transient_bytes": "[low, high] of: VmHWM (reset via clear_refs 5 before load) minus RSS after load (includes file pages the load maps); "
                                + ("memray heap (file mmaps excluded) at the load's peak minus heap still allocated at its "
                                   "end (memray.Tracker, one untimed extra load)" if has_memray else "memray not installed: RSS figure only"),
        "ops.latency_s": "wall time of one op call on real-shaped example inputs after warm-ups, "
                         "torch.set_num_threads(n) for each thread count",
        "ops.activation_peak_bytes": "max over thread counts of VmHWM after the op (reset via clear_refs 5 before) "
                                     "minus RSS before, less the file pages the call paged in (library code: page cache "
                                     "to a RAM limit); 'sampled-rss' (1 ms RSS polling) where clear_refs is not "
                                     "permitted (see each op's peak_method); the op's first call at each thread count "
                                     "in each round (a new process; per thread count the median over rounds, every "
                                     "round's max in activation_peak_rounds), from a trimmed heap, in a process that "
                                     "first decoded the clips of a reference video in a thread, as `atomsim run`'s video "
                                     "lane does (the allocator's state then matches the runner's)",
        "ops.planned_activation_bytes": "ExecuTorch programs only: the largest total of non-constant buffers among the "
                                        "program's execution plans (activation memory planned ahead of time)",
        "decoder_anon_bytes": "anonymous memory (RssAnon) of the runner's decoder process after it decoded the "
                              "reference clips (the decode samples): charged by a RAM limit beside the runner's own",
        "ops.heap_retained_bytes": "max over thread counts of anonymous memory after that call (gc.collect, no "
                                   "malloc_trim) minus before it (after gc and malloc_trim): freed memory the allocator "
                                   "keeps until the next trim",
        "storage_read_bytes_per_s": f"sequential read of a {bw['bytes'] >> 20} MiB scratch file in the store directory "
                                    f"after fsync and posix_fadvise(DONTNEED) (evicted: {bw['evicted']}), median of "
                                    f"{bw['seconds']['n']}",
        "corun": "the encoder's encode with a decoder's caption (the pairs and thread counts in settings.corun_pairs, "
                 "default the fp32 modules, else the first backend, at corun_threads): both ops in two Python threads of one "
                 "process, torch.set_num_threads inside each thread; alone samples at the thread counts each side gets when "
                 "both share the cores (alone_threads: threads x min(1, cores / both threads)), so that the slowdown is what "
                 "comes on top of sharing the cores; "
                 "one round per profile round, each in a new process after one warm-up call of each op: one "
                 "alone sample of each op, then both at once until each has one call that ran wholly while the "
                 "other ran, so that machine drift hits alone and together alike; "
                 "slowdown = median together / median alone",
        "pipeline_ops_s.rank": f"cosine top-5 of one query over {base['rank']['items']} L2-normalized 384-d vectors (torch)",
        "pipeline_ops_s.assemble": ("median seconds to stitch {clips} clips of {clip_s:g} s from a {width}x{height}, "
                                    "{fps} fps h264 video with the runner's assembler (decode, libx264 re-encode, "
                                    "write); pipeline_ops_items.assemble = {clips}: the simulator scales by clip "
                                    "count".format(**base["assemble"]["reference"]) if "assemble" in base
                                    else "not measured (0)"),
        "pipeline_ops_s.decode": ("median seconds to decode one clip's {frames} frames at {frame_size} px from a "
                                  "{width}x{height}, {fps} fps h264 video with the runner's decoder (a plan's decode:i "
                                  "step); a user's videos of another size or codec decode at another speed"
                                  .format(**base["decode"]["reference"]) if "decode" in base
                                  else "not measured (0: decoding taken as free)"),
        "pipeline_ops_bytes.assemble": "the high-water mark of the assembler's first call above the RSS before it, "
                                       "from a trimmed heap (one clip decoded at a time: not scaled by clip count)",
        "memray": "installed" if has_memray else "not installed: transient_bytes from RSS only",
        "device": ("MEASURED UNDER EMULATION (" + "; ".join(device["emulation"]["evidence"]) + "): no figure "
                   "here says anything about the speed of a CPU. " if emulated else "") +
                  "fingerprint.py: quantized_engines per backend and ops_affinity / ops_thread_cpus read in the "
                  "processes that ran the ops; core_types from /proc/cpuinfo and /sys/devices/system/cpu; "
                  "emulation: measured under an emulator (qemu-user) when its evidence is not empty: then no "
                  "figure says anything about the speed of the CPU",
        "load_during_profile": f"load average at start {whole.get('loadavg_start')}, at end {fingerprint.loadavg()} "
                               "(other processes share the CPU)",
    }


def finish_partial(out) -> Profile:
    """Write `out` from `<out>.partial.json` with what was finished (for an interrupted run that
    will not be resumed); the profile's method says it is incomplete."""
    side = partial_path(out)
    try:
        state = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise ProfileError(f"cannot read {side}: {e}") from None
    from .. import models as M
    cfg = state.get("config", {})
    for key, ld in (state.get("loads") or {}).items():   # modules with loads and at least one round of ops
        rounds = [rd for rd in (state.get("rounds") or {}).get(key, []) if rd]
        if key not in state.setdefault("modules", {}) and rounds:
            m, q = key.split("/", 1)
            params = ld["cold"][0].get("params") or M.spec(cfg["preset"], m).params
            state["modules"][key] = module_profile(cfg["preset"], m, q, ld["cold"], ld["warm"], ld["memray"],
                                                   merge_rounds(rounds), params).model_dump(mode="json")
    if not state.get("whole") or not state.get("modules"):
        raise ProfileError(f"{side} holds no finished module yet")
    prof = assemble(state)
    prof.method["incomplete"] = (f"finished from {side.name}: {len(prof.modules)} of "
                                 f"{len(state['config']['models']) * len(state['config']['quants'])} modules")
    save_profile(prof, out)
    return prof
