"""`atomsim profile programs DIR --into PROFILE`: measure exported ExecuTorch programs on this
machine into the profile format, as a phone would be measured with executor_runner.

- op latency: `Method::execute` samples of an ETDump written while running the program `--runs`
  times at each thread count of XNNPACK's pool, imported with `atomsim profile import` (so each
  figure names its dump and is checked against its program);
- load: the runtime's `_load_program(...).load_method("forward")` (executorch_backend.load_program), cold after evicting the file from the
  page cache (`cold_evicted` says whether it left), warm with the file cached; in this process;
- memory: resident = RSS growth over the load (the program's constants and planned buffers);
  activation peak = the program's planned activation memory (the sum of its execution plan's
  `non_const_buffer_sizes`: ExecuTorch plans activations ahead of time);
- file bytes: the program's size.
The decoder programs are not profiled here: an op (caption, generate) is a loop of calls whose
samples the dump does not group.
"""
from __future__ import annotations

import gc
import json
import tempfile
import time
from pathlib import Path

from .. import pagecache
from ..models import executorch_backend as eb
from ..schema.profile import Stat, profile_from_mapping, save_profile
from . import memory
from .imports import import_file

OPS = {"video-encoder": "encode", "sentence-encoder": "embed"}


def inputs(entry: dict) -> tuple:
    """Inputs of the program's shapes: random frames, token ids 1000-1999, an all-ones mask."""
    import torch
    g = torch.Generator().manual_seed(0)
    out = []
    for spec in entry["inputs"]:
        shape = [int(d) for d in spec["shape"]]
        if spec["dtype"] == "float32":
            out.append(torch.randn(*shape, generator=g))
        elif spec["name"] == "attention_mask":
            out.append(torch.ones(*shape, dtype=torch.long))
        else:
            out.append(torch.randint(1000, 2000, shape, generator=g))
    return tuple(out)


def loads(pte, n: int) -> dict:
    cold, warm, evicted = [], [], []
    for _ in range(n):
        evicted.append(pagecache.evict_checked([pte])["evicted"])
        t0 = time.perf_counter()
        method = eb.load_program(pte)
        cold.append(time.perf_counter() - t0)
        del method
        gc.collect()
    pagecache.touch([pte])
    for _ in range(n):
        t0 = time.perf_counter()
        method = eb.load_program(pte)
        warm.append(time.perf_counter() - t0)
        del method
        gc.collect()
    before = memory.rss()
    method = eb.load_program(pte)
    resident = max(memory.rss() - before, 0)
    del method
    return {"cold": cold, "warm": warm, "resident": resident,
            "evicted": None if None in evicted else all(evicted)}


def profile_programs(pte_dir, into, threads=(1,), runs: int = 3, n_loads: int = 3, device=None) -> dict:
    """Profile every encoder program of `pte_dir` into `into`. Returns {model: 'profiled' | why not}."""
    manifest = eb.read_manifest(pte_dir)
    quant, done = manifest["quant"], {}
    from executorch.extension.pybindings import _C  # noqa: F401  (the baseline: a process with the runtime, no program)
    import torch  # noqa: F401
    baseline = memory.rss()
    for entry in manifest["programs"]:
        model = entry["model"]
        if model not in OPS:
            done[model] = "not profiled: a decoder op is a loop of program calls (see executorch_profile)"
            continue
        pte, op = Path(pte_dir) / entry["program"], OPS[model]
        with tempfile.TemporaryDirectory() as tmp:
            for t in threads:
                dump = eb.etdump_run(pte, inputs(entry), Path(tmp) / f"{model}-{t}.etdp", runs=runs, threads=t)
                import_file(dump, "etdump", f"{model}/{quant}:{op}", into, threads=t, program=pte, device=device)
        _fill(into, model, quant, op, entry, loads(pte, n_loads), eb.planned_bytes(pte), baseline)
        done[model] = "profiled"
    return done


def _fill(into, model, quant, op, entry, ld, planned, baseline) -> None:
    """Put the figures measured here (not imported) into the profile, atomically."""
    data = json.loads(Path(into).read_text())
    m = data["modules"][f"{model}/{quant}"]
    m["load"].update(cold_s=Stat.of(ld["cold"]).model_dump(), warm_s=Stat.of(ld["warm"]).model_dump(),
                     cold_evicted=ld["evicted"])
    m["resident_bytes"], m["preset"] = ld["resident"], entry.get("preset")
    o = m["ops"][op]
    o["activation_peak_bytes"] = planned
    o["input_bytes"] = sum(_nbytes(t) for t in inputs(entry))
    o["shape"] = dict(o.get("shape") or {}, **entry.get("shape", {}))
    if data.get("baseline_rss_bytes") is None:
        data["baseline_rss_bytes"] = baseline
    if not data.get("device", {}).get("cores"):
        from importlib.metadata import version
        from .fingerprint import fingerprint
        data["device"] = dict(fingerprint(), torch=version("torch"), executorch=version("executorch"),
                              **(data.get("device") or {}))
    data["preset"] = data.get("preset") or entry.get("preset")
    data.setdefault("method", {})["executorch"] = (
        "atomsim profile programs: latency from ETDump (Method::execute); loads cold (evicted) and warm in one "
        "process; resident = RSS growth over load_method; activation = planned memory; baseline = this process's RSS")
    save_profile(profile_from_mapping(data, str(into)), into)


def _nbytes(t) -> int:
    return t.numel() * t.element_size()
