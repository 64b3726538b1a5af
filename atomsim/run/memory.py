"""Measured memory of a run: an RSS sampler thread and the breakdown of every sample.

Method (documented in docs/running.md):
- A daemon thread reads the process RSS from /proc/self/statm every `period_s`: 100 ms where the
  kernel's high-water mark can be reset (the peak then comes from VmHWM and the samples only draw
  the timeline and split the peak), 12 ms where it cannot (the sampled max is then the peak).
  Sampling costs the pipeline time: a sample wakes a thread that takes the GIL while the lanes'
  ops keep both cores busy. Measured (v06, torch-dynamic-int8 reload, 2 threads, 3 rounds of
  runs): end-to-end median 15.55 s sampling every 12 ms against 13.43 s every 200 ms, every
  round slower. The switch interval is left alone: lowering it makes the lane threads hand the
  GIL over every millisecond (seen: 2-thread ops 10-25% slower than the profiler measured them).
- Peak: at run start the kernel's high-water mark is reset (`echo 5 > /proc/self/clear_refs`,
  where permitted); at the end `VmHWM` is read. The reported peak is max(VmHWM, sampled max);
  `peak_method` says which was available.
- Breakdown of each sample (the five fields sum to the sampled RSS):
  - baseline: RSS before the first load, minus the input tensors alive then;
  - weights: for each live module, the RSS increase its load retained (RSS after the load minus
    RSS before it); when loads overlapped in time (parallel lanes) the deltas are not separable,
    so an overlapped load counts its tensor bytes (parameters + buffers) instead (an ExecuTorch
    program: its file's bytes, plus the decoder's embeddings table: `ProgramModule.weight_bytes`);
  - each field is clamped to what the RSS leaves after the fields before it (baseline, weights,
    inputs, rest), so the five always sum to the sampled RSS;
  - inputs: bytes of clip frame and feature tensors alive (the pipeline reports them);
  - the rest (RSS - the above) is `load_temporaries` if a load step was running at
    the sample, else `activations` (the ops running then: encode, caption, generate, embed...).
- The peak's breakdown is the breakdown of the sample with the highest RSS; if VmHWM exceeds it
  (a spike between samples), the excess is added to that sample's rest category.
- All of the above is the runner's own process. The `decode:i` steps decode in a worker process
  (decoder.py) whose memory none of it counts: its peak RSS, VmHWM of /proc/<pid>/status read at
  the end of the run before the worker stops (`process_status_bytes`), is the summary's separate
  `decoder_peak_bytes` (start-up imports and the run's decodes; None where unreadable, absent
  under ATOMSIM_DECODE_IN_THREAD=1, where decoding is the runner's own memory).
"""
from __future__ import annotations

import os
import threading
import time

from ..procfs import read_hwm, reset_hwm
from ..schema.trace import BREAKDOWN

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        import psutil
        return psutil.Process().memory_info().rss


def process_status_bytes(pid: int, field: str) -> int | None:
    """A kB field of /proc/<pid>/status (VmHWM, RssAnon...) in bytes; None if unreadable."""
    try:
        with open(f"/proc/{int(pid)}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def tensor_bytes(module) -> int:
    """Bytes of the unique storages of a module's parameters and buffers; a module without a torch
    module (an ExecuTorch ProgramModule) says its own (`weight_bytes`)."""
    own = getattr(module, "weight_bytes", None)
    if callable(own):
        return int(own())
    net = getattr(module, "net", None)
    if net is None or not hasattr(net, "parameters"):
        return 0
    seen, total = set(), 0
    for t in [*net.parameters(), *net.buffers()]:
        try:
            st = t.untyped_storage()
            key = st.data_ptr()
            if key in seen:
                continue
            seen.add(key)
            total += st.nbytes()
        except (RuntimeError, NotImplementedError, AttributeError):   # tensor subclasses (quantized)
            total += t.numel() * t.element_size()
    return total


class MemoryMonitor:
    """Samples RSS into `trace.memory`; the executor tells it about loads, frees and running steps."""

    def __init__(self, trace, t0: float, period_s: float | None = None, inputs_fn=None, on_sample=None):
        self.trace, self.t0, self.period_s = trace, t0, period_s
        self.on_sample = on_sample   # on_sample(t_s, breakdown): the run's event log
        self.inputs_fn = inputs_fn or (lambda: 0)
        self.lock = threading.Lock()
        self.weights: dict[str, int] = {}        # live instance -> attributed bytes
        self.loading: dict[str, int] = {}        # instance being loaded -> RSS before
        self.overlapped: set[str] = set()
        self.running: dict[str, str] = {}        # step id -> kind
        self.events: list[dict] = []              # rss before/after each load and free
        self.baseline = 0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread = None
        self.max_sample = (0, {k: 0 for k in BREAKDOWN})

    # ---- lifecycle
    def start(self) -> None:
        self.hwm_reset = reset_hwm()
        if self.period_s is None:
            self.period_s = 0.1 if self.hwm_reset else 0.012
        self.baseline = max(0, rss_bytes() - self.inputs_fn())
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="atomsim-memory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def sample(self) -> None:
        rss = rss_bytes()
        t = time.perf_counter() - self.t0
        with self.lock:
            b = self.breakdown(rss)
        self.trace.add_memory(t, **b)
        if self.on_sample is not None:
            self.on_sample(t, b)
        if rss > self.max_sample[0]:
            self.max_sample = (rss, b)

    def breakdown(self, rss: int) -> dict:
        """Fields sum to `rss`; each is clamped to what is left after the ones before it."""
        baseline = min(self.baseline, rss)
        weights = min(sum(self.weights.values()), rss - baseline)
        inputs = min(self.inputs_fn(), rss - baseline - weights)
        rest = rss - baseline - weights - inputs
        loading = any(k == "load" for k in self.running.values())
        return {"baseline": baseline, "weights": weights, "inputs": inputs,
                "load_temporaries": rest if loading else 0, "activations": 0 if loading else rest}

    # ---- executor hooks
    def step_started(self, step) -> None:
        with self.lock:
            self.running[step.id] = step.kind
            if step.kind == "load":
                if self.loading:
                    self.overlapped.update(self.loading)
                    self.overlapped.add(step.instance)
                self.loading[step.instance] = rss_bytes()

    def step_finished(self, step, module=None) -> None:
        rss = rss_bytes()
        with self.lock:
            self.running.pop(step.id, None)
            if step.kind == "load":
                before = self.loading.pop(step.instance, rss)
                if step.instance in self.overlapped or self.loading:
                    self.overlapped.add(step.instance)
                    self.overlapped.update(self.loading)
                    self.weights[step.instance] = tensor_bytes(module)
                else:
                    self.weights[step.instance] = max(0, rss - before)
                self.events.append({"step": step.id, "instance": step.instance, "rss_before": before,
                                    "rss_after": rss, "t_s": time.perf_counter() - self.t0})
            elif step.kind == "free":
                self.weights.pop(step.instance, None)
                self.events.append({"step": step.id, "instance": step.instance, "rss_after": rss,
                                    "live": sorted(self.weights), "t_s": time.perf_counter() - self.t0})
        self.sample()

    # ---- results
    def peak(self) -> tuple[int, dict, str]:
        """(peak bytes, breakdown, method)."""
        rss, b = self.max_sample
        b = dict(b)
        hwm = read_hwm() if self.hwm_reset else None
        if hwm is not None and hwm > rss:
            key = "load_temporaries" if b.get("load_temporaries") else "activations"
            b[key] += hwm - rss
            return hwm, b, "VmHWM (reset by clear_refs at run start)"
        return rss, b, "max of RSS samples" + ("" if self.hwm_reset else " (VmHWM reset not permitted)")

    def rate_hz(self) -> float:
        m = self.trace.memory
        if len(m) < 2 or m[-1][0] <= m[0][0]:
            return 0.0
        return (len(m) - 1) / (m[-1][0] - m[0][0])
