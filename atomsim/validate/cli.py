"""`atomsim validate SCENARIO... --profile FILE --videos PATH... --out DIR`."""
from __future__ import annotations

import argparse

from ..args import add_output_options


def register(sub) -> None:
    p = sub.add_parser("validate", help="prove the simulator against real runs (fidelity report)",
                       description="For each scenario: run it for real, simulate the same plan with the "
                       "profile, and compare end-to-end time, stage times, peak memory and the reduction "
                       "of reuse against reload. Writes DIR/fidelity.json, DIR/fidelity.md and a picture per scenario.")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario YAML files (or directories of them)")
    p.add_argument("--profile", required=True, help="profile JSON measured on this machine (written, with --measure-profile)")
    p.add_argument("--measure-profile", action="store_true",
                   help="measure the profile now into --profile, its rounds between the rounds of real runs, so that "
                   "both see the same machine (preset, backends and thread counts from the scenarios; all modules)")
    p.add_argument("--profile-samples", type=int, default=5, metavar="N",
                   help="with --measure-profile: rounds (samples per figure) of the profile (default 5)")
    p.add_argument("--videos", nargs="+", required=True, metavar="PATH", help="video files to run on")
    p.add_argument("--store", default=None, help="model store directory (default: $ATOMSIM_STORE or the user cache)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="real runs per scenario, in interleaved rounds; each compared through its median run (default 1)")
    p.add_argument("--allow-profile-mismatch", action="store_true",
                   help="compare even when the profile is of another preset or lacks a scenario's module")
    p.add_argument("--allow-device-mismatch", action="store_true",
                   help="compare even with a profile of another device than a scenario's, or one measured under "
                   "emulation (fidelity.json, fidelity.md and the screen then say so)")
    p.add_argument("--ram-limit", default=None, metavar="SIZE",
                   help="every real run inside a memory cgroup of this size (as atomsim run --ram-limit; 'device': "
                   "each scenario device's RAM), simulated on a device with that RAM; the report adds both outcomes")
    add_output_options(p)
    p.set_defaults(func=_validate)


def _scenario_paths(items) -> list:
    from pathlib import Path

    from ..errors import ConfigError
    paths = []
    for item in items:
        p = Path(item)
        found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
        if not found:
            raise ConfigError(f"{p}: a directory with no scenario (*.yaml) in it")
        paths.extend(found)
    return paths


def _device_checks(args, profile, paths, scenarios) -> list[str]:
    """Each scenario's device against the profile (a profile measured now, with --measure-profile:
    this machine): ConfigError unless --allow-device-mismatch; the notes to mark the report with."""
    from ..schema.device_match import check_device, machine_mismatch
    notes = []
    for path, sc in zip(paths, scenarios):
        if profile is not None:
            note = check_device(profile, sc.device, args.allow_device_mismatch, args.profile, path)
        else:
            import platform

            from ..errors import ConfigError
            from ..profile.fingerprint import cpu_model, emulation
            why = machine_mismatch(sc.device, {"cpu_model": cpu_model(), "arch": platform.machine(),
                                               "hostname": platform.node(), "emulation": emulation()})
            note = None if why is None else f"the profile measured now on this machine does not describe device " \
                f"{sc.device.name} (scenario {path}): {why}"
            if note and not args.allow_device_mismatch:
                raise ConfigError(f"{note}; pass --allow-device-mismatch to compare anyway")
        if note:
            notes.append(note)
    return notes


def _validate(args: argparse.Namespace) -> int:
    from ..args import show_progress
    from ..io import check_writable_dir
    from ..schema.profile import load_profile
    from ..schema.scenario import load_scenario
    from .markdown import fidelity_table, reduction_table
    from .suite import validate_suite

    check_writable_dir(args.out)
    paths = _scenario_paths(args.scenarios)
    scenarios = [load_scenario(p) for p in paths]
    if args.ram_limit:   # bad sizes and a missing cgroup fail before any work
        from ..run.limit import MemoryCgroup, check_limit, parse_size
        for sc in scenarios:
            check_limit(parse_size(args.ram_limit, sc.device.ram_bytes), sc)
        MemoryCgroup.find_parent()
    if args.measure_profile:
        from ..io import check_writable_file
        from .suite import profile_request
        check_writable_file(args.profile)
        request = dict(profile_request(scenarios, args.profile_samples), out=args.profile, store=args.store)
        profile = None
    else:
        profile, request = load_profile(args.profile), None
        if not args.allow_profile_mismatch:   # another preset's profile would report nonsense errors
            from ..plan import make_plan
            from ..schema.profile import check_profile_fits
            for path, sc in zip(paths, scenarios):
                keys = {ref.key for ref in make_plan(sc, None, 1).instances.values()}
                check_profile_fits(profile, args.profile, sc.models.preset, keys, path)
    mismatches = _device_checks(args, profile, paths, scenarios)
    result = validate_suite(scenarios, profile, args.videos, args.out, store=args.store, profile_path=args.profile,
                            repeat=args.repeat, measure_profile=request, ram_limit=args.ram_limit,
                            progress=show_progress(args), device_mismatch=mismatches)
    from ..schema.device_match import FLAG
    print(f"profile {args.profile} ({result['profile_source']}"
          + (f": {result['profile_is']}" if result.get("profile_is") else "") + ")")
    for m in mismatches:
        print(f"WARNING ({FLAG}): {m}")
    print(fidelity_table(result))
    print()
    print(reduction_table(result))
    s = result["summary"]
    e, p = s["e2e_abs_error_pct"], s["peak_abs_error_pct"]
    if e["median"] is not None:
        print(f"\nend-to-end |error| median {e['median']:.1f}% max {e['max']:.1f}%; peak |error| max {p['max']:.1f}%")
    skipped = {r["name"]: r["skipped_videos"] for r in result["scenarios"] if r.get("skipped_videos")}
    if skipped:
        print("warning: videos skipped (unreadable; reasons in each run's results.json): "
              + ", ".join(f"{k} {v}" for k, v in skipped.items()))
    print(f"wrote {args.out}/fidelity.json and fidelity.md")
    return 0
