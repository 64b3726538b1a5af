"""`atomsim run SCENARIO --videos PATH... [--policy P] [--prompt TEXT] [--query TEXT ...] [--store DIR] --out DIR`.

No torch import at module import time.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..args import add_output_options, show_progress
from ..schema.names import POLICIES


def register(sub) -> None:
    p = sub.add_parser("run", help="run a scenario's pipeline for real on videos (real modules, measured trace)",
                       description="Execute the scenario's plan with real modules from the model store on real "
                       "videos; writes summary.json, trace.json, timeline.png, results.json (each request's named outputs) "
                       "and the video of an assemble stage (<out>.mp4).")
    p.add_argument("scenario", help="scenario YAML (e.g. scenarios/user/caption-search.yaml)")
    p.add_argument("--videos", nargs="+", required=True, metavar="PATH", help="input videos (any container/codec)")
    p.add_argument("--policy", default=None, choices=POLICIES, metavar="P",
                   help=f"one of {', '.join(POLICIES)} (default: the scenario's)")
    p.add_argument("--prompt", default=None, help="the request's prompt (the workload value `prompt`)")
    p.add_argument("--query", action="append", default=None, metavar="TEXT", help="a query (the workload value `queries`; repeatable)")
    p.add_argument("--store", default=None, help="model store (default: $ATOMSIM_STORE or ~/.cache/atomsim/store)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--ram-limit", default=None, metavar="SIZE",
                   help="run inside a memory cgroup of this size, swap off (1.5GB, 1500MB, 1.5GiB, bytes, or "
                   "'device': the scenario device's RAM); needs a writable cgroup (root). Out of memory: "
                   "summary.json says outcome oom-killed, exit status 3")
    add_output_options(p)
    p.add_argument("--events", default=None, help=argparse.SUPPRESS)   # the child's event log (limit.py)
    p.set_defaults(func=main)


def _short(text, n=48):
    text = (text or "").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def format_outputs(results) -> list[str]:
    """Each named output of the (last) request, as a user reads it."""
    lines = [f"pipeline {results['pipeline']}: prompt {results['prompt']!r}"]
    for name, v in results.get("outputs", {}).items():
        if isinstance(v, list) and v and isinstance(v[0], dict) and "ranked" in v[0]:
            for q in v:
                lines.append(f"{name}: {q['query']}")
                lines.append(f"  {'rank':>4}  {'score':>7}  {'video':<24} {'start':>7} {'end':>7}  text")
                for k, c in enumerate(q["ranked"], 1):
                    where = (f"{_short(c['video'].split('/')[-1], 24):<24} {c['start']:>7.2f} {c['end']:>7.2f}"
                             if "video" in c else f"{'item ' + str(c.get('item')):<40}")
                    lines.append(f"  {k:>4}  {c['score']:>7.4f}  {where}  {_short(c['text'])}")
        elif isinstance(v, list):
            lines.append(f"{name}: " + "; ".join(_short(c.get("text"), 40) for c in v[:5])
                         + (f" (and {len(v) - 5} more)" if len(v) > 5 else ""))
        elif isinstance(v, dict) and "chosen" in v:
            lines.append(f"{name}: {v['path']} ({v['order_source']} order, clips "
                         f"{', '.join(str(c['clip']) for c in v['chosen'])})")
        elif isinstance(v, dict) and "text" in v:
            lines.append(f"{name}: {_short(v['text'], 200)}")
        elif isinstance(v, dict) and "vectors" in v:
            lines.append(f"{name}: {v['texts']} vectors")
    return lines


def format_table(result) -> str:
    r, s = result.results, result.summary
    lines = format_outputs(r)
    for sk in r.get("skipped", []):
        lines.append(f"skipped: {sk['reason']}")
    lines.append("")
    lines.append(f"{'policy':<16}{'clips':>6}{'e2e s':>10}{'peak MB':>10}   stage totals (s)")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in s["stage_totals_s"].items())
    lines.append(f"{s['policy']:<16}{s['clips']:>6}{s['e2e_s']:>10.2f}{s['peak_bytes'] / 1e6:>10.1f}   {stages}")
    b = s["breakdown_bytes"]
    lines.append("peak breakdown MB: " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in b.items())
                 + f"  ({s['peak_method']}; memory sampled at {s['memory_sample_hz']} Hz)")
    return "\n".join(lines)


def main_limited(args) -> int:
    from ..errors import EXIT_OK, EXIT_OOM
    from ..schema.scenario import load_scenario
    from .limit import parse_size, run_limited
    sc = load_scenario(args.scenario)
    limit = parse_size(args.ram_limit, sc.device.ram_bytes)
    extra = [*(["--prompt", args.prompt] if args.prompt else []),
             *[a for q in (args.query or []) for a in ("--query", q)], *([] if show_progress(args) else ["--no-progress"]),
             *(["--verbose"] if args.verbose else [])]
    s = run_limited(args.scenario, args.videos, args.out, limit, policy=args.policy, store=args.store, extra_args=extra)
    peak = s.get("cgroup_peak_bytes")
    line = (f"ram limit {limit / 1e6:.0f} MB (cgroup v{s['cgroup_version']}): {s['outcome']}; cgroup peak "
            f"{'?' if peak is None else f'{peak / 1e6:.0f} MB'}, RSS peak {s.get('peak_bytes', 0) / 1e6:.0f} MB")
    if s["outcome"] == "oom-killed":
        line += f"; killed during {', '.join(s['killed_steps']) or 'start-up'} at {s['killed_at_s']} s"
        b = s.get("breakdown_bytes") or {}
        if any(b.values()):
            line += ("; its sampled peak before the kill: "
                     + ", ".join(f"{k.replace('_', ' ')} {v / 1e6:.0f}" for k, v in b.items()) + " MB")
    print(line, file=sys.stderr)
    return EXIT_OOM if s["outcome"] == "oom-killed" else EXIT_OK


def draw_timeline(result) -> None:
    """Draw `timeline.png` of a finished run into its out_dir and record it in summary.json's
    `timeline` field (the CLI's part: `run_scenario` imports nothing of atomsim.report)."""
    from ..io import atomic_write_json
    try:
        from ..report.timeline import plot_timeline
    except ImportError:
        result.summary["timeline"] = "not drawn: atomsim.report.timeline is not available"
    else:
        s = result.summary
        plot_timeline([result.trace], result.out_dir / "timeline.png",
                      titles=[f"{s['scenario']} / {s['policy']} (measured)"])
        s["timeline"] = "timeline.png"
    atomic_write_json(result.out_dir / "summary.json", result.summary)


def main(args) -> int:
    if args.ram_limit is not None:
        return main_limited(args)
    from . import run_scenario
    result = run_scenario(args.scenario, args.videos, policy=args.policy, out_dir=args.out, store=args.store,
                          queries=args.query, prompt=args.prompt, progress=show_progress(args), events=args.events)
    draw_timeline(result)
    print(format_table(result))
    print(f"wrote {args.out}/: summary.json trace.json results.json"
          + (" timeline.png" if result.summary.get("timeline") == "timeline.png" else "")
          + "".join(f" {Path(v['path']).name}" for v in result.results.get("outputs", {}).values()
                    if isinstance(v, dict) and v.get("path")), file=sys.stderr)
    return 0
