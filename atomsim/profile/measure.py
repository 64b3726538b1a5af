"""Orchestration: measure every module of a preset under every backend asked for, in worker
processes that never held a module (see worker.py and workers.py), into a `Profile` (summary.py).

Resumable: after each module/backend (and the whole-device figures, and each co-run pair) the
results so far are written atomically to `<out>.partial.json`; a rerun with the same settings
continues from it. The final file is written atomically and the side file removed.
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from .. import pagecache
from ..errors import ConfigError, valid_names
from ..io import atomic_write_json, check_writable_file
from ..schema.profile import Profile, Stat, save_profile
from . import fingerprint
from .summary import (
    assemble,
    corun_profile,
    merge_rounds,
    module_profile,
    ops_todo,
    partial_path,
)
from .targets import pipeline_targets, zoo_op_shapes
from .workers import Workers

DEFAULT_SHAPE = {"frames": 6, "frame_size": 224, "beam": 4, "tokens": 23, "script_tokens": 64,
                 "prompt_tokens": 128, "items": 5}
PARTIAL_VERSION = 4
OP_BUDGET_S = 30.0   # per op and thread count: slow ops (torchao int8 without VNNI: 20-50 s a call) stop at MIN_SAMPLES
MIN_SAMPLES = 3


def op_shapes(model: str, shape: dict) -> dict:
    """The ops of `model` and the keyword shapes each is profiled with (targets.py: one table)."""
    s = dict(DEFAULT_SHAPE, **{k: v for k, v in (shape or {}).items() if v is not None})
    return zoo_op_shapes(model, s)


# ------------------------------------------------------------------ storage

def storage_read(directory, size: int, samples: int) -> dict:
    """Cold sequential read bandwidth of a scratch file in `directory` (evicted before each read)."""
    xs, evicted = [], []
    chunk = bytes(range(256)) * (4 << 12)   # 4 MiB chunks
    with pagecache.scratch_file(directory, size, ".atomsim-bw-", chunk) as (name, real):
        for _ in range(samples):
            evicted.append(pagecache.evict_checked([name])["evicted"])
            t0 = time.perf_counter()
            pagecache.touch([name])
            xs.append(time.perf_counter() - t0)
    med = statistics.median(xs)
    return {"bytes": real, "seconds": Stat.of(xs).model_dump(), "bytes_per_s": real / med,
            "evicted": None if None in evicted else all(evicted)}


# ------------------------------------------------------------------ measure

def measure(preset: str, models=None, quants=None, threads=None, samples=None, quick=False, store=None,
            shape=None, out=None, progress=None, fresh=False, corun=True, corun_threads=(1, 1),
            resume=True, storage_bytes=None, workers: Workers | None = None, op_budget_s=OP_BUDGET_S,
            rounds_now: int | None = None, corun_pairs=None, pipeline=None,
            command: str | None = None) -> Profile | None:
    """Profile `models` (default: all) of `preset` under `quants` (default: fp32) on this machine.

    progress(done, total, description) is called as jobs finish. `command`: the command line that
    asked for it, kept in the profile's method (`method.command`). Writes `out` (atomically) when
    given, with a resumable `<out>.partial.json` beside it while running. `storage_bytes`: size of
    the scratch file of the storage test (default 256 MiB, 64 MiB quick). `workers`: a running
    `Workers` to reuse (tests); default a new fork server. `op_budget_s`: per op and thread
    count, stop sampling once MIN_SAMPLES samples add up to this (see worker.sample_op; 0: never).
    `corun_pairs`: [(backend, decoder, encoder threads, decoder threads)] to co-run ([]: none; default: see
    `corun_pairs_of`). `rounds_now`: take only the rounds up to this one (of `samples`), keep them in the side file
    and return None; a later call with the same arguments goes on from there (the validator
    interleaves profile rounds with its real runs this way). `pipeline`: a Pipeline whose modules
    (and its variants') are measured instead, each op at its stages' shapes (targets.py).
    """
    config = checked_config(preset, models, quants, threads, samples, quick, store, shape, corun, corun_threads,
                            op_budget_s, corun_pairs, pipeline)
    if out is not None:
        check_writable_file(out)
    elif rounds_now is not None:
        raise ConfigError("taking a profile in parts (rounds_now) needs an output file for its side file")
    side = partial_path(out) if out is not None else None
    with tempfile.TemporaryDirectory(prefix="atomsim-profile-") as scratch:
        session = Session(config, resumed_state(side, config, resume), side, str(Path(scratch) / "reference.mp4"),
                          progress)
        session.build()
        with contextlib.nullcontext(workers) if workers is not None else Workers(fresh=fresh) as w:
            if not session.take_rounds(w, storage_bytes, rounds_now):
                return None   # the caller takes the remaining rounds later (resuming from the side file)
    session.say(session.total, session.total, "done")
    profile = assemble(session.state)
    if command:
        profile.method["command"] = command   # what made it, beside its duration (profile_seconds)
    if out is not None:
        save_profile(profile, out)
        try:
            side.unlink()
        except FileNotFoundError:
            pass
    return profile


def checked_config(preset, models, quants, threads, samples, quick, store, shape, corun, corun_threads,
                   op_budget_s, corun_pairs, pipeline=None) -> dict:
    """The profile's settings, validated and with their defaults (also the key a side file resumes by)."""
    from .. import models as M
    from ..models import hf, specs
    specs.check(preset=preset)
    shape = dict(DEFAULT_SHAPE, **{k: v for k, v in (shape or {}).items() if v is not None})
    targets = pipeline_targets(pipeline, shape, corun_threads) if pipeline is not None else None
    known = targets["models"] if targets else list(M.MODELS)
    models = list(models or known)
    quants = list(quants or ["fp32"])
    for m in models:
        if m not in known:
            raise ConfigError(valid_names("module" + (f" of pipeline {pipeline.name!r}" if pipeline else ""), m, known))
    for q in quants:
        if q not in M.BACKENDS + M.EXECUTORCH_BACKENDS:
            raise ConfigError(valid_names("backend", q, M.BACKENDS + M.EXECUTORCH_BACKENDS))
        if targets and any("hf" in s for s in targets["sources"].values()) and q not in hf.QUANTS:
            raise ConfigError(f"backend {q!r}: a Hugging Face module is built as {' or '.join(hf.QUANTS)}")
    threads = sorted({int(t) for t in (threads or [1, os.cpu_count() or 1])})
    if any(t < 1 for t in threads):
        raise ConfigError(f"thread counts must be >= 1, got {threads}")
    samples = int(samples or (3 if quick else 5))
    if samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {samples}")
    if op_budget_s is not None and op_budget_s < 0:
        raise ConfigError(f"--op-budget must be >= 0 seconds, got {op_budget_s}")
    store = str(Path(store or M.default_store()).expanduser())
    extra = {} if targets is None else {
        "pipeline": pipeline.name, "sources": {m: v for m, v in targets["sources"].items() if m in models},
        "op_shapes": {m: v for m, v in targets["op_shapes"].items() if m in models},
        "pipeline_pairs": [p for p in targets["pairs"] if p["a"][0] in models and p["b"][0] in models]}
    return {**extra, "preset": preset, "models": models, "quants": quants, "threads": threads, "samples": samples,
            "quick": quick, "shape": shape, "store": store, "corun": bool(corun),
            "corun_threads": list(corun_threads), "op_budget_s": op_budget_s or 0,
            "corun_pairs": [list(p) for p in corun_pairs] if corun_pairs is not None else None,
            "min_samples": min(samples, MIN_SAMPLES)}


def resumed_state(side: Path | None, config: dict, resume: bool) -> dict:
    """The side file's state when it was taken with the same settings, else a new one."""
    if side is not None and resume and side.exists():
        try:
            old = json.loads(side.read_text())
            if old.get("version") == PARTIAL_VERSION and old.get("config") == config:
                return old
        except (OSError, ValueError):
            pass
    return {"version": PARTIAL_VERSION, "config": config, "whole": None, "modules": {}, "corun": {}}


class Session:
    """One profile being taken: its settings, its state (what the side file holds), its progress,
    and the jobs of one round; `w` is the running `Workers`."""
    WARMUPS = 1   # per op, thread count and round (each round is a new process)

    def __init__(self, config: dict, state: dict, side: Path | None, reference_video: str, progress=None):
        self.config, self.state, self.side, self.w = config, state, side, None
        self.reference_video = reference_video   # made by the first ops job
        self.cores = os.cpu_count() or 1
        self.say = progress or (lambda done, total, desc: None)
        st, c = state, config
        for k, v in (("loads", {}), ("rounds", {}), ("corun_rounds", {}), ("elapsed_s", 0.0)):
            st.setdefault(k, v)
        self.keys = module_keys(c)
        self.pairs = session_pairs(c)
        # each round: per module one cold and one warm load (round 0 also the memray load) and one
        # round of ops; then one co-run round per pair
        self.total = 2 + c["samples"] * (len(self.keys) * 2 + len(self.pairs)) + c["samples"] - 1
        self.done = 2 * (st["whole"] is not None) + max(0, (st["whole"] or {}).get("pipeline_rounds", 1) - 1) \
            + sum(len(v.get("cold", [])) for v in st["loads"].values()) \
            + sum(len(v) for v in st["rounds"].values()) \
            + sum(len(v["alone"][0]) for v in st["corun_rounds"].values())

    def save(self):
        if self.side is not None:
            atomic_write_json(self.side, self.state)

    def step(self):
        self.done += 1
        self.save()

    def build(self):
        from .. import models as M
        from ..models import hf
        self.say(self.done, self.total, "building modules")
        sources = self.config.get("sources", {})
        for m, q in self.keys:
            if f"{m}/{q}" in self.state["modules"]:
                continue
            if m in sources and "pte" in sources[m]:
                continue   # a program of one's own: nothing to build
            if m in sources:
                hf.build(sources[m]["hf"], sources[m]["kind"], q, store=self.config["store"])
            else:
                M.build(self.config["preset"], m, q, store=self.config["store"])

    def job(self, m: str, q: str) -> dict:
        """A worker job's target: a zoo module, or a pipeline's module with its source."""
        c = self.config
        return {"preset": c["preset"], "model": m, "quant": q, "store": c["store"],
                **({"source": c["sources"][m]} if m in c.get("sources", {}) else {})}

    def whole(self, storage_bytes):
        """The runtime baseline and the storage read bandwidth."""
        c = self.config
        self.say(self.done, self.total, "runtime baseline")
        from .. import models as M
        zoo = [m for m in c["models"] if m in M.MODELS]
        # one sample of each module-less op (rank, assemble, decode) now, one more each round after
        # (pipeline_round): their medians span the profile's rounds as every other figure's do
        base = self.w.run({"mode": "baseline", "samples": 1, "preset": c["preset"], "models": zoo,
                           "frames": c["shape"]["frames"], "frame_size": c["shape"]["frame_size"]}, fresh=True)
        self.done += 1
        self.say(self.done, self.total, "storage read bandwidth")
        bw = storage_read(c["store"], int(storage_bytes or ((64 if c["quick"] else 256) << 20)), 2 if c["quick"] else 3)
        self.state["whole"] = {"baseline": base, "storage": bw, "loadavg_start": fingerprint.loadavg()}
        self.step()

    def module_round(self, r: int, m: str, q: str):
        """Round `r` of one module: a cold and a warm load, then one round of its ops."""
        c, st, key = self.config, self.state, f"{m}/{q}"
        if key in st["modules"]:
            return
        ld = st["loads"].setdefault(key, {"cold": [], "warm": [], "memray": None})
        job = self.job(m, q)
        if len(ld["cold"]) <= r:
            self.say(self.done, self.total, f"{key} loads, round {r + 1}/{c['samples']}")
            cold = self.w.run(dict(job, mode="load", cold=True))
            warm = self.w.run(dict(job, mode="load", cold=False))
            if r == 0 and st["whole"]["baseline"].get("memray"):
                ld["memray"] = self.w.run(dict(job, mode="load", cold=False, memray=True))
            ld["cold"].append(cold)
            ld["warm"].append(warm)
            self.step()
        rounds = st["rounds"].setdefault(key, [])
        if len(rounds) > r:
            return
        ops = c["op_shapes"][m] if "op_shapes" in c else op_shapes(m, c["shape"])
        todo, cold_ok = ops_todo(rounds, ops, c["threads"], c["samples"], c)
        if not any(todo.values()):   # the time budget is spent: no more rounds of ops
            self.done += c["samples"] - r
            st["rounds"][key] = rounds + [None] * (c["samples"] - r)
            self.save()
            return
        self.say(self.done, self.total, f"{key} ops, round {r + 1}/{c['samples']}")
        rounds.append(self.w.run(dict(job, mode="ops", threads=c["threads"], samples=1, samples_total=c["samples"],
                                      warmups=self.WARMUPS, min_samples=1, budget_s=c["op_budget_s"], memory=True,
                                      todo=todo, cold_ok=sorted(cold_ok), ops=ops,
                                      reference_video=self.reference_video)))
        self.step()

    def pipeline_round(self, r: int):
        """Round `r` (from 1) of the module-less ops: one more sample of rank, assemble and decode, in
        a new process in the runner's state (the baseline job). Taken with the whole-device figures
        only, the validator's `--measure-profile` left them at its first minutes: the tiny example,
        stitching 0.66-0.85 s in the profile against 0.9-1.9 s in the real runs of its later rounds."""
        st, c = self.state, self.config
        whole = st["whole"]
        if r < 1 or whole.get("pipeline_rounds", 1) > r:
            return
        self.say(self.done, self.total, f"pipeline ops, round {r + 1}/{c['samples']}")
        more = self.w.run({"mode": "baseline", "samples": 1, "preset": c["preset"], "models": [],
                           "frames": c["shape"]["frames"], "frame_size": c["shape"]["frame_size"]}, fresh=True)
        for op in ("rank", "assemble", "decode"):
            if op in more and op in whole["baseline"]:
                whole["baseline"][op]["samples"] += more[op]["samples"]
                whole["baseline"][op]["warmups"] += more[op]["warmups"]
        whole["pipeline_rounds"] = r + 1
        self.step()

    def corun_round(self, r: int, pair: dict):
        """Round `r` of one co-run pair: alone and together samples of its two ops."""
        c, key = self.config, pair["key"]
        (ma, opa), (mb, opb), q, ta, tb = pair["a"], pair["b"], pair["q"], pair["ta"], pair["tb"]
        cr = self.state["corun_rounds"].setdefault(key, {"alone": [[], []], "together": [[], []]})
        if key in self.state["corun"] or len(cr["alone"][0]) > r:
            return
        self.say(self.done, self.total, f"co-run {ma}:{opa} + {mb}:{opb} ({q}, threads {ta},{tb}), "
                 f"round {r + 1}/{c['samples']}")
        sa, sb = shared_threads(ta, tb, self.cores)
        shapes = {m: c["op_shapes"][m] if "op_shapes" in c else op_shapes(m, c["shape"]) for m in (ma, mb)}
        side = {k: v for k, v in self.job(ma, q).items() if k not in ("model", "quant", "source")}
        q_a, q_b = pair.get("q_a", q), pair.get("q_b", q)
        res = self.w.run({**side, "mode": "corun", "samples": 1,
                          "a": {**self.job(ma, q_a), "op": opa, "shape": shapes[ma][opa], "threads": ta, "alone_threads": sa},
                          "b": {**self.job(mb, q_b), "op": opb, "shape": shapes[mb][opb], "threads": tb, "alone_threads": sb}})
        for part in ("alone", "together"):
            for i in (0, 1):
                cr[part][i] += res[part][i]
        self.step()

    def take_rounds(self, w: Workers, storage_bytes, rounds_now) -> bool:
        """The whole-device figures, then the rounds up to `rounds_now` (default all); True when
        all are taken and summarised."""
        self.w, samples, t_start = w, self.config["samples"], time.time()
        last = samples if rounds_now is None else min(samples, int(rounds_now))
        if self.state["whole"] is None:
            self.whole(storage_bytes)
        # everything in rounds, pyperf-style: each round takes one sample of every figure (one cold
        # and one warm load of each module; one round of its ops, one sample per op and thread
        # count, in a new process; one co-run round), so that each median spans the whole profile
        # instead of one minute of it. A machine whose speed drifts then moves every figure alike,
        # and a caller can interleave rounds with other work (the validator's real runs:
        # `rounds_now`).
        for r in range(last):
            for m, q in self.keys:
                self.module_round(r, m, q)
            for pair in self.pairs:
                self.corun_round(r, pair)
            self.pipeline_round(r)
        self.state["elapsed_s"] += time.time() - t_start
        if last < samples:
            self.save()
            return False
        self.summarise()
        return True

    def summarise(self):
        """Every module's and co-run's figures from their rounds."""
        from .. import models as M
        st = self.state
        for m, q in self.keys:
            key = f"{m}/{q}"
            if key in st["modules"]:
                continue
            ld = st["loads"][key]
            params = ld["cold"][0].get("params") or (M.spec(self.config["preset"], m).params if m in M.MODELS else 0)
            st["modules"][key] = module_profile(self.config["preset"], m, q, ld["cold"], ld["warm"], ld["memray"],
                                                merge_rounds(st["rounds"][key]), params).model_dump(mode="json")
            self.save()
        for pair in self.pairs:
            key, q, ta, tb = pair["key"], pair["q"], pair["ta"], pair["tb"]
            if key not in st["corun"]:
                a, b = (f"{m}/{pair.get(side, q)}:{op}" for (m, op), side in ((pair["a"], "q_a"), (pair["b"], "q_b")))
                st["corun"][key] = corun_profile(a, b, (ta, tb), shared_threads(ta, tb, self.cores),
                                                 st["corun_rounds"][key])
                self.save()


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


def module_keys(c: dict) -> list[tuple[str, str]]:
    """(module, backend) of every module to measure: each of `quants`, but a program of one's own
    once, as its own backend (`pte`)."""
    pte = {m for m, s in c.get("sources", {}).items() if "pte" in s}
    keys = [(m, q) for q in c["quants"] for m in c["models"] if m not in pte]
    return keys + [(m, "pte") for m in c["models"] if m in pte]


def corun_key(q: str, dec: str, ta: int, tb: int) -> str:
    return f"{q}/{dec}@{ta},{tb}"


def session_pairs(c: dict) -> list[dict]:
    """The co-runs to measure, each {q, a: [module, op], b: [module, op], ta, tb, key}: the zoo's
    encoder with each caption decoder (`corun_pairs_of`), or a pipeline's consecutive per-clip
    stages on different modules (for fp32 when profiled, else the first backend)."""
    if "pipeline_pairs" not in c:
        return [{"q": q, "a": ["video-encoder", "encode"], "b": [dec, "caption"], "ta": ta, "tb": tb,
                 "key": corun_key(q, dec, ta, tb)}
                for q, dec, ta, tb in corun_pairs_of(c["models"], c["quants"], c["corun"], c["corun_threads"],
                                                     c["corun_pairs"])]
    if not c["corun"]:
        return []
    q = "fp32" if "fp32" in c["quants"] else c["quants"][0]
    pte = {m for m, s in c.get("sources", {}).items() if "pte" in s}
    return [{"q": q, "a": p["a"], "b": p["b"], "ta": int(p["threads"][0]), "tb": int(p["threads"][1]),
             "q_a": "pte" if p["a"][0] in pte else q, "q_b": "pte" if p["b"][0] in pte else q,
             "key": f"{q}/{p['a'][0]}:{p['a'][1]}+{p['b'][0]}:{p['b'][1]}@{p['threads'][0]},{p['threads'][1]}"}
            for p in c["pipeline_pairs"]]


def shared_threads(ta: int, tb: int, cores: int) -> tuple[int, int]:
    """Threads each side of a co-run gets when both share `cores` (as the simulator shares them:
    ask x min(1, cores / total asks)), rounded, at least 1: the thread counts its alone samples
    are timed at, so that its slowdown is what comes on top of sharing the cores."""
    scale = min(1.0, cores / max(1, ta + tb))
    return max(1, round(ta * scale)), max(1, round(tb * scale))
