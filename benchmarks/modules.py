"""Load time from disk and op latency of every module of a preset (default small), every backend.

    python benchmarks/modules.py [--preset small] [--quant Q ...] [--repeat 5] [--warmup 1]
                                 [--threads 1 2] [--store DIR]
    python benchmarks/modules.py --quant fp32 --quant executorch-xnnpack --quant executorch-xnnpack-int8

Builds what is missing first (not timed). Load: median of `--loads` loads (the file is in the
page cache after the first: warm load). Ops: median of `--repeat` runs after `--warmup`, shapes
from `Module.example_inputs` (encode: 6 frames 224x224; caption: beam 4, 23 tokens; embed: 5
texts; generate: --gen-tokens new tokens after a --prompt-tokens prompt), at each thread count.
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
    import torch
    from atomsim import models

    from atomsim.models.executorch_backend import BACKENDS as ET_BACKENDS
    quants = args.quant or list(models.BACKENDS)
    et_quants = [q for q in quants if q in ET_BACKENDS]
    quants = [q for q in quants if q not in ET_BACKENDS]
    mods = args.model or list(models.MODELS)
    for m in mods:
        for q in quants + (["fp32"] if et_quants else []):
            models.build(args.preset, m, q, store=args.store)
    rows = []
    print(f"preset {args.preset}, torch {torch.__version__}, cpu count {os.cpu_count()}, "
          f"repeat {args.repeat} after {args.warmup} warm-up", flush=True)
    hdr = f"{'module':36s} {'MB':>7s} {'load s':>7s} {'op':9s} " + " ".join(f"{f'{t} thr s':>9s}" for t in args.threads)
    print(hdr, flush=True)
    for q in quants:
        for m in mods:
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
    for q in et_quants:
        et_rows(args, q, mods)
    return 0


def et_rows(args, quant, mods):
    """ExecuTorch rows: programs exported (not timed) into <store>/<preset>/executorch/<quant>/;
    load = executorch.runtime load_program + load_method (file in the page cache: warm); ops run
    through the program at each thread count of XNNPACK's pool (decoder: --prompt-tokens prefill
    embeddings, then --gen-tokens greedy decode steps, as executorch_backend.greedy)."""
    from pathlib import Path
    from atomsim import models
    from atomsim.models import executorch_backend as eb
    out = models.default_store() if args.store is None else Path(args.store)
    out = out / args.preset / "executorch" / quant
    for m in mods:
        pte = out / f"{m}.pte"
        if not pte.exists():
            try:
                eb.export_module(args.preset, m, quant, out, store=args.store)
            except Exception as e:   # bert-decoder; the int8 decoder (see executorch_backend)
                print(f"{m + '/' + quant:36s} not exported: {str(e)[:160]}", flush=True)
                continue
        loads = []
        for _ in range(args.loads):
            t0 = time.perf_counter()
            method = eb.load_program(pte)
            loads.append(time.perf_counter() - t0)
        fp = models.load(args.preset, m, "fp32", store=args.store)
        op, call = _et_call(m, fp, method, args)
        lat = []
        for t in args.threads:
            eb.set_threads(t)
            for _ in range(args.warmup):
                call()
            xs = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                call()
                xs.append(time.perf_counter() - t0)
            lat.append(statistics.median(xs))
        print(f"{m + '/' + quant:36s} {pte.stat().st_size / 1e6:7.1f} {statistics.median(loads):7.3f} {op:9s} "
              + " ".join(f"{x:9.3f}" for x in lat), flush=True)
        fp.free()


def _et_call(model, fp, method, args):
    import torch
    from atomsim.models import executorch_backend as eb
    if model == "video-encoder":
        frames = fp.example_inputs("encode")[0]
        return "encode", lambda: eb.run(method, frames)
    if model == "sentence-encoder":
        enc = fp.tokenizer(fp.example_inputs("embed")[0], padding="max_length", truncation=True,
                           max_length=eb.SENTENCE_TOKENS, return_tensors="pt")
        return "embed", lambda: eb.run(method, enc["input_ids"], enc["attention_mask"])
    emb = fp.net.lm.model.embed_tokens.weight.detach()
    prefix = emb[torch.arange(args.prompt_tokens) % emb.shape[0]].unsqueeze(0)
    return "generate", lambda: eb.greedy(method, emb, prefix, args.gen_tokens)


if __name__ == "__main__":
    sys.exit(main())
