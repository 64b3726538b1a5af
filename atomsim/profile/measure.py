"""Orchestration: measure every module of a preset under every backend asked for, in worker
processes that never held a module (see worker.py), into a `Profile`.

Resumable: after each module/backend (and the whole-device figures, and each co-run pair) the
results so far are written atomically to `<out>.partial.json`; a rerun with the same settings
continues from it. The final file is written atomically and the side file removed.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError, ProfileError, valid_names
from ..io import atomic_write_json, check_writable_file
from ..schema.profile import PROFILE_VERSION, CoRun, Load, ModuleProfile, Op, Profile, Stat, save_profile
from . import cache, fingerprint

DEFAULT_SHAPE = {"frames": 6, "frame_size": 224, "beam": 4, "tokens": 23, "script_tokens": 64,
                 "prompt_tokens": 128, "items": 5}
PARTIAL_VERSION = 4
OP_BUDGET_S = 30.0   # per op and thread count: slow ops (torchao int8 without VNNI: 20-50 s a call) stop at MIN_SAMPLES
MIN_SAMPLES = 3


def op_shapes(model: str, shape: dict) -> dict:
    """The ops of `model` and the keyword shapes each is profiled with."""
    s = dict(DEFAULT_SHAPE, **{k: v for k, v in (shape or {}).items() if v is not None})
    return {
        "video-encoder": {"encode": {"frames": s["frames"], "frame_size": s["frame_size"]}},
        "decoder": {"caption": {"beam": s["beam"], "tokens": s["tokens"]},
                    "generate": {"prompt_tokens": s["prompt_tokens"], "tokens": s["script_tokens"]}},
        "bert-decoder": {"caption": {"beam": s["beam"], "tokens": s["tokens"]}},
        "sentence-encoder": {"embed": {"items": s["items"], "tokens": s["tokens"]}},
    }[model]


def partial_path(out) -> Path:
    return Path(str(out) + ".partial.json")


# ------------------------------------------------------------------ workers

class Workers:
    """A fork server (default) or a fresh `python -m atomsim.profile.worker run` per job."""

    def __init__(self, fresh: bool = False, env: dict | None = None):
        self.fresh = fresh or not hasattr(os, "fork")
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("PYTHONWARNINGS", "ignore")
        self.proc = None
        self.log = tempfile.TemporaryFile(mode="w+")

    def __enter__(self):
        if not self.fresh:
            self.proc = subprocess.Popen([sys.executable, "-m", "atomsim.profile.worker", "serve"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                         text=True, env=self.env, start_new_session=True)
            try:
                line = self.proc.stdout.readline()
                if not line.strip().startswith('{"ready"'):
                    raise ProfileError(f"profile worker failed to start: {self._tail()}")
            except BaseException as e:   # Ctrl-C while it starts: `with` calls no __exit__, stop it here
                self.__exit__(type(e), e, e.__traceback__)
                raise
        return self

    def __exit__(self, exc_type, *exc):
        if self.proc is not None and exc_type is not None:
            # interrupted or failed: stop the server and the child measuring now (their own group)
            import signal
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        elif self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def _tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:]

    def run(self, job: dict, fresh: bool = False) -> dict:
        """Run one job; `fresh` forces a new interpreter for it (a forked child's RSS misses the
        shared-library pages its parent faulted in, so absolute RSS figures need a new process)."""
        if self.fresh or fresh:
            p = subprocess.run([sys.executable, "-m", "atomsim.profile.worker", "run", json.dumps(job)],
                               stdout=subprocess.PIPE, stderr=self.log, text=True, env=self.env)
            line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        else:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise ProfileError(f"profile worker died on {job.get('mode')} job: {self._tail()}")
        r = json.loads(line)
        if not r.get("ok"):
            what = "/".join(str(job.get(k)) for k in ("model", "quant") if job.get(k))
            raise ProfileError(f"measuring {job['mode']} {what} failed: {r.get('error')}\n{r.get('traceback', '')}")
        return r["result"]


# ------------------------------------------------------------------ storage

def storage_read(directory, size: int, samples: int) -> dict:
    """Cold sequential read bandwidth of a scratch file in `directory` (evicted before each read)."""
    xs, evicted = [], []
    with cache.scratch_file(directory, size, ".atomsim-bw-", bytes(range(256)) * (4 << 12)) as (name, real):  # 4 MiB chunks
        for _ in range(samples):
            evicted.append(cache.evict_checked([name])["evicted"])
            t0 = time.perf_counter()
            cache.touch([name])
            xs.append(time.perf_counter() - t0)
    med = statistics.median(xs)
    return {"bytes": real, "seconds": Stat.of(xs).model_dump(), "bytes_per_s": real / med,
            "evicted": None if None in evicted else all(evicted)}


# ------------------------------------------------------------------ summarising

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
        out["ops"][op] = dict(r0, latency=lat, **{k: v for k, v in figs.items() if v is not None},
                              activation_peak_rounds=[max(o["activation_peak_by_threads"].values()) for o in mops])
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


# ------------------------------------------------------------------ measure

def measure(preset: str, models=None, quants=None, threads=None, samples=None, quick=False, store=None,
            shape=None, out=None, progress=None, fresh=False, corun=True, corun_threads=(1, 1),
            resume=True, storage_bytes=None, workers: Workers | None = None, op_budget_s=OP_BUDGET_S,
            rounds_now: int | None = None, corun_pairs=None) -> Profile | None:
    """Profile `models` (default: all) of `preset` under `quants` (default: fp32) on this machine.

    progress(done, total, description) is called as jobs finish. Writes `out` (atomically) when
    given, with a resumable `<out>.partial.json` beside it while running. `storage_bytes`: size of
    the scratch file of the storage test (default 256 MiB, 64 MiB quick). `workers`: a running
    `Workers` to reuse (tests); default a new fork server. `op_budget_s`: per op and thread
    count, stop sampling once MIN_SAMPLES samples add up to this (see worker.sample_op; 0: never).
    `corun_pairs`: [(backend, decoder, encoder threads, decoder threads)] to co-run ([]: none; default: see
    `corun_pairs_of`). `rounds_now`: take only the rounds up to this one (of `samples`), keep them in the side file
    and return None; a later call with the same arguments goes on from there (the validator
    interleaves profile rounds with its real runs this way).
    """
    from .. import models as M
    from ..models import specs
    specs.check(preset=preset)
    models = list(models or M.MODELS)
    quants = list(quants or ["fp32"])
    for m in models:
        if m not in M.MODELS:
            raise ConfigError(valid_names("module", m, M.MODELS))
    for q in quants:
        if q not in M.BACKENDS + M.EXECUTORCH_BACKENDS:
            raise ConfigError(valid_names("backend", q, M.BACKENDS + M.EXECUTORCH_BACKENDS))
    ncores = os.cpu_count() or 1
    threads = sorted({int(t) for t in (threads or [1, ncores])})
    if any(t < 1 for t in threads):
        raise ConfigError(f"thread counts must be >= 1, got {threads}")
    samples = int(samples or (3 if quick else 5))
    if samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {samples}")
    warmups = 1   # per op, thread count and round (each round is a new process)
    if op_budget_s is not None and op_budget_s < 0:
        raise ConfigError(f"--op-budget must be >= 0 seconds, got {op_budget_s}")
    shape = dict(DEFAULT_SHAPE, **{k: v for k, v in (shape or {}).items() if v is not None})
    store = str(Path(store or M.default_store()).expanduser())
    if out is not None:
        check_writable_file(out)
    elif rounds_now is not None:
        raise ConfigError("taking a profile in parts (rounds_now) needs an output file for its side file")
    say = progress or (lambda done, total, desc: None)
    config = {"preset": preset, "models": models, "quants": quants, "threads": threads, "samples": samples,
              "quick": quick, "shape": shape, "store": store, "corun": bool(corun),
              "corun_threads": list(corun_threads), "op_budget_s": op_budget_s or 0,
              "corun_pairs": [list(p) for p in corun_pairs] if corun_pairs is not None else None,
              "min_samples": min(samples, MIN_SAMPLES)}
    state = {"version": PARTIAL_VERSION, "config": config, "whole": None, "modules": {}, "corun": {}}
    side = partial_path(out) if out is not None else None
    if side is not None and resume and side.exists():
        try:
            old = json.loads(side.read_text())
            if old.get("version") == PARTIAL_VERSION and old.get("config") == config:
                state = old
        except (OSError, ValueError):
            pass

    def save_state():
        if side is not None:
            atomic_write_json(side, state)

    keys = [(m, q) for q in quants for m in models]
    pairs = corun_pairs_of(models, quants, corun, corun_threads, corun_pairs)
    state.setdefault("loads", {})
    state.setdefault("rounds", {})
    state.setdefault("corun_rounds", {})
    state.setdefault("elapsed_s", 0.0)
    # each round: per module one cold and one warm load (round 0 also the memray load) and one
    # round of ops; then one co-run round per pair
    total = 2 + samples * (len(keys) * 2 + len(pairs))
    done = 2 * (state["whole"] is not None) \
        + sum(len(v.get("cold", [])) for v in state["loads"].values()) \
        + sum(len(v) for v in state["rounds"].values()) \
        + sum(len(v["alone"][0]) for v in state["corun_rounds"].values())
    last = samples if rounds_now is None else min(samples, int(rounds_now))
    say(done, total, "building modules")
    for m, q in keys:
        if f"{m}/{q}" not in state["modules"]:
            M.build(preset, m, q, store=store)
    t_start = time.time()
    import contextlib
    scratch = tempfile.TemporaryDirectory(prefix="atomsim-profile-")
    reference_video = str(Path(scratch.name) / "reference.mp4")   # made by the first ops job
    with scratch, (contextlib.nullcontext(workers) if workers is not None else Workers(fresh=fresh)) as w:
        if state["whole"] is None:
            say(done, total, "runtime baseline")
            base = w.run({"mode": "baseline", "samples": samples, "preset": preset, "models": list(models)}, fresh=True)
            done += 1
            say(done, total, "storage read bandwidth")
            bw = storage_read(store, int(storage_bytes or ((64 if quick else 256) << 20)), 2 if quick else 3)
            done += 1
            state["whole"] = {"baseline": base, "storage": bw, "loadavg_start": fingerprint.loadavg()}
            save_state()
        # everything in rounds, pyperf-style: each round takes one sample of every figure (one cold
        # and one warm load of each module; one round of its ops, one sample per op and thread
        # count, in a new process; one co-run round), so that each median spans the whole profile
        # instead of one minute of it. A machine whose speed drifts then moves every figure alike,
        # and a caller can interleave rounds with other work (the validator's real runs:
        # `rounds_now`).
        for r in range(last):
            for m, q in keys:
                key = f"{m}/{q}"
                if key in state["modules"]:
                    continue
                ld = state["loads"].setdefault(key, {"cold": [], "warm": [], "memray": None})
                job = {"preset": preset, "model": m, "quant": q, "store": store}
                if len(ld["cold"]) <= r:
                    say(done, total, f"{key} loads, round {r + 1}/{samples}")
                    cold = w.run(dict(job, mode="load", cold=True))
                    warm = w.run(dict(job, mode="load", cold=False))
                    if r == 0 and state["whole"]["baseline"].get("memray"):
                        ld["memray"] = w.run(dict(job, mode="load", cold=False, memray=True))
                    ld["cold"].append(cold)
                    ld["warm"].append(warm)
                    done += 1
                    save_state()
                rounds = state["rounds"].setdefault(key, [])
                if len(rounds) > r:
                    continue
                todo, cold_ok = ops_todo(rounds, op_shapes(m, shape), threads, samples, config)
                if not any(todo.values()):   # the time budget is spent: no more rounds of ops
                    done += samples - r
                    state["rounds"][key] = rounds + [None] * (samples - r)
                    save_state()
                    continue
                say(done, total, f"{key} ops, round {r + 1}/{samples}")
                rounds.append(w.run(dict(job, mode="ops", threads=threads, samples=1, samples_total=samples,
                                         warmups=warmups, min_samples=1, budget_s=config["op_budget_s"],
                                         memory=True, todo=todo, cold_ok=sorted(cold_ok), ops=op_shapes(m, shape),
                                         reference_video=reference_video)))
                done += 1
                save_state()
            for q, dec, ta, tb in pairs:
                key = corun_key(q, dec, ta, tb)
                cr = state["corun_rounds"].setdefault(key, {"alone": [[], []], "together": [[], []]})
                if key in state["corun"] or len(cr["alone"][0]) > r:
                    continue
                say(done, total, f"co-run video-encoder + {dec} ({q}, threads {ta},{tb}), round {r + 1}/{samples}")
                sa, sb = shared_threads(ta, tb, ncores)
                ops_a, ops_b = op_shapes("video-encoder", shape), op_shapes(dec, shape)
                res = w.run({"mode": "corun", "preset": preset, "store": store, "samples": 1,
                             "a": {"model": "video-encoder", "quant": q, "op": "encode", "shape": ops_a["encode"],
                                   "threads": ta, "alone_threads": sa},
                             "b": {"model": dec, "quant": q, "op": "caption", "shape": ops_b["caption"],
                                   "threads": tb, "alone_threads": sb}})
                for part in ("alone", "together"):
                    for i in (0, 1):
                        cr[part][i] += res[part][i]
                done += 1
                save_state()
        state["elapsed_s"] += time.time() - t_start
        if last < samples:   # the caller takes the remaining rounds later (resuming from the side file)
            save_state()
            return None
        for m, q in keys:
            key = f"{m}/{q}"
            if key in state["modules"]:
                continue
            ld = state["loads"][key]
            params = ld["cold"][0].get("params") or M.spec(preset, m).params
            state["modules"][key] = module_profile(preset, m, q, ld["cold"], ld["warm"], ld["memray"],
                                                   merge_rounds(state["rounds"][key]), params).model_dump(mode="json")
            save_state()
        for q, dec, ta, tb in pairs:
            key = corun_key(q, dec, ta, tb)
            if key not in state["corun"]:
                state["corun"][key] = corun_profile(q, dec, (ta, tb), shared_threads(ta, tb, ncores),
                                                    state["corun_rounds"][key])
                save_state()
    say(total, total, "done")
    profile = assemble(state)
    if out is not None:
        save_profile(profile, out)
        try:
            side.unlink()
        except FileNotFoundError:
            pass
    return profile


def corun_pairs_of(models, quants, corun: bool, corun_threads, corun_pairs=None) -> list[tuple]:
    """(backend, decoder, encoder threads, decoder threads) of each co-run to measure: `corun_pairs`
    when given (the validator asks for the pairs and threads its reuse-parallel scenarios run),
    else the encoder with each caption decoder at `corun_threads`, for fp32 when profiled, else the
    first backend (co-run is costly with slow int8 kernels)."""
    if not corun or "video-encoder" not in models:
        return []
    if corun_pairs is not None:
        return [(q, dec, int(ta), int(tb)) for q, dec, ta, tb in corun_pairs if dec in models and q in quants]
    ta, tb = corun_threads
    return [(q, dec, int(ta), int(tb)) for q in (["fp32"] if "fp32" in quants else quants[:1])
            for dec in ("decoder", "bert-decoder") if dec in models]


def corun_key(q: str, dec: str, ta: int, tb: int) -> str:
    return f"{q}/{dec}@{ta},{tb}"


def shared_threads(ta: int, tb: int, cores: int) -> tuple[int, int]:
    """Threads each side of a co-run gets when both share `cores` (as the simulator shares them:
    ask x min(1, cores / total asks)), rounded, at least 1: the thread counts its alone samples
    are timed at, so that its slowdown is what comes on top of sharing the cores."""
    scale = min(1.0, cores / max(1, ta + tb))
    return max(1, round(ta * scale)), max(1, round(tb * scale))


def corun_profile(q: str, dec: str, threads, alone_threads, rounds: dict) -> dict:
    """The co-run figure of the encoder with `dec` from its rounds (alone and together samples)."""
    alone, together = rounds["alone"], rounds["together"]
    sa = statistics.median(together[0]) / statistics.median(alone[0])
    sb = statistics.median(together[1]) / statistics.median(alone[1])
    return CoRun(a=f"video-encoder/{q}:encode", b=f"{dec}/{q}:caption", threads=tuple(threads),
                 alone_threads=list(alone_threads), slowdown_a=max(0.5, sa), slowdown_b=max(0.5, sb),
                 alone_s=[Stat.of(x).model_dump() for x in alone],
                 together_s=[Stat.of(x).model_dump() for x in together]).model_dump(mode="json")


def assemble(state: dict) -> Profile:
    cfg, whole = state["config"], state["whole"]
    base, bw = whole["baseline"], whole["storage"]
    rank = Stat.of(base["rank"]["samples"], base["rank"]["warmups"])
    assemble_s = Stat.of(base["assemble"]["samples"], base["assemble"]["warmups"]) if "assemble" in base else None
    has_memray = bool(base.get("memray"))
    n = cfg["samples"]
    device = fingerprint.fingerprint(base, fingerprint.ops_seen(state["rounds"]))
    emulated = device["emulation"]["emulated"]
    method = {
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
    modules = {k: ModuleProfile.model_validate(v) for k, v in state["modules"].items()}
    prof = Profile(
        version=PROFILE_VERSION, source="measured", created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        preset=cfg["preset"], device=device, method=method,
        baseline_rss_bytes=int(base["rss"]), baseline_anon_bytes=int(base["anon"]) if base.get("anon") else None,
        storage_read_bytes_per_s=bw["bytes_per_s"], memray=has_memray,
        modules=modules, corun=[CoRun.model_validate(v) for v in state["corun"].values()],
        pipeline_ops_s={"rank": rank.median, "assemble": assemble_s.median if assemble_s else 0.0},
        pipeline_ops_items={"rank": base["rank"]["items"], **({"assemble": base["assemble"]["items"]} if assemble_s else {})},
        pipeline_ops_bytes={"assemble": base["assemble"]["activation_peak_bytes"]}
        if "activation_peak_bytes" in base.get("assemble", {}) else {},
        assemble_s=assemble_s.model_dump() if assemble_s else None,
        settings=cfg, storage_read_s=bw["seconds"], rank_s=rank.model_dump(),
        profile_seconds=round(state.get("elapsed_s", 0.0), 1),
    )
    prof.warnings = instability(prof)
    return prof


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
