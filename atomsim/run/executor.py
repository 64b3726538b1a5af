"""Generic plan executor: real modules, one Python thread per lane.

A step starts when its deps are done and every earlier step of its lane has finished (the
Plan contract). `load` steps call `load_fn(role, ModuleRef)`, `free` steps call `Module.free()`,
`wait` steps wait `args.seconds` (the pause between requests; cut short when a lane fails),
`run` steps call `run_fn(step, modules)` (the pipeline's actions), after
`torch.set_num_threads(step.threads)` in the lane's thread (OpenMP thread counts are per calling
thread). Each step's real start and end go into the Trace (source "measured"). The first error
in any lane stops all lanes (steps not yet started never start) and is re-raised.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from ..schema.plan import Plan, Step
from ..schema.trace import Trace


class Aborted(Exception):
    """Another lane failed; this lane stops."""


class Executor:
    def __init__(self, plan: Plan, load_fn: Callable, run_fn: Callable, trace: Trace | None = None,
                 t0: float | None = None, monitor=None, on_step: Callable | None = None,
                 set_threads: Callable | None = None, on_start: Callable | None = None):
        self.plan, self.load_fn, self.run_fn = plan, load_fn, run_fn
        self.trace = trace or Trace.for_plan(plan, "measured")
        self.t0 = time.perf_counter() if t0 is None else t0
        self.monitor, self.on_step, self.on_start = monitor, on_step, on_start
        self.set_threads = set_threads or _torch_set_threads
        self.modules: dict = {}
        self.done = {s.id: threading.Event() for s in plan.steps}
        self.failed = threading.Event()
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()

    def run(self) -> Trace:
        lanes = {lane: [s for s in self.plan.steps if s.lane == lane] for lane in self.plan.lanes}
        threads = [threading.Thread(target=self._lane, args=(lane, steps), name=f"atomsim-lane-{lane}", daemon=True)
                   for lane, steps in lanes.items() if steps]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.1)
        except BaseException as e:   # KeyboardInterrupt: stop the lanes at their next step
            self._fail(e)
            for t in threads:
                t.join()
            raise
        if self.errors:
            raise self.errors[0]
        self.trace.spans.sort(key=lambda s: (s.start_s, s.step))
        return self.trace

    def _fail(self, e: BaseException) -> None:
        with self.lock:
            if not isinstance(e, Aborted):
                self.errors.append(e)
        self.failed.set()
        for ev in self.done.values():
            ev.set()

    def _lane(self, lane: str, steps: list[Step]) -> None:
        try:
            for step in steps:
                for d in step.deps:
                    self.done[d].wait()
                if self.failed.is_set():
                    raise Aborted()
                self._step(step)
                self.done[step.id].set()
        except BaseException as e:  # noqa: BLE001 - re-raised by run()
            self._fail(e)

    def _step(self, step: Step) -> None:
        if self.monitor:
            self.monitor.step_started(step)
        start = time.perf_counter()
        if self.on_start:
            self.on_start(step, start - self.t0)
        module = None
        if step.kind == "load":
            module = self.load_fn(step.instance, self.plan.instances[step.instance])
            with self.lock:
                self.modules[step.instance] = module
        elif step.kind == "free":
            with self.lock:
                module = self.modules.pop(step.instance, None)
            if module is not None:
                module.free()
            module = None
        elif step.kind == "wait":
            if self.failed.wait(float(step.args.get("seconds", 0.0))):
                raise Aborted()
        else:
            self.set_threads(step.threads)
            self.run_fn(step, self.modules)
        end = time.perf_counter()
        self.trace.add_step(step, start - self.t0, end - self.t0)
        if self.monitor:
            self.monitor.step_finished(step, module)
        del module
        if self.on_step:
            self.on_step(step, start - self.t0, end - self.t0)


def _torch_set_threads(n: int) -> None:
    import torch
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
