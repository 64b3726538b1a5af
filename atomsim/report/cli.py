"""`atomsim report memory` and `atomsim sweep` (and `register_project` for `atomsim profile project`).
Heavy imports (matplotlib, dask, the simulator) happen inside the handlers."""
from __future__ import annotations

import sys

from ..schema.names import BACKENDS, POLICIES, PRESETS, TASKS

MAIN_POLICIES = ("reload", "reuse-serial", "reuse-parallel")


def _cmd_memory(args) -> int:
    from ..io import check_writable_dir
    from .memory_report import memory_rows, write_memory_report
    check_writable_dir(args.out)
    rows = memory_rows(args.devices, args.preset, args.quant, args.policies, task=args.task, clips=args.clips,
                       profile_files=args.profile or ())
    files = write_memory_report(rows, args.out)
    ok = sum(1 for r in rows if not r["error"])
    print(f"{ok}/{len(rows)} combinations simulated; wrote {', '.join(str(f) for f in files)}")
    for r in rows:
        if r["error"]:
            print(f"  not simulated: {r['device']} {r['preset']} {r['quant']} {r['policy']}: {r['error']}", file=sys.stderr)
    return 0 if ok else 2


def _cmd_sweep(args) -> int:
    from .sweep import run_sweep
    res = run_sweep(args.study, args.out, workers=args.workers, dask=args.dask, progress=not args.no_progress,
                    chunk_size=args.chunk_size)
    failed = sum(1 for r in res.rows if r["error"])
    print(f"{len(res.rows)} points ({res.resumed} resumed, {failed} failed); wrote "
          + ", ".join(str(f) for f in res.files))
    return 0


def register(subparsers) -> None:
    rep = subparsers.add_parser("report", help="reports: memory budget (Table 8 for any combination)")
    rsub = rep.add_subparsers(dest="report_command", metavar="REPORT")
    m = rsub.add_parser("memory", help="peak RAM, breakdown and headroom per device x preset x quant x policy")
    m.add_argument("--devices", nargs="+", default=["pixel_5a", "pixel_8a", "galaxy_s23"], metavar="DEVICE")
    m.add_argument("--preset", nargs="+", default=["paper"], choices=PRESETS)
    m.add_argument("--quant", nargs="+", default=["torchao-int8"], choices=BACKENDS)
    m.add_argument("--policies", nargs="+", default=list(MAIN_POLICIES), choices=POLICIES)
    m.add_argument("--task", default="assembly", choices=TASKS)
    m.add_argument("--clips", type=int, default=5)
    m.add_argument("--profile", nargs="+", metavar="FILE", help="profiles to use (default: profiles/<preset>-<device>.json)")
    m.add_argument("--out", required=True, metavar="DIR")
    m.set_defaults(func=_cmd_memory)
    rep.set_defaults(func=lambda a: (rep.print_help(), 1)[1])

    s = subparsers.add_parser("sweep", help="run a study (a grid over scenario fields): table and plots")
    s.add_argument("study", metavar="STUDY", help="study YAML (scenarios/studies/*.yaml)")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    s.add_argument("--dask", default=None, metavar="ADDRESS", help="run on a Dask cluster ('local': a LocalCluster)")
    s.add_argument("--chunk-size", type=int, default=None, help="points per task (default: automatic)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=lambda a: _cmd_sweep(_with_workers(a)))


def _with_workers(args):
    if args.workers is None:
        import os
        args.workers = os.cpu_count() or 1
    return args
