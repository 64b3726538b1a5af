"""Execute a Plan against a Profile on a Device, in SimPy. Deterministic: no clock, no randomness.

Each lane is a SimPy process running its steps in plan order; a step starts when its deps are
done and the lane is free.

- run step with a module: CPU job asking `step.threads`, latency from the profile (`cpu.py`),
  scaled linearly by `args.items` / profiled `items`; for `generate`, also by
  `args.tokens` / `shape.tokens` when the profile's op shape records `tokens` (decode-dominated:
  prefill is not modelled apart). Memory: `input_bytes` as inputs and `activation_peak_bytes` as
  activations while it runs; when it returns, its `heap_retained_bytes` (freed memory the
  allocator keeps, measured) stay counted as activations until the next load or free trims the
  heap, and serve that op's next call first (the next call adds only what exceeds them). Each op
  keeps its own: what one op kept does not serve another's calls, so alternating ops keep the sum
  (measured, benchmarks/heap_interleave.py: small dyn8 encode and caption alternating on clips
  decoded in another thread keep 130 MB over their weights; per op the simulator has 113 MB while
  encode runs, with one heap serving any op it had 85 MB).
- clip frames (streamed): `decode:i` makes clip i's frames (the `input_bytes` of the first op
  that reads them, the encode op in the paper's pipelines) inputs when it starts, taking first
  what the allocator kept of released frames (a pool of their own); when the last step reading
  them returns (`encode:i`), clip i's frames are released, and the allocator keeps them (counted
  as activations) until the next decode reuses them or a load or free trims the heap.
- the first call of an op since its module was loaded takes, on top, what the profile's first
  call took above its median (`first_call_s`: one-time set-up, e.g. a tiny captioner's first
  caption 0.6 s against 0.25 s; not in profiles taken before 2026-12-03, which keep their figures).
- module-less run step (`decode`, `rank`, `assemble`): `profile.pipeline_ops_s[op]` seconds (0 if
  absent), scaled by items the same way when `pipeline_ops_items[op]` is given; 1 thread.
- wait step (between requests): `args.seconds` of wall time, no CPU.
- load step: `load.temporaries_bytes()` (the anonymous-memory peak where measured, else the
  high end of `load.transient_bytes`) as load temporaries from its start until it ends (an int8
  load's state is read first), and its weights (`resident_bytes`) in LOAD_PARTS equal parts,
  the first at the start and each other at the start of its share of the load's CPU time, as
  weights are copied or packed one tensor after another (with the whole charge from the start, a
  reuse-parallel plan's encodes met a decoder load's whole weights at its first instant: small
  dyn8 reuse-parallel simulated 951 MB against 856 MB measured). Cold (file not in the
  page cache): a storage read then `load.warm_s` of CPU work on one thread. The read alone takes
  `cold_s - warm_s` when the device's storage bandwidth is the profile's (or the scenario's
  device is the profile's device, or `host` with a measured profile), else `file_bytes / storage bandwidth`; concurrent reads share
  the bandwidth. Warm: `load.warm_s` of CPU work only. The file is then in the page cache.
- free step: takes the profile's `free_s` of one thread (0 if absent), then returns the weights; the file stays in the page cache while free RAM allows.
  What stays of the module's first use (`kept_after_free_bytes`, measured) joins the baseline, up
  to the largest such figure among the modules freed so far.
- Loads and frees end with a heap trim (as `models.load` and `Module.free` call malloc_trim):
  the freed heap the allocator kept is returned (what running ops took from it stays in use).
- Two lanes' run steps at once allocate in one heap (the runner's one malloc arena,
  atomsim/process.py): either may take the freed heap the other's earlier calls kept, and the
  other then grows the process by its own pool again. Which happens depends on how their calls
  interleave (small dyn8 reuse-parallel, encode beside caption: 146-155 MB of activations in some
  runs, 200-229 MB in others, against 157 simulated). The simulated peak takes each op's own
  pool back; `peak_high_bytes` adds, until the next trim, the pool each step meeting another
  lane's step took (once per pool), and while an op runs what its highest profiling round peaked
  above the median the simulated peak uses (`activation_peak_rounds`: each round a new process;
  small dyn8 encode 84, 180 and 83 MB, whose first call in one real reload run of 12 took 110 MB
  more than in the others): the top of the range a real run's peak falls in. It is not charged:
  out of memory is judged on the simulated peak.
- Out of memory: the run stops at that moment (`OutOfMemory`). What counts against the RAM
  limit is `memory.py`'s charge (process memory less the runtime's shared-library pages, plus the
  runner's decoder process where the profile measured it: `uncharged_baseline`).
"""
from __future__ import annotations

import simpy

from ..errors import ProfileError
from ..schema.plan import Plan, Step
from ..schema.profile import Profile
from ..schema.scenario import Device
from ..schema.trace import Trace
from .cpu import Cpu, LatencyCurve, Storage
from .memory import Memory, OutOfMemory


LOAD_PARTS = 4   # a load's weights arrive in this many equal parts over its CPU time


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes."""

    def __init__(self):
        super().__init__()
        self.processed = 0

    def step(self):
        self.processed += 1
        return super().step()


def op_curve(profile: Profile, plan: Plan, step: Step) -> tuple[LatencyCurve, str | None]:
    """Latency curve of a run step, and its co-run key "<model>/<quant>:<op>" (None if module-less)."""
    items = step.args.get("items")
    if step.instance is None:
        base = float(profile.pipeline_ops_s.get(step.op, 0.0))
        per = getattr(profile, "pipeline_ops_items", None) or {}
        factor = (items / per[step.op]) if (items and step.op in per) else 1.0
        return LatencyCurve({1: base * factor}), None
    ref = plan.instances[step.instance]
    op = profile.op(ref.model, ref.quant, step.op)
    factor = (items / op.items) if items else 1.0
    if step.op == "generate" and "tokens" in (op.shape or {}) and "tokens" in step.args:
        factor *= step.args["tokens"] / float(op.shape["tokens"])
    points = {int(k): v.median for k, v in op.latency_s.items()}
    return LatencyCurve(points, factor), f"{ref.key}:{step.op}"


def first_call_curve(op, curve: LatencyCurve) -> LatencyCurve:
    """The first call of an op since its module's load: the profile's first-call time above its
    median at that thread count (one-time set-up, not scaled by items or tokens) on top of the
    curve. Unchanged where the profile did not measure it (`first_call_s`: profiles from
    2026-12-03 on)."""
    first = getattr(op, "first_call_s", None)
    if first is None:
        return curve
    extra = max(0.0, first.median - op.latency(int(op.first_call_threads or 1)))
    if extra <= 0:
        return curve
    return LatencyCurve({t: v * curve.factor + extra for t, v in zip(curve.ts, curve.lats)})


def step_curves(profile: Profile, plan: Plan) -> dict[str, tuple[LatencyCurve, str | None]]:
    """op_curve of every run step, computed once per distinct (module, op, items, tokens)."""
    seen: dict[tuple, tuple[LatencyCurve, str | None]] = {}
    out = {}
    for s in plan.steps:
        if s.kind != "run":
            continue
        k = (plan.instances[s.instance].key if s.instance else None, s.op, s.args.get("items"), s.args.get("tokens"))
        if k not in seen:
            seen[k] = op_curve(profile, plan, s)
        out[s.id] = seen[k]
    return out


def check_profile(profile: Profile, plan: Plan) -> None:
    """Raise ProfileError naming the module and op when the profile lacks what the plan needs."""
    checked = set()
    for s in plan.steps:
        need = (s.instance, s.kind == "run" and s.op)   # a module, or one of its ops
        if s.instance is None or need in checked:
            continue
        checked.add(need)
        ref = plan.instances[s.instance]
        if s.kind == "run":
            try:
                profile.op(ref.model, ref.quant, s.op)
            except ProfileError as e:
                raise ProfileError(f"plan {plan.policy} step {s.id!r} needs op {s.op!r} of module {ref.key!r}: {e}") from None
        else:
            try:
                profile.module(ref.model, ref.quant)
            except ProfileError as e:
                raise ProfileError(f"plan {plan.policy} step {s.id!r} needs module {ref.key!r}: {e}") from None


def uncharged_baseline(profile: Profile) -> int:
    """Bytes of the simulated process memory that a RAM limit does not charge: the runtime
    baseline's file pages (shared libraries, read first by other processes and given back under
    pressure), where the profile measured the split (`baseline_anon_bytes`), else 0 (the whole RSS
    counts); less what it charges beside that process: the runner's decoder process
    (run/decoder.py, started for every run), its anonymous memory where the profile measured it
    (`decoder_anon_bytes`; profiles before 2026-12-03 have none). Negative when the decoder
    outweighs the file pages. The simulated RSS does not include the decoder: the runner's
    measured peak is its own process's too."""
    anon = profile.baseline_anon_bytes
    files = max(0, profile.baseline_rss_bytes - anon) if anon is not None else 0
    return files - (profile.decoder_anon_bytes or 0)


def same_storage(profile: Profile, device: Device) -> bool:
    """Does `device` read from the storage the profile's cold loads were measured on? Yes for the
    profile's own device, and for `host` (this machine) with a measured profile."""
    if profile.device.get("name") and profile.device.get("name") == device.name:
        return True
    if device.name == "host" and profile.source == "measured":
        return True
    bw = profile.storage_read_bytes_per_s
    return bw is not None and abs(bw - device.storage_read_bytes_per_s) <= 1e-6 * bw


class Engine:
    def __init__(self, plan: Plan, profile: Profile, device: Device, warm_start: bool = False,
                 trace_meta: dict | None = None):
        check_profile(profile, plan)
        self.plan, self.profile, self.device = plan, profile, device
        self.env = CountingEnvironment()
        self.trace = Trace.for_plan(plan, "simulated", **(trace_meta or {}))
        self.cpu = Cpu(self.env, device.cores, profile.corun_slowdown if profile.corun else None)
        self.storage = Storage(self.env)
        self.mem = Memory(device.ram_bytes, profile.baseline_rss_bytes, self.trace, lambda: self.env.now,
                          uncharged_bytes=uncharged_baseline(profile))
        self.same_storage = same_storage(profile, device)
        self.loads: list[dict] = []
        # freed heap the allocator keeps (until a trim), counted in activations: per op (and one
        # pool for clip frames), as what one op keeps does not serve another's calls
        self.held: dict = {}
        self.running: dict[str, tuple] = {}   # run step id -> (lane, pool, bytes it took from the pool)
        self.contended: dict = {}             # pool -> bytes added to peak_high since the last trim
        self.oom_event: dict | None = None
        self.runtime_kept = 0               # baseline growth from freed modules' first-use state
        self.called: set[tuple[str, str]] = set()   # (instance, op) run since the instance's load
        # (request, clip) -> bytes of the clip's decoded frames (the first reader's profiled input),
        # from its decode until its last reader returns (`self.releases`)
        self.frames: dict[tuple, int] = {}
        last_reader: dict[tuple, str] = {}
        self.reads_frames = {s.id for s in plan.steps if plan.reads_frames(s)}
        for s in plan.steps:
            if s.id in self.reads_frames and s.instance is not None:
                key = (s.request, s.clip)
                self.frames.setdefault(key, profile.modules[plan.instances[s.instance].key].ops[s.op].input_bytes)
                last_reader[key] = s.id
        self.releases = {sid: key for key, sid in last_reader.items()}
        self.done = {s.id: self.env.event() for s in plan.steps}
        self.curves = step_curves(profile, plan)
        if warm_start:
            for key in sorted({r.key for r in plan.instances.values()}):
                m = profile.modules[key]
                self.mem.cache.touch(key, m.file_bytes)

    def run(self) -> "Engine":
        by_lane: dict[str, list[Step]] = {lane: [] for lane in self.plan.lanes}
        for s in self.plan.steps:
            by_lane[s.lane].append(s)
        self.stop = self.env.event()
        for lane in self.plan.lanes:
            self.env.process(self._lane(by_lane[lane]))
        all_done = self.env.all_of(list(self.done.values()))
        self.env.run(until=self.env.any_of([all_done, self.stop]))
        return self

    def _lane(self, steps: list[Step]):
        for s in steps:
            waiting = [self.done[d] for d in s.deps if not self.done[d].processed]
            if waiting:   # deps already done cost no event
                yield self.env.all_of(waiting)
            start = self.env.now
            try:
                yield from self._execute(s)
            except OutOfMemory as e:
                self.trace.add_step(s, start, self.env.now)
                if self.oom_event is None:
                    self.oom_event = e.event
                    self.stop.succeed()
                return
            self.trace.add_step(s, start, self.env.now)
            self.done[s.id].succeed()

    def _execute(self, s: Step):
        if s.kind == "run" and s.op == "decode":
            yield from self._decode(s)
        elif s.kind == "run":
            yield from self._run(s)
        elif s.kind == "wait":
            yield self.env.timeout(float(s.args.get("seconds", 0.0)))
        elif s.kind == "load":
            yield from self._load(s)
        elif s.kind == "free":
            m = self._module(s)
            free_s = m.free_s.median if m.free_s is not None else 0.0
            # garbage collection and returning pages: one thread of CPU work (none if unmeasured)
            yield self.cpu.run(s.id, 1, LatencyCurve({1: free_s}), None)
            # what the runtime keeps of a module's first use stays: the baseline grows to the
            # largest such figure of the modules freed so far (the profiler measures each in a
            # fresh process, so each figure holds the process-wide part once)
            kept = min(m.kept_after_free_bytes or 0, m.resident_bytes)
            grow = max(0, kept - self.runtime_kept)
            self.runtime_kept += grow
            self.mem.change(s.id, weights=-m.resident_bytes, baseline=grow)
            self._trim(s)
        else:
            raise ValueError(f"unknown step kind {s.kind!r} in step {s.id!r}")

    def _module(self, s: Step):
        ref = self.plan.instances[s.instance]
        return self.profile.modules[ref.key]

    def _decode(self, s: Step):
        """Clip frames become inputs; freed heap the allocator kept serves them first."""
        nbytes = self.frames.get((s.request, s.clip), 0)
        take = min(self.held.get("frames", 0), nbytes)
        self.held["frames"] = self.held.get("frames", 0) - take
        self.mem.change(s.id, inputs=nbytes, activations=-take)
        self._contend(s, "frames", take)
        curve, key = self.curves[s.id]
        yield self.cpu.run(s.id, 1, curve, key)
        del self.running[s.id]

    def _run(self, s: Step):
        """An op's activations come first from the freed heap its own earlier calls kept, the rest
        grows the process; at its end the op gives back what it took and keeps its measured
        retained heap, so its pool after it is max(its pool before, retained)."""
        curve, key = self.curves[s.id]
        inputs = peak = kept = spread = 0
        if s.instance is not None:
            op = self.profile.modules[self.plan.instances[s.instance].key].ops[s.op]
            if (s.instance, s.op) not in self.called:
                self.called.add((s.instance, s.op))
                curve = first_call_curve(op, curve)
            inputs = 0 if s.id in self.reads_frames else op.input_bytes   # frames: counted from their decode
            peak = op.activation_peak_bytes
            kept = min(op.heap_retained_bytes or 0, peak)
            spread = max(0, max(op.activation_peak_rounds or (0,)) - peak)
        else:   # module-less (assemble): its measured buffers, returned when it ends
            peak = int(self.profile.pipeline_ops_bytes.get(s.op, 0))
        pool = (s.instance, s.op)
        take = min(self.held.get(pool, 0), peak)
        self.held[pool] = self.held.get(pool, 0) - take
        if inputs or peak - take:
            self.mem.change(s.id, inputs=inputs, activations=peak - take)
        self._contend(s, pool, take)
        self.mem.contend(spread)
        yield self.cpu.run(s.id, s.threads, curve, key)
        del self.running[s.id]
        self.mem.contend(-spread)
        keep = max(0, kept - take)
        frames = self.frames.get(self.releases[s.id], 0) if s.id in self.releases else 0   # released, kept until a trim
        self.held[pool] = self.held.get(pool, 0) + take + keep
        self.held["frames"] = self.held.get("frames", 0) + frames
        if inputs or peak - take - keep or frames:
            self.mem.change(s.id, inputs=-inputs - frames, activations=keep - (peak - take) + frames)

    def _contend(self, s: Step, pool, take: int) -> None:
        """A run step starts: when another lane's run step is running, each of them may find its
        pool taken by the other, and count what it took from its pool once more in `peak_high`
        (each pool once until the next trim)."""
        self.running[s.id] = (s.lane, pool, take)
        if all(lane == s.lane for lane, _, _ in self.running.values()):
            return
        for _, p, t in self.running.values():
            add = t - self.contended.get(p, 0)
            if add > 0:
                self.contended[p] = t
                self.mem.contend(add)

    def _trim(self, s: Step) -> None:
        """malloc_trim at the end of a load or free: the allocator returns the freed heap it kept
        (what running ops took from it is in use, and so is the heap they grew by when contended)."""
        drop, self.held = sum(self.held.values()), {}
        if drop:
            self.mem.change(s.id, activations=-drop)
        busy = {p for _, p, _ in self.running.values()}
        gone = sum(v for p, v in self.contended.items() if p not in busy)
        self.contended = {p: v for p, v in self.contended.items() if p in busy}
        if gone:
            self.mem.contend(-gone)

    def _load(self, s: Step):
        ref = self.plan.instances[s.instance]
        m = self.profile.modules[ref.key]
        self.called = {c for c in self.called if c[0] != s.instance}   # its ops' first calls come again
        transient = m.load.temporaries_bytes()
        warm = self.mem.cache.has(ref.key)
        self.loads.append({"step": s.id, "module": ref.key, "request": s.request, "t_s": self.env.now,
                           "warm": warm, "read_bytes": 0 if warm else m.file_bytes})
        parts = [m.resident_bytes * (i + 1) // LOAD_PARTS - m.resident_bytes * i // LOAD_PARTS
                 for i in range(LOAD_PARTS)]
        self.mem.change(s.id, weights=parts[0], load_temporaries=transient)
        warm_s = m.load.warm_s.median
        if not warm:
            if self.same_storage:
                read_s = max(m.load.cold_s.median - warm_s, 0.0)
            else:
                read_s = m.file_bytes / self.device.storage_read_bytes_per_s
            if read_s > 0:
                yield self.storage.read(s.id, read_s)
        for i, part in enumerate(parts):
            if i:
                self.mem.change(s.id, weights=part)
            if warm_s > 0:
                yield self.cpu.run(s.id, 1, LatencyCurve({1: warm_s / LOAD_PARTS}), None)
        self.mem.cache.touch(ref.key, m.file_bytes)
        self.mem.change(s.id, load_temporaries=-transient)
        self._trim(s)
