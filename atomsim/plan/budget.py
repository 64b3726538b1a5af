"""Budget-aware policies: a module is loaded when a phase needs it and kept while the plan fits
the device's RAM; when the next load (or the phase's run) would not fit, resident modules the
phase does not use are freed first (unload before load) by a rule:

- budget-lru: the least recently used;
- budget-cost: GreedyDual-Size: the lowest H = L + reload cost / weight bytes, where the reload
  cost is the profile's cold or warm load time as the predicted page cache has the file or not
  (`Model.reload_s`), and L rises to the H of each module evicted (H is taken at the eviction,
  with the reload cost of that moment);
- budget-belady: the one next used farthest ahead (the plan is known: every phase of every request);
- budget-optimal: no rule: the modules carried from phase to phase that make the fewest predicted
  load seconds over the whole plan, by dynamic programming over resident sets (exact under the
  planner's model below; 2^modules states a phase).

The scenario's `schedule` says per module `keep` (never evicted), `reload` (freed after each phase
that uses it) or `rule` (default), and `lanes` serial or parallel (per-clip stages on their lanes).

The planner's model (`Model`), from the profile: what the simulator charges against the RAM limit
at each load (baseline + resident weights + the loading module's weights and temporaries) and
while a phase runs (baseline + resident weights + the phase's working memory: its largest op's
activations and inputs, summed over the lanes when parallel, plus `queue_size + 1` clips of frames).
The page cache (`Cache`) as the simulator keeps it: files in LRU order, the oldest dropped while
they exceed the RAM left free at each load and run; a load is warm when its file is cached. The simulator then says what really happens
(an eviction the planner did not foresee shows as an out-of-memory or a cold load).

Every free a rule decides says why in its step's `args`: `evicted_by` (the rule), `for` (the
module to load, or `run` for the phase's working memory), `freed_bytes`, `reload_s`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ..errors import ConfigError, ProfileError
from ..schema.pipeline import Pipeline
from ..schema.plan import Plan
from ..schema.scenario import Scenario
from .builder import Builder, phases

RULES = ("lru", "cost", "belady", "optimal")


@dataclass(frozen=True)
class Sizes:
    weights: int
    temporaries: int
    file: int
    cold_s: float
    warm_s: float


@dataclass
class Phase:
    request: int
    modules: tuple[str, ...]    # the modules its stages use, in order
    work: int                   # working memory while it runs (bytes)
    ops: frozenset = frozenset()   # its ops' heaps, kept after it until a load's or free's trim


@dataclass
class Action:
    """What a budget plan does around phase k: frees (with why), loads, frees after it."""
    evict: list[tuple[str, dict]] = field(default_factory=list)
    load: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


class Cache:
    """The page cache as the simulator keeps it (sim/memory.py), at the planner's moments: weight
    files in LRU order, the oldest dropped while they exceed the RAM left free."""

    def __init__(self, files: tuple[str, ...] = ()):
        self.files = list(files)

    def copy(self) -> "Cache":
        return Cache(tuple(self.files))

    def fit(self, model: "Model", free: int) -> None:
        while self.files and sum(model.sizes[m].file for m in self.files) > free:
            self.files.pop(0)

    def touch(self, m: str) -> None:
        if m in self.files:
            self.files.remove(m)
        self.files.append(m)


class Model:
    """The planner's view of one plan: sizes, load costs and working memory from the profile."""

    def __init__(self, b: Builder, profile):
        sc = b.sc
        self.budget = int(sc.device.ram_bytes)
        self.sizes: dict[str, Sizes] = {}
        kept = 0
        for m, ref in b.instances.items():
            mp = profile.module(ref.model, ref.quant)
            self.sizes[m] = Sizes(int(mp.resident_bytes), int(mp.load.temporaries_bytes()), int(mp.file_bytes),
                                  float(mp.load.cold_s.median), float(mp.load.warm_s.median))
            kept = max(kept, min(mp.kept_after_free_bytes or 0, mp.resident_bytes))
        base = int(profile.baseline_rss_bytes or 0)
        anon = profile.baseline_anon_bytes
        # charged: file pages of libraries are not; the decoder process is (where measured)
        self.base = (anon if anon is not None else base) + kept + int(profile.decoder_anon_bytes or 0)
        self.phases: list[Phase] = []
        self.retained: dict[tuple, int] = {}   # (module, op) -> the heap its calls keep
        for r in range(sc.workload.request_count()):
            for ph in phases(b.pipe):
                mods = tuple(dict.fromkeys(s.module for s in ph if s.module))
                work, kept = working_memory(b, profile, ph)
                self.retained.update(kept)
                self.phases.append(Phase(r, mods, work, frozenset(kept)))
        self.start = Cache()
        if sc.page_cache == "warm":   # as the simulator starts warm: every file read, by key
            for m in sorted(self.sizes, key=lambda m: b.instances[m].key):
                self.start.touch(m)
            self.start.fit(self, self.budget - self.base)

    def weights(self, mods) -> int:
        return sum(self.sizes[m].weights for m in mods)

    def load_need(self, resident, m: str, heap: frozenset = frozenset()) -> int:
        """`heap`: the ops whose kept heap is there when the load starts (its trim returns it)."""
        return (self.base + self.weights(resident) + self.sizes[m].weights + self.sizes[m].temporaries
                + sum(self.retained[o] for o in heap))

    def heap_after(self, k: int, heap: frozenset, trimmed: bool, freed_after: bool) -> frozenset:
        """The ops' heaps kept after phase k ran: a load or free before it (`trimmed`) returned
        the earlier ones; frees after it (`freed_after`) return all."""
        if freed_after:
            return frozenset()
        return self.phases[k].ops if trimmed else heap | self.phases[k].ops

    def run_need(self, resident, k: int, heap: frozenset = frozenset()) -> int:
        """`heap`: earlier ops whose kept heap is there while phase k runs (no trim since)."""
        return (self.base + self.weights(resident) + self.phases[k].work
                + sum(self.retained[o] for o in heap - self.phases[k].ops))

    def reload_s(self, m: str, cache: Cache) -> float:
        """What loading m would take now: warm while its file is in the page cache."""
        s = self.sizes[m]
        return s.warm_s if m in cache.files else s.cold_s

    def next_use(self, m: str, k: int) -> int:
        return next((j for j in range(k + 1, len(self.phases)) if m in self.phases[j].modules), len(self.phases))

    def phase(self, k: int, kept: list[str], loads: list[str], cache: Cache,
              heap: frozenset = frozenset()) -> float | None:
        """Load `loads` in order onto `kept` (the first beside the `heap` earlier ops kept), then
        run phase k: the predicted load seconds, with `cache` updated as the simulator's would
        be; None when a load or the run does not fit."""
        total, held = 0.0, list(kept)
        for i, m in enumerate(loads):
            need = self.load_need(held, m, heap if i == 0 else frozenset())
            if need > self.budget:
                return None
            total += self.reload_s(m, cache)
            cache.fit(self, self.budget - need)
            cache.touch(m)
            cache.fit(self, self.budget - need)
            held.append(m)
        need = self.run_need(held, k, heap if not loads else frozenset())
        if need > self.budget:
            return None
        cache.fit(self, self.budget - need)
        return total


def working_memory(b: Builder, profile, phase) -> tuple[int, dict[tuple, int]]:
    """Bytes a phase's steps hold while it runs: with parallel lanes, every op's activations and
    inputs at once; serial, the largest of an op's plus the heap the phase's other ops keep (the
    simulator keeps each op's retained heap apart until a trim); plus queue_size + 1 clips of
    decoded frames. And what each of its ops (and the frames) keep after it, by (module, op)."""
    peaks, kept, frames = [], {}, 0
    for s in phase:
        if s.module is None:
            peaks.append((int(profile.pipeline_ops_bytes.get(s.op, 0)), None))
            continue
        ref = b.instances[s.module]
        op = profile.op(ref.model, ref.quant, s.op)
        peak = op.activation_peak_bytes or 0
        kept[(s.module, s.op)] = min(op.heap_retained_bytes or 0, peak)
        if "frames" in s.inputs:
            frames = max(frames, op.input_bytes)
            peaks.append((peak, (s.module, s.op)))
        else:
            peaks.append((peak + op.input_bytes, (s.module, s.op)))
    frames *= b.w.queue_size + 1
    if b.parallel and any(s.per_clip for s in phase):
        held = sum(p for p, _ in peaks)
    else:
        others = sum(kept.values())
        held = max((p + others - kept.get(o, 0) for p, o in peaks), default=0)
    if frames:
        kept[("", "frames")] = frames
    return held + frames, kept


# ---- the rules: a forward pass over the phases
def rule_actions(model: Model, rule: str, marks: dict[str, str]) -> list[Action]:
    resident: list[str] = []
    last_use: dict[str, int] = {}
    inflation: dict[str, float] = {}   # GreedyDual-Size: L at each module's last use
    level = 0.0
    cache = model.start.copy()
    actions = []
    heap: frozenset = frozenset()   # ops whose kept heap is there (until a trim)
    for k, ph in enumerate(model.phases):
        act = Action()

        def evict(reason_for: str, need) -> None:
            nonlocal level
            while need() > model.budget:
                cands = [m for m in resident if m not in ph.modules and marks.get(m) != "keep"]
                if not cands:
                    return
                if rule == "lru":
                    victim = min(cands, key=lambda m: last_use[m])
                elif rule == "belady":
                    victim = max(cands, key=lambda m: model.next_use(m, k))
                else:   # H = L at last use + reload cost now / size; L rises to the victim's H
                    def h(m):
                        return inflation[m] + model.reload_s(m, cache) / max(1, model.sizes[m].weights)
                    victim = min(cands, key=h)
                    level = h(victim)
                resident.remove(victim)
                act.evict.append((victim, {"evicted_by": rule, "for": reason_for,
                                           "freed_bytes": model.sizes[victim].weights,
                                           "reload_s": round(model.reload_s(victim, cache), 6)}))

        for m in ph.modules:
            if m not in resident:
                first = not act.load   # loads and frees (act.evict, as it grows) trim the heap at their end
                evict(m, lambda: model.load_need(resident, m, heap if first and not act.evict else frozenset()))
                resident.append(m)
                act.load.append(m)
        evict("run", lambda: model.run_need(resident, k, frozenset() if act.evict or act.load else heap))
        kept = [m for m in resident if m not in act.load]
        model.phase(k, kept, act.load, cache, frozenset() if act.evict else heap)   # the cache as they leave it
        for m in ph.modules:
            last_use[m], inflation[m] = k, level
            if marks.get(m) == "reload":
                resident.remove(m)
                act.after.append(m)
        heap = model.heap_after(k, heap, bool(act.evict or act.load), bool(act.after))
        actions.append(act)
    return actions


def optimal_actions(model: Model, marks: dict[str, str]) -> list[Action]:
    """The fewest predicted load seconds over every choice of what to carry from phase to phase
    (dynamic programming over the reachable states: the modules carried out of a phase, the
    page cache's files in LRU order and the ops whose kept heap is there). Where nothing fits, the
    minimal-memory choice (the simulator then reports the out-of-memory)."""
    start = (frozenset(), tuple(model.start.files), frozenset())
    best: dict[tuple, tuple[float, list[Action]]] = {start: (0.0, [])}
    for k, ph in enumerate(model.phases):
        nxt: dict[tuple, tuple[float, list[Action]]] = {}
        after = [m for m in ph.modules if marks.get(m) == "reload"]
        for (carried, files, heap), (cost, acts) in best.items():
            optional = [m for m in model.sizes if m in carried and m not in ph.modules and marks.get(m) != "keep"]
            loads = [m for m in ph.modules if m not in carried]
            for n in range(len(optional) + 1):
                for drop in itertools.combinations(optional, n):
                    kept = [m for m in model.sizes if m in carried and m not in drop]
                    cache = Cache(files)
                    t = model.phase(k, kept, loads, cache, frozenset() if drop else heap)
                    if t is None:
                        continue
                    key = (frozenset(m for m in kept + loads if marks.get(m) != "reload"), tuple(cache.files),
                           model.heap_after(k, heap, bool(drop or loads), bool(after)))
                    if key not in nxt or cost + t < nxt[key][0] - 1e-12:
                        why = {"evicted_by": "optimal", "for": loads[0] if loads else "run"}
                        act = Action([(m, {**why, "freed_bytes": model.sizes[m].weights}) for m in drop], loads,
                                     after)
                        nxt[key] = (cost + t, acts + [act])
        if not nxt:   # nothing fits: carry nothing the phase does not use
            return minimal_actions(model, marks)
        best = nxt
    return min(best.values(), key=lambda v: v[0])[1]


def minimal_actions(model: Model, marks: dict[str, str]) -> list[Action]:
    actions, resident = [], []
    for ph in model.phases:
        drop = [m for m in resident if m not in ph.modules and marks.get(m) != "keep"]
        resident = [m for m in resident if m not in drop]
        loads = [m for m in ph.modules if m not in resident]
        actions.append(Action([(m, {"evicted_by": "optimal", "for": "minimum"}) for m in drop], loads,
                              [m for m in ph.modules if marks.get(m) == "reload"]))
        resident = [m for m in resident + loads if marks.get(m) != "reload"]
    return actions


# ---- the plan
def budget_plan(sc: Scenario, pipe: Pipeline, n: int, profile) -> Plan:
    """The plan of a budget policy (`budget-<rule>`): the rule's actions around each phase."""
    if profile is None:
        raise ConfigError(f"scenario {sc.name!r}: policy {sc.policy!r} plans with a profile's sizes and load "
                          "costs: give `profile:` in the scenario (or --profile)")
    rule = sc.policy.removeprefix("budget-")
    b = Builder(sc, pipe, n, parallel=sc.schedule.lanes == "parallel")
    marks = dict(sc.schedule.modules)
    unknown = sorted(set(marks) - set(b.instances))
    if unknown:
        raise ConfigError(f"scenario {sc.name!r}: field 'schedule.modules': {', '.join(unknown)} is not a module "
                          f"of pipeline {pipe.name!r}; its modules: {', '.join(b.instances)}")
    try:
        model = Model(b, profile)
    except ProfileError as e:
        raise ProfileError(f"plan {sc.policy}: {e}") from None
    actions = optimal_actions(model, marks) if rule == "optimal" else rule_actions(model, rule, marks)
    return build(b, actions)


def build(b: Builder, actions: list[Action]) -> Plan:
    """Steps of the actions: frees and loads wait for every lane's last step (phases do not
    overlap); a load runs on the lane of the module's first per-clip stage (main when serial)."""
    k, resident = 0, []
    for _ in b.requests():
        for phase in phases(b.pipe):
            act = actions[k]
            for m, why in act.evict:
                b.free(m, deps=barrier(b), **why)
                resident.remove(m)
            for m in act.load:
                b.load(m, b.module_lane(m), deps=barrier(b))
                resident.append(m)
            b.stages(phase)
            for m in act.after:
                b.free(m, deps=barrier(b))
                resident.remove(m)
            k += 1
    for m in resident:
        b.free(m, deps=barrier(b))
    return b.plan()


def barrier(b: Builder) -> tuple[str, ...]:
    return tuple(b.last.values())
