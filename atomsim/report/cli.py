"""`atomsim report memory` and `atomsim sweep` (and `register_project` for `atomsim profile project`).
Heavy imports (matplotlib, dask, the simulator) happen inside the handlers."""
from __future__ import annotations

import sys

from ..args import add_output_options, positive_int
from ..schema.names import BACKENDS, POLICIES, PRESETS, TASKS

MAIN_POLICIES = ("reload", "reuse-serial", "reuse-parallel")


def _cmd_memory(args) -> int:
    from ..io import check_writable_dir
    from ..schema.device_match import FLAG
    from .memory_report import memory_rows, write_memory_report
    check_writable_dir(args.out)
    from pathlib import Path
    pipeline = Path(args.pipeline).resolve() if args.pipeline else None
    rows = memory_rows(args.devices, args.preset, args.quant, args.policies, task=args.task, clips=args.clips,
                       pipeline=pipeline, profile_files=args.profile or (),
                       allow_device_mismatch=args.allow_device_mismatch)
    files = write_memory_report(rows, args.out)
    ok = sum(1 for r in rows if not r["error"])
    print(f"{ok}/{len(rows)} combinations simulated; wrote {', '.join(str(f) for f in files)}")
    for note in dict.fromkeys(r["device_mismatch"] for r in rows if r.get("device_mismatch")):
        print(f"WARNING ({FLAG}): {note}")
    for r in rows:
        if r["error"]:
            print(f"  not simulated: {r['device']} {r['preset']} {r['quant']} {r['policy']}: {r['error']}", file=sys.stderr)
    return 0 if ok else 2


def _sweep_device_checks(study_path, allow: bool) -> list[str]:
    """Every point's device against its profile, before any point runs (the sweep's own code is
    left as it is): ConfigError naming the first mismatch unless `allow`; the notes otherwise.
    Points that differ only in fields that neither the device nor the profile path depends on
    are checked once."""
    from ..errors import AtomsimError
    from ..schema.device_match import check_device
    from ..schema.profile import load_profile
    from .study import load_study
    study = load_study(study_path)
    spec = study.profile if isinstance(study.profile, str) else ""
    by = study.profile.get("by") if isinstance(study.profile, dict) else None
    keys = [f for f in study.fields if f.startswith("device") or f == by or "{" + f + "}" in spec or f == "changes"]
    seen, profiles, notes = set(), {}, []
    for i in range(study.size()):
        values = study.point(i)
        key = repr([values[f] for f in keys])
        if key in seen:
            continue
        seen.add(key)
        try:
            sc = study.scenario(values)
            path = study.profile_path(values, sc)
            profile = profiles.get(path) or profiles.setdefault(path, load_profile(path))
        except AtomsimError:
            continue   # the point fails in the sweep and its error column says why
        note = check_device(profile, sc.device, allow, path, f"{study.source} point {values}")
        if note and note not in notes:
            notes.append(note)
    return notes


def _cmd_sweep(args) -> int:
    """Exit 0; 2 (EXIT_ERROR) when points failed (tables still written, reasons printed); else 3
    (EXIT_OOM) when points ran out of memory."""
    from collections import Counter

    from ..args import show_progress
    from ..errors import EXIT_ERROR, EXIT_OK, EXIT_OOM
    from ..schema.device_match import FLAG
    from .sweep import run_sweep
    notes = _sweep_device_checks(args.study, args.allow_device_mismatch)
    res = run_sweep(args.study, args.out, workers=args.workers, dask=args.dask, progress=show_progress(args),
                    chunk_size=args.chunk_size)
    failed = [r["error"] for r in res.rows if r["error"]]
    oom = sum(1 for r in res.rows if r["oom"])
    for note in notes:
        print(f"WARNING ({FLAG}): {note}")
    print(f"{len(res.rows)} points ({res.resumed} resumed, {len(failed)} failed, {oom} out of memory); wrote "
          + ", ".join(str(f) for f in res.files))
    for msg, n in Counter(failed).most_common(3):
        print(f"  failed {n}x: {msg}", file=sys.stderr)
    if failed:
        return EXIT_ERROR
    return EXIT_OOM if oom else EXIT_OK


def register(subparsers) -> None:
    rep = subparsers.add_parser("report", help="reports: memory budget (Table 8 for any combination)")
    rsub = rep.add_subparsers(dest="report_command", metavar="REPORT")
    m = rsub.add_parser("memory", help="peak RAM, breakdown and headroom per device x preset x quant x policy")
    m.add_argument("--devices", nargs="+", default=["pixel_5a", "pixel_8a", "galaxy_s23"], metavar="DEVICE",
                   help="devices from the catalog (default: pixel_5a pixel_8a galaxy_s23)")
    m.add_argument("--preset", nargs="+", default=["paper"], choices=PRESETS, help="model presets (default: paper)")
    m.add_argument("--quant", nargs="+", default=["torchao-int8"], choices=BACKENDS,
                   help="backends (default: torchao-int8)")
    m.add_argument("--policies", nargs="+", default=list(MAIN_POLICIES), choices=POLICIES,
                   help="policies (default: reload reuse-serial reuse-parallel)")
    m.add_argument("--task", default="assembly", choices=TASKS, help="a bundled pipeline (default: assembly)")
    m.add_argument("--pipeline", metavar="FILE", help="a pipeline file of one's own instead (its profile: --profile)")
    m.add_argument("--clips", type=positive_int, default=5, help="clips in the workload (default 5)")
    m.add_argument("--profile", nargs="+", metavar="FILE", help="profiles to use (default: profiles/<preset>-<device>.json)")
    m.add_argument("--out", required=True, metavar="DIR", help="output directory (tables and plots)")
    m.add_argument("--allow-device-mismatch", action="store_true",
                   help="use a profile of another device than a row's (each such row then says so)")
    m.set_defaults(func=_cmd_memory)
    rep.set_defaults(func=lambda a: (rep.print_help(), 1)[1])

    s = subparsers.add_parser("sweep", help="run a study (a grid over scenario fields): table and plots")
    s.add_argument("study", metavar="STUDY", help="study YAML (scenarios/studies/*.yaml)")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="output directory: points.csv, points.parquet, plots (a rerun resumes from it)")
    s.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    s.add_argument("--dask", default=None, metavar="ADDRESS", help="run on a Dask cluster ('local': a LocalCluster)")
    s.add_argument("--chunk-size", type=positive_int, default=None, help="points per task (default: automatic)")
    s.add_argument("--allow-device-mismatch", action="store_true",
                   help="run even where a point's profile is of another device than the point's, or measured "
                   "under emulation (the screen then says so)")
    add_output_options(s)
    s.set_defaults(func=lambda a: _cmd_sweep(_with_workers(a)))


def _with_workers(args):
    if args.workers is None:
        import os
        args.workers = os.cpu_count() or 1
    return args
