"""The policies (DESIGN.md, paper fig. 2), over any pipeline's stages. Each is one small function:
(scenario, pipeline, clip count) -> Plan. What they share is in `builder.py`: clips streamed
through the bounded queue (`decode:i`), requests one after another behind a `wait` of `think_s`.

- reload: one phase at a time; a phase's modules are loaded before it and freed after it (the
  per-clip stages form one phase; per-request stages on one module, or naming one `phase`, form
  one), per request ("each prompt restarts the model-loading cycle"). Paper fig. 2a.
- reuse-serial: every module loaded once and kept; stages one after another.
- reuse-parallel (Atom, fig. 2b): modules resident; each per-clip stage runs on its lane (the
  stage's `lane`, default its module's name), with a bounded queue of `queue_size` clips
  between consecutive per-clip stages; a per-request stage runs on its module's lane. Modules
  load one after another, each on its lane, so the first stage starts as soon as its module is in.
- baseline-resident: every module loaded up front and kept (with the baseline variant: what
  holding the baseline's caption model and script model at once costs in RAM).

Which modules: `reload` and `baseline-resident` take the pipeline's `baseline` variant where it
has one (the paper's baseline: a BERT caption decoder and a separate script Llama), unless the
scenario's `variant` says otherwise (`variant: none` reloads the reuse modules: the baseline the
paper measured in Table 3).
"""
from __future__ import annotations

from ..schema.pipeline import Pipeline
from ..schema.plan import Plan
from ..schema.scenario import Scenario
from .builder import Builder, phases

DEFAULT_VARIANT = {"reload": "baseline", "baseline-resident": "baseline"}


def reload(sc: Scenario, pipe: Pipeline, n: int) -> Plan:
    b = Builder(sc, pipe, n, parallel=False)
    for _ in b.requests():
        first = True
        for phase in phases(b.pipe):
            mods = list(dict.fromkeys(s.module for s in phase if s.module))
            for m in mods:
                b.load(m, deps=(b.start(),) if first else ())
                first = False
            b.stages(phase)
            for m in mods:
                b.free(m)
    return b.plan()


def _resident(sc: Scenario, pipe: Pipeline, n: int) -> Plan:
    b = Builder(sc, pipe, n, parallel=False)
    for m in b.instances:
        b.load(m)
    for _ in b.requests():
        b.stages(b.pipe.stages)
    b.r = 0
    for m in b.instances:
        b.free(m)
    return b.plan()


def reuse_serial(sc: Scenario, pipe: Pipeline, n: int) -> Plan:
    return _resident(sc, pipe, n)


def baseline_resident(sc: Scenario, pipe: Pipeline, n: int) -> Plan:
    return _resident(sc, pipe, n)


def reuse_parallel(sc: Scenario, pipe: Pipeline, n: int) -> Plan:
    b = Builder(sc, pipe, n, parallel=True)
    # Loads one after another (one storage device; the runner loads one module at a time, and
    # the paper's reuse loading time is the sum of the modules'), each on its module's lane: the
    # first per-clip stage starts as soon as its module is loaded, while the next still loads.
    prev = None
    for m in b.instances:
        prev = b.load(m, b.module_lane(m), deps=(prev,))
    for _ in b.requests():
        b.stages(b.pipe.stages)
    last = b.steps[-1].id
    b.r = 0
    for m in b.instances:
        b.free(m, "main", deps=(last,))
    return b.plan()
