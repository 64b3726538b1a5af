"""Where the space is too large to simulate every candidate: Optuna's NSGA-II sampler (seeded:
the same trials every time) explores it, per budget, minimising e2e and peak RAM under the
constraint that the schedule fits (report/search.py). A trial's parameters are the candidates'
settings, each a categorical; a combination that is no candidate (a fixed policy with lanes set)
is read as the candidate of its policy and variant that shares the most settings. Trials are
simulated in batches on the sweep's executors; a candidate met again is not simulated again."""
from __future__ import annotations

import logging

from .search import candidate_row, marks_text, plan_ram

BATCH = 64


class Encoding:
    """Candidates <-> the categorical parameters of a trial."""

    def __init__(self, cands: list[dict]):
        self.cands = cands
        self.keys = sorted({k for c in cands for k in c})
        self.values = {k: sorted({self.cell(c, k) for c in cands}) for k in self.keys}
        self.index = {self.cells(c): i for i, c in enumerate(cands)}
        self.groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(cands):
            self.groups.setdefault((c["policy"], c["variant"]), []).append(i)

    @staticmethod
    def cell(c: dict, k: str) -> str:
        v = c.get(k, "-")
        return marks_text(v) if isinstance(v, dict) else str(v)

    def cells(self, c: dict) -> tuple:
        return tuple(self.cell(c, k) for k in self.keys)

    def candidate(self, params: dict) -> int:
        key = tuple(params[k] for k in self.keys)
        if key in self.index:
            return self.index[key]
        group = self.groups[(params["policy"], params["variant"])]
        return max(group, key=lambda i: (sum(a == b for a, b in zip(self.cells(self.cands[i]), key)), -i))


def explore(ctx, budgets, margin_pct: float, trials: int, workers: int = 1, dask=None, processes=True) -> list[dict]:
    import optuna
    optuna.logging.set_verbosity(logging.WARNING)
    enc = Encoding(ctx.cands)
    rows = []
    for _, n in budgets:
        seen: dict[int, dict] = {}
        sampler = optuna.samplers.NSGAIISampler(seed=0)
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        for start in range(0, trials, BATCH):
            batch = [study.ask() for _ in range(min(BATCH, trials - start))]
            picks = [enc.candidate({k: t.suggest_categorical(k, enc.values[k]) for k in enc.keys}) for t in batch]
            new = sorted({i for i in picks if i not in seen})
            for i, row in zip(new, simulate(ctx, new, n, margin_pct, workers, dask, processes)):
                seen[i] = row
            for t, i in zip(batch, picks):
                r = seen[i]
                if r["error"]:
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
                    continue
                t.set_constraint("fits", 0.0 if r["fits"] else 1.0)   # > 0: infeasible
                study.tell(t, [r["e2e_s"], float(r["charged_peak_high_bytes"])])
        rows += [seen[i] for i in sorted(seen)]
    return rows


def simulate(ctx, indices: list[int], budget: int, margin_pct: float, workers, dask, processes) -> list[dict]:
    """Rows of candidates `indices` at one budget, on the sweep's executors (in order)."""
    from .study import DEFAULT_SIMULATE
    from .sweep import _executor_map, chunks_of
    points = [{**ctx.cands[i], "device.ram_bytes": plan_ram(budget, margin_pct)} for i in indices]
    study = ctx.study(points)
    got = {}
    for chunk in _executor_map(study.payload(), chunks_of(list(range(len(points))), workers, None), workers, dask,
                               DEFAULT_SIMULATE, processes):
        for r in chunk:
            got[r["index"]] = r
    return [candidate_row(got[j], i, points[j], ctx.uncharged, budget) for j, i in enumerate(indices)]
