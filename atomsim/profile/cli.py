"""`atomsim profile` (measure), `atomsim profile show FILE`, `atomsim profile compare A B`, and
`atomsim profile project ...` when atomsim.report.project is present. No torch at import time."""
from __future__ import annotations

import importlib
import shlex
import sys

from ..args import add_output_options, positive_int, positive_ints, show_progress
from ..errors import ConfigError
from ..schema.names import BACKENDS, EXECUTORCH_BACKENDS, MODELS, PRESETS


def register(subparsers) -> None:
    p = subparsers.add_parser("profile", help="measure load, op and memory costs of a preset's or a pipeline's modules "
                              "on this device",
                              description="Measure every module of a preset under each backend into a profile "
                              "(JSON). Subcommands: show FILE, compare A B, export FILE --pyperf OUT, import FILE ..." + (", project ..." if _project() else "") + ".")
    p.add_argument("--preset", help=f"{' | '.join(PRESETS)} (the zoo's modules; with --pipeline default small)")
    p.add_argument("--pipeline", metavar="FILE", help="measure the modules a pipeline names (a bundled name or a "
                   "file): its own checkpoints and zoo modules, each op at its stages' shapes")
    p.add_argument("--model", action="append", dest="models", metavar="M",
                   help=f"module to profile: {', '.join(MODELS)}, or a pipeline's module (repeat; default all)")
    p.add_argument("--quant", action="append", dest="quants", metavar="Q",
                   help=f"backend: {', '.join(BACKENDS + EXECUTORCH_BACKENDS)} (repeat, or 'all'; default fp32)")
    p.add_argument("--threads", type=positive_ints, help="thread counts, e.g. 1,2 (default 1 and all cores)")
    p.add_argument("--samples", type=positive_int, help="samples per figure (default 5; 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="fewer samples and a smaller storage test")
    p.add_argument("--op-budget", type=float, default=None, metavar="S",
                   help="per op and thread count: stop sampling once 3 samples add up to S seconds "
                        "(default 30; 0: always take --samples)")
    p.add_argument("--store", help="model store directory (default $ATOMSIM_STORE or ~/.cache/atomsim/store)")
    p.add_argument("--frames", type=positive_int, help="frames per clip (encode; default 6)")
    p.add_argument("--frame-size", type=positive_int, help="frame side in pixels (default 224)")
    p.add_argument("--beam", type=positive_int, help="caption beam width (default 4)")
    p.add_argument("--tokens", type=positive_int, help="caption tokens (default 23)")
    p.add_argument("--script-tokens", type=positive_int, help="script tokens generated (default 64)")
    p.add_argument("--prompt-tokens", type=positive_int, help="script prompt length in tokens (default 128)")
    p.add_argument("--items", type=positive_int, help="texts per embed call (default 5)")
    p.add_argument("--corun-threads", type=positive_ints, default=[1, 1], help="threads of encoder,decoder in co-run (1,1)")
    p.add_argument("--storage-mb", type=positive_int, help="scratch file of the storage read test, MiB (256; 64 with --quick)")
    p.add_argument("--no-corun", action="store_true", help="skip the co-run slowdown")
    p.add_argument("--fresh", action="store_true", help="spawn a new interpreter per sample instead of forking")
    p.add_argument("--no-resume", action="store_true", help="ignore <out>.partial.json")
    p.add_argument("--out", help="output profile (JSON)")
    add_output_options(p)
    p.set_defaults(func=run_profile)
    sub = p.add_subparsers(dest="profile_command", metavar="{show,compare,export,import,programs" + (",project" if _project() else "") + "}")
    sub.required = False
    s = sub.add_parser("show", help="print a profile as a table")
    s.add_argument("file")
    s.set_defaults(func=run_show)
    c = sub.add_parser("compare", help="per-figure ratios of two profiles (B/A)")
    c.add_argument("a")
    c.add_argument("b")
    c.set_defaults(func=run_compare)
    e = sub.add_parser("export", help="write a profile's sample series for other tools (pyperf)")
    e.add_argument("file")
    e.add_argument("--pyperf", required=True, metavar="OUT",
                   help="pyperf JSON suite to write (python -m pyperf stats|hist|compare_to read it)")
    e.set_defaults(func=run_export)
    im = sub.add_parser("import", help="add a phone tool's measurements (ETDump, Minibench, AI Hub, llama-bench) to a profile")
    im.add_argument("file")
    im.add_argument("--format", required=True, choices=("etdump", "minibench", "aihub", "llama-bench"))
    im.add_argument("--as", required=True, dest="target", metavar="MODULE/BACKEND:OP",
                    help="what the file measured, e.g. video-encoder/executorch-xnnpack:encode")
    im.add_argument("--into", required=True, metavar="PROFILE", help="profile to add to (created if absent)")
    im.add_argument("--pipeline", metavar="FILE", help="a pipeline file whose own modules --as may name")
    im.add_argument("--device", help="the device's name (else what the file says)")
    im.add_argument("--threads", type=positive_int, help="threads of the run, where the file does not say (ETDump, Minibench, AI Hub)")
    im.add_argument("--program", metavar="PTE", help="etdump: the .pte it ran (the dump is checked against it)")
    im.set_defaults(func=run_import)
    pr = sub.add_parser("programs", help="measure exported ExecuTorch programs (atomsim models export) on this machine")
    pr.add_argument("dir", help="directory of <model>.pte and manifest.json")
    pr.add_argument("--into", required=True, metavar="PROFILE", help="profile to add to (created if absent)")
    pr.add_argument("--threads", type=positive_ints, default=[1], help="XNNPACK thread counts, e.g. 1,2 (default 1)")
    pr.add_argument("--runs", type=positive_int, default=5, help="executions per thread count (default 5)")
    pr.add_argument("--loads", type=positive_int, default=3, help="cold and warm loads each (default 3)")
    pr.add_argument("--device", help="device name recorded with each figure")
    pr.set_defaults(func=run_programs)
    proj = _project()
    if proj is not None:
        proj.register_project(sub)


def _project():
    try:
        mod = importlib.import_module("atomsim.report.project")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("atomsim"):
            return None
        raise
    return mod if hasattr(mod, "register_project") else None


def run_profile(args) -> int:
    from ..io import check_writable_file
    from ..models.specs import BACKENDS
    from .measure import OP_BUDGET_S, measure
    from .summary import partial_path
    pipeline = None
    if args.pipeline:
        from ..schema.pipeline import load_pipeline
        pipeline = load_pipeline(args.pipeline)
        args.preset = args.preset or "small"
    if not args.preset:
        raise ConfigError("atomsim profile needs --preset (tiny, small or paper) or --pipeline FILE, or a subcommand: "
                          "show FILE, compare A B")
    if not args.out:
        raise ConfigError("atomsim profile needs --out FILE (the profile JSON to write)")
    check_writable_file(args.out)   # before any measuring: a directory or an unwritable place fails now
    if not args.no_resume and partial_path(args.out).exists():
        print(f"resuming from {partial_path(args.out)} when its settings match these "
              "(--no-resume to start over)", file=sys.stderr)
    quants = args.quants
    if quants and "all" in quants:
        quants = list(BACKENDS)
    shape = {"frames": args.frames, "frame_size": args.frame_size, "beam": args.beam, "tokens": args.tokens,
             "script_tokens": args.script_tokens, "prompt_tokens": args.prompt_tokens, "items": args.items}
    if len(args.corun_threads) != 2:
        raise ConfigError(f"--corun-threads takes two counts like 1,1, got {args.corun_threads}")
    progress, close = progress_bar(show_progress(args))   # a redirected stderr gets no carriage returns
    try:
        prof = measure(args.preset, models=args.models, quants=quants, threads=args.threads, samples=args.samples,
                       quick=args.quick, store=args.store, shape=shape, out=args.out, progress=progress,
                       fresh=args.fresh, corun=not args.no_corun, corun_threads=tuple(args.corun_threads),
                       resume=not args.no_resume,
                       op_budget_s=OP_BUDGET_S if args.op_budget is None else args.op_budget,
                       storage_bytes=None if args.storage_mb is None else args.storage_mb << 20, pipeline=pipeline,
                       command="atomsim " + shlex.join(args.argv) if getattr(args, "argv", None) else None)
    finally:
        close()
    for w in prof.warnings:
        print(f"WARNING: unstable: {w}", file=sys.stderr)
    if prof.warnings:
        print(unstable_advice(len(prof.warnings), args), file=sys.stderr)
    print(f"wrote {args.out} ({len(prof.modules)} modules, {prof.profile_seconds:.0f} s)")
    return 0


def progress_bar(shown: bool):
    """(progress(done, total, description), close()) for the profiler: a bar on stderr when `shown`
    (a terminal), nothing otherwise."""
    state = {"bar": None}

    def progress(done, total, desc):
        if not shown:
            return
        if state["bar"] is None:
            from tqdm import tqdm
            state["bar"] = tqdm(total=total, unit="job", file=sys.stderr, dynamic_ncols=True)
        bar = state["bar"]
        bar.total, bar.n = total, done
        bar.set_description(desc[:48])
        bar.refresh()

    def close():
        if state["bar"] is not None:
            state["bar"].close()
    return progress, close


def unstable_advice(n: int, args) -> str:
    """What to do about unstable figures (standard deviation over 10% of the mean, pyperf's rule)."""
    more = max(2 * (args.samples or (3 if args.quick else 5)), 10)
    return (f"{n} figure(s) unstable (standard deviation over 10% of the mean; marked ! in `atomsim profile show "
            f"{args.out}`): the machine was busy or its speed drifted. Simulated times from them carry that spread; "
            f"to narrow it, stop other work on this machine and measure again with more samples (--samples {more}"
            + (", without --quick" if args.quick else "") + "), or compare two profiles with `atomsim profile compare`")


def run_show(args) -> int:
    from ..schema.profile import load_profile
    from .show import format_profile
    sys.stdout.write(format_profile(load_profile(args.file)))
    return 0


def run_compare(args) -> int:
    from ..schema.profile import load_profile
    from .show import compare
    sys.stdout.write(compare(load_profile(args.a), load_profile(args.b), args.a, args.b))
    return 0


def run_export(args) -> int:
    from ..schema.profile import load_profile
    from .pyperf_io import export_pyperf
    n, left_out = export_pyperf(load_profile(args.file), args.pyperf)
    extra = f"; left out (empty, or <= 0, which pyperf refuses): {', '.join(left_out)}" if left_out else ""
    print(f"wrote {args.pyperf} ({n} pyperf benchmarks{extra})")
    return 0


def run_import(args) -> int:
    from .imports import import_file
    from ..schema.pipeline import load_pipeline
    pipeline = load_pipeline(args.pipeline) if args.pipeline else None
    _, written, lacking = import_file(args.file, args.format, args.target, args.into, device=args.device,
                                      threads=args.threads, program=args.program, pipeline=pipeline)
    print(f"imported {', '.join(written)} of {args.target.partition(':')[0]} from {args.file} into {args.into}")
    if lacking:
        print(f"not in the {args.format} file (left empty): {', '.join(lacking)}")
    return 0


def run_programs(args) -> int:
    from .executorch_profile import profile_programs
    done = profile_programs(args.dir, args.into, threads=args.threads, runs=args.runs, n_loads=args.loads,
                            device=args.device)
    for model, what in done.items():
        print(f"{model}: {what}")
    print(f"wrote {args.into}")
    return 0
