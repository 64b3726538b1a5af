"""`atomsim models list|build|export|checkpoint`. Imports nothing heavy at import time."""
from __future__ import annotations

import sys

from ..args import add_output_options, show_progress
from ..schema.names import BACKENDS, EXECUTORCH_BACKENDS, MODELS, PRESETS


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list and build the module zoo (model store); make user-style checkpoints")
    sub = p.add_subparsers(dest="models_command", metavar="{list,build,export,checkpoint}")
    ls = sub.add_parser("list", help="presets, modules, parameter counts and bytes on disk per backend")
    ls.add_argument("--preset", action="append", help=f"preset: {', '.join(PRESETS)} (repeatable; default: all)")
    ls.add_argument("--store", default=None, help="model store (default $ATOMSIM_STORE or ~/.cache/atomsim/store)")
    ls.set_defaults(func=cmd_list)
    b = sub.add_parser("build", help="build synthetic (seeded) weights, quantized, into the store")
    b.add_argument("--preset", required=True, help=" | ".join(PRESETS))
    b.add_argument("--model", action="append", help=f"model: {', '.join(MODELS)} (repeatable; default: all)")
    b.add_argument("--quant", action="append",
                   help=f"backend: {', '.join(BACKENDS + EXECUTORCH_BACKENDS)} (repeatable; default: the torch "
                   f"backends, {', '.join(BACKENDS)})")
    b.add_argument("--store", default=None, help="model store (default $ATOMSIM_STORE or ~/.cache/atomsim/store)")
    b.add_argument("--force", action="store_true", help="rebuild even if present")
    add_output_options(b)
    b.set_defaults(func=cmd_build)
    e = sub.add_parser("export", help="export modules as ExecuTorch programs (.pte, XNNPACK) to copy to a phone")
    e.add_argument("--format", default="pte", choices=("pte",))
    e.add_argument("--preset", required=True, help=" | ".join(PRESETS))
    e.add_argument("--model", action="append", help=f"model: {', '.join(MODELS)} (repeatable; default: all)")
    e.add_argument("--quant", default="executorch-xnnpack", help=" | ".join(EXECUTORCH_BACKENDS))
    e.add_argument("--store", default=None, help="model store (default $ATOMSIM_STORE or ~/.cache/atomsim/store)")
    e.add_argument("--out", required=True, help="directory for <model>.pte and manifest.json")
    e.set_defaults(func=cmd_export)
    c = sub.add_parser("checkpoint", help="make a user-style Hugging Face checkpoint directory (random weights, "
                       "real architecture, its own tokenizer; no hub)",
                       description="Write a checkpoint directory with save_pretrained: random weights of a real "
                       "transformers architecture of KIND and a tokenizer trained here (for a pipeline's `hf` "
                       "modules, e.g. scenarios/user/).")
    c.add_argument("kind", help="vision-encoder | vision2seq | causal-lm | seq2seq-lm | text-encoder")
    c.add_argument("out", help="directory to write (replaced as a unit)")
    c.add_argument("--size", default="tiny", choices=("tiny", "small"),
                   help="tiny (0.1-0.4M parameters, tests) | small (11-26M parameters)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    c.set_defaults(func=cmd_checkpoint)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def cmd_checkpoint(args) -> int:
    from ..errors import ConfigError
    from .hf import KINDS, describe
    from .hf_make import make_checkpoint
    if args.kind not in KINDS:
        raise ConfigError(f"kind {args.kind!r}: unknown; valid: {', '.join(KINDS)}")
    out = make_checkpoint(args.kind, args.out, size=args.size, seed=args.seed)
    d = describe(out, args.kind)
    sys.stdout.write(f"{out}: {args.kind}, {d.get('architecture', '?')}, {d.get('params', 0) / 1e6:.1f}M parameters\n")
    return 0


def _mb(n) -> str:
    return f"{n / 1e6:,.1f}"


# an ExecuTorch program's size is estimated as its weights' (exported from fp32; XNNPACK's int8 as torchao's)
PROGRAM_ESTIMATE = {"executorch-xnnpack": "fp32", "executorch-xnnpack-int8": "torchao-int8"}
NEEDS_EXTRA = "needs the executorch extra"


def _has_executorch() -> bool:
    try:
        import executorch  # noqa: F401
    except ImportError:
        return False
    return True


def _size_cell(pr, m, q, root, estimate: int, can_build: bool = True) -> str:
    """Bytes on disk of a built module (every weight file it reads), else the estimate (or why it cannot be built)."""
    from . import store as st
    files = st.weight_files(pr, m, q, root)
    if files[0].exists() and (files[0].parent / "atomsim.json").exists():
        return _mb(sum(f.stat().st_size for f in files if f.exists())) + " (built)"
    return "~" + _mb(estimate) if can_build else NEEDS_EXTRA


def _table(head, rows) -> str:
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in [head] + rows)


def cmd_list(args) -> int:
    """Two tables: the torch backends, then the ExecuTorch programs (`models build --quant` takes all)."""
    from .specs import BACKENDS, EXECUTORCH_BACKENDS, MODELS, PRESETS, check, default_store
    presets = args.preset or list(PRESETS)
    for pr in presets:
        check(preset=pr)
    from pathlib import Path
    from . import spec
    root = Path(args.store) if args.store else default_store()
    et = _has_executorch()
    rows, et_rows = [], []
    for pr in presets:
        for m in MODELS:
            s = spec(pr, m)
            rows.append([pr, m, f"{s.params / 1e6:,.1f}M"] + [_size_cell(pr, m, q, root, s.param_bytes[q])
                                                             for q in BACKENDS])
            et_rows.append([pr, m] + [_size_cell(pr, m, q, root, s.param_bytes[PROGRAM_ESTIMATE[q]], et)
                                      for q in EXECUTORCH_BACKENDS])
    out = sys.stdout
    out.write(_table(["preset", "model", "params"] + [f"{q} MB" for q in BACKENDS], rows))
    out.write("\nExecuTorch programs (XNNPACK, exported from the fp32 weights by `models build --quant Q`):\n")
    out.write(_table(["preset", "model"] + [f"{q} MB" for q in EXECUTORCH_BACKENDS], et_rows))
    extra = "" if et else f"; {NEEDS_EXTRA}: pip install -e '.[executorch]'"
    out.write(f"store: {root}   (~ = estimated from shapes and dtypes; (built) = file size on disk{extra})\n")
    return 0


def cmd_build(args) -> int:
    from .specs import BACKENDS, MODELS, check, default_store
    check(preset=args.preset)
    models = args.model or list(MODELS)
    quants = args.quant or list(BACKENDS)
    for m in models:
        check(model=m)
    for q in quants:
        check(quant=q)
    from pathlib import Path
    from tqdm import tqdm
    from . import store as st
    root = st.check_writable(Path(args.store) if args.store else default_store())
    jobs = [(m, q) for m in models for q in quants]
    with tqdm(total=len(jobs), desc=f"build {args.preset}", unit="module", file=sys.stderr,
              disable=not show_progress(args)) as bar:   # a bar only on a terminal
        for m, q in jobs:
            bar.set_postfix_str(f"{m}/{q}")
            st.build(args.preset, m, q, store=root, force=args.force,
                     progress=lambda msg: bar.set_postfix_str(msg))
            bar.update(1)
    sys.stdout.write(f"built {len(jobs)} module(s) of preset {args.preset} in {root}\n")
    return 0


def cmd_export(args) -> int:
    from .executorch_backend import check_backend, export
    from .specs import check
    check(preset=args.preset)
    check_backend(args.quant)
    for m in args.model or []:
        check(model=m)
    models = args.model or None
    manifest = export(args.preset, args.quant, args.out, models=models, store=args.store)
    for prog in manifest["programs"]:
        sys.stdout.write(f"{prog['program']}: {prog['bytes'] / 1e6:.1f} MB (exported in {prog['export_s']:.0f} s, "
                         f"kept in the model store)\n")
    for m, why in manifest["not_exported"].items():
        sys.stdout.write(f"{m}: {why}\n")
    sys.stdout.write(f"wrote {args.out}/manifest.json\n")
    return 0
