"""Load time from disk and op latency of every module of a preset (default small), every backend.

    python benchmarks/modules.py [--preset small] [--quant Q ...] [--repeat 5] [--warmup 1]
                                 [--threads 1 2] [--store DIR]
    python benchmarks/modules.py --quant fp32 --quant executorch-xnnpack --quant executorch-xnnpack-int8

Builds what is missing first (not timed). Load: median of `--loads` loads (the file is in the
page cache after the first: warm load). Ops: median of `--repeat` runs after `--warmup`, shapes
from `Module.example_inputs` (encode: 6 frames 224x224; caption: beam 4, 23 tokens; embed: 5
texts; generate: --gen-tokens new tokens after a --prompt-tokens prompt), at each thread count.
ExecuTorch backends run through the same loop: `models.load` returns their program module
(load: file read and load_method; its ops call the program, XNNPACK's pool at torch's thread count).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--model", action="append")
    ap.add_argument("--quant", action="append")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--store", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore")
    from atomsim.process import pin_measurement_process, quiet_import_noise
    pin_measurement_process()   # as the profiler's workers and the runner are, before torch
    quiet_import_noise()
    import torch
    from atomsim import models

    from atomsim.errors import ModelStoreError
    quants = args.quant or list(models.BACKENDS)
    mods = args.model or list(models.MODELS)
    not_built = {}
    for m in mods:
        for q in quants:
            try:
                models.build(args.preset, m, q, store=args.store)
            except ModelStoreError as e:   # an ExecuTorch export these versions cannot do (the error says what fails)
                not_built[f"{m}/{q}"] = str(e)
    rows = []
    print(f"preset {args.preset}, torch {torch.__version__}, cpu count {os.cpu_count()}, "
          f"repeat {args.repeat} after {args.warmup} warm-up", flush=True)
    hdr = f"{'module':36s} {'MB':>7s} {'load s':>7s} {'op':9s} " + " ".join(f"{f'{t} thr s':>9s}" for t in args.threads)
    print(hdr, flush=True)
    for q in quants:
        for m in mods:
            if f"{m}/{q}" in not_built:
                print(f"{m + '/' + q:36s} not exported: {not_built[f'{m}/{q}'][:160]}", flush=True)
                continue
            size = sum(f.stat().st_size for f in models.weight_files(args.preset, m, q, store=args.store))
            loads = []
            for _ in range(args.loads):
                t0 = time.perf_counter()
                mod = models.load(args.preset, m, q, store=args.store)
                loads.append(time.perf_counter() - t0)
                if len(loads) < args.loads:
                    mod.free()
            load_s = statistics.median(loads)
            for op in models.OPS[m]:
                inp = mod.example_inputs(op, prompt_tokens=args.prompt_tokens, tokens=args.gen_tokens) \
                    if op == "generate" else mod.example_inputs(op)
                fn = getattr(mod, op)
                lat = []
                for t in args.threads:
                    torch.set_num_threads(t)
                    for _ in range(args.warmup):
                        fn(*inp)
                    xs = []
                    for _ in range(args.repeat):
                        t0 = time.perf_counter()
                        fn(*inp)
                        xs.append(time.perf_counter() - t0)
                    lat.append(statistics.median(xs))
                line = (f"{m + '/' + q:36s} {size / 1e6:7.1f} {load_s:7.3f} {op:9s} "
                        + " ".join(f"{x:9.3f}" for x in lat))
                rows.append(line)
                print(line, flush=True)
            mod.free()
    return 0


if __name__ == "__main__":
    sys.exit(main())
