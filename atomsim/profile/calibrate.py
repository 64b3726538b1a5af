"""`atomsim calibrate --out CAL`: reference kernels measured in seconds, into a profile fragment.

    atomsim calibrate --out cal.json                 # 5-20 s here; --quick: smaller shapes, fewer samples
    atomsim calibrate --out cal.json --device-entry  # also print a catalog entry (devices.yaml) for it
    atomsim profile project --from host.json --source-calibration host-cal.json --calibrate cal.json --to DEVICE --out p.json

The fragment is a profile (`source: measured`, the device fingerprint) with one module,
`reference-kernels/fp32`, whose figures `atomsim profile project --calibrate` fits factors from:
- ops `gemm.<encoder>`: compute-bound fp32 GEMM at the zoo's encoders' shapes (the paper preset's
  CLIP ViT-L/14 MLP over 6 frames of 257 tokens; MiniLM's over 5 texts of 23 tokens),
- ops `gemv.<decoder>`: memory-bound GEMV at the decoders' shapes (Llama-3.2-1B's MLP up
  projection, one token; the BERT decoder's, beam 4), a weight matrix larger than the caches,
- load: `cold_s` a read of a scratch file after posix_fadvise(DONTNEED) (atomsim.pagecache.evict),
  `warm_s` the same read from the page cache; `file_bytes` its size,
each at 1 thread and at all cores (torch.set_num_threads), warm-ups apart from samples.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import datetime, timezone

from ..errors import ConfigError

KERNELS = "reference-kernels"
# name: (rows m, inner k, outputs n) of x[m, k] @ w[n, k].T; quick: (m, k, n) smaller
GEMM = {"gemm.video-encoder": ((6 * 257, 1024, 4096), (257, 1024, 4096)),
        "gemm.sentence-encoder": ((5 * 23, 384, 1536), (5 * 23, 384, 1536))}
GEMV = {"gemv.decoder": ((1, 2048, 8192), (1, 2048, 4096)),
        "gemv.bert-decoder": ((4, 1024, 4096), (4, 1024, 4096))}


def _time_calls(fn, samples: int, warmups: int = 1) -> tuple[list, list]:
    warm, xs = [], []
    for i in range(warmups + samples):
        t0 = time.perf_counter()
        fn()
        (warm if i < warmups else xs).append(time.perf_counter() - t0)
    return xs, warm


def kernel_ops(threads: list[int], quick: bool, samples: int) -> dict:
    """{op name: Op dict} of the GEMM and GEMV kernels, timed at each thread count."""
    import torch
    from ..schema.profile import Stat
    torch.manual_seed(0)
    ops = {}
    before = torch.get_num_threads()
    try:
        for name, shapes in {**GEMM, **GEMV}.items():
            m, k, n = shapes[1 if quick else 0]
            x, w = torch.randn(m, k), torch.randn(n, k)
            reps = 8 if name.startswith("gemv") else 1    # a GEMV takes milliseconds: time 8 in a row
            lat = {}
            for t in threads:
                torch.set_num_threads(t)
                xs, warm = _time_calls(lambda: [torch.nn.functional.linear(x, w) for _ in range(reps)], samples)
                lat[str(t)] = Stat.of([v / reps for v in xs], [v / reps for v in warm]).model_dump()
            ops[name] = {"latency_s": lat, "activation_peak_bytes": 0, "input_bytes": x.numel() * 4,
                         "shape": {"m": m, "k": k, "n": n, "flops": 2 * m * k * n, "weight_bytes": n * k * 4}}
    finally:
        torch.set_num_threads(before)
    return ops


def storage_reads(directory, size: int, samples: int) -> dict:
    """Cold (evicted) and warm (page cache) sequential reads of a scratch file of `size` bytes."""
    from .. import pagecache
    from ..schema.profile import Stat
    cold, warm, evicted = [], [], []
    with pagecache.scratch_file(directory, size, ".atomsim-calibrate-", os.urandom(1 << 20) * 4) as (name, real):
        for _ in range(samples):
            evicted.append(pagecache.evict_checked([name])["evicted"])
            t0 = time.perf_counter()
            pagecache.touch([name])
            cold.append(time.perf_counter() - t0)
            xs, _ = _time_calls(lambda: pagecache.touch([name]), 1)
            warm.extend(xs)
    return {"bytes": real, "cold_s": Stat.of(cold).model_dump(), "warm_s": Stat.of(warm).model_dump(),
            "evicted": None if None in evicted else all(evicted)}


def calibrate(directory=None, quick: bool = False, threads: list[int] | None = None, name: str | None = None):
    """The calibration fragment (a Profile) of this device; `directory` holds the scratch file."""
    import torch
    from . import fingerprint
    from ..schema.profile import Profile
    t0 = time.perf_counter()
    cores = os.cpu_count() or 1
    threads = sorted(set(threads or [1, cores]))
    if any(t < 1 for t in threads):
        raise ConfigError(f"--threads: thread counts must be at least 1, got {threads}")
    samples = 3 if quick else 5
    ops = kernel_ops(threads, quick, samples)
    io = storage_reads(directory or tempfile.gettempdir(), (32 if quick else 256) << 20, 2 if quick else 3)
    dev = {**fingerprint.fingerprint({"torch": torch.__version__, "num_threads": torch.get_num_threads()}),
           "name": name}
    module = {"model": KERNELS, "quant": "fp32", "file_bytes": io["bytes"], "resident_bytes": 0,
              "load": {"cold_s": io["cold_s"], "warm_s": io["warm_s"], "cold_evicted": io["evicted"],
                       "bytes_read": io["bytes"]}, "ops": ops}
    return Profile.model_validate({
        "version": 1, "source": "measured", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "preset": None, "device": dev, "method": METHOD, "baseline_rss_bytes": 0,
        "storage_read_bytes_per_s": io["bytes"] / io["cold_s"]["median"], "modules": {f"{KERNELS}/fp32": module},
        "calibrate_seconds": round(time.perf_counter() - t0, 2), "quick": quick})


METHOD = {
    "calibration": "atomsim calibrate: reference kernels (atomsim/profile/calibrate.py), not modules",
    "ops": "gemm.*: fp32 torch.nn.functional.linear at the encoders' shapes (compute-bound); gemv.*: at the "
           "decoders' shapes (memory-bound, 8 calls per sample); 1 warm-up, then samples, at each thread count",
    "load.cold_s": "sequential read of a scratch file after posix_fadvise(DONTNEED) (cold_evicted: mincore check)",
    "load.warm_s": "the same read from the page cache, right after the cold read",
}


def device_entry(cal, name: str) -> dict:
    """A catalog entry (scenarios/devices.yaml `devices.<name>`) derived from a calibration fragment."""
    from ..schema.scenario import Device
    key = f"{KERNELS}/fp32"
    if key not in cal.modules:
        raise ConfigError(f"calibration: field 'modules': lacks {key!r} (not an `atomsim calibrate` output)")
    mod, dev = cal.modules[key], cal.device or {}
    gemm, gemv = mod.ops["gemm.video-encoder"], mod.ops["gemv.decoder"]
    top = max(gemm.threads())
    entry = {
        "soc": dev.get("cpu_model") or "unknown (from atomsim calibrate)",
        "cores": int(dev.get("cores") or top),
        "ram_gb": round((dev.get("ram_total_bytes") or 0) / 1e9, 1),
        "storage_read_mb_s": round(mod.file_bytes / mod.load.cold_s.median / 1e6),
        "page_cache_read_bytes_per_s": float(f"{mod.file_bytes / mod.load.warm_s.median:.3g}"),
        "memory_bandwidth_bytes_per_s": float(f"{gemv.shape['weight_bytes'] / gemv.latency(top):.3g}"),
        "compute_gflops": round(gemm.shape["flops"] / gemm.latency(top) / 1e9, 1),
    }
    Device.model_validate({"name": name, **entry})   # what the catalog will accept
    return entry


def entry_text(cal, name: str) -> str:
    import yaml
    head = (f"# {name}: from atomsim calibrate, {cal.created}; fp32 GEMM/GEMV at {max(cal.modules[KERNELS + '/fp32'].ops['gemm.video-encoder'].threads())} "
            "threads, a scratch-file read (evicted / cached); cpu_w, dram_w: catalog defaults (2.0, 0.2 W)\n")
    body = yaml.safe_dump({name: device_entry(cal, name)}, sort_keys=False, width=200)
    return head + "".join("  " + line + "\n" for line in body.splitlines())


def _threads(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--threads: expected a comma-separated list like 1,4, got {s!r}") from None


def run_calibrate(args) -> int:
    from ..io import atomic_write_text, check_writable_file
    from ..schema.profile import save_profile
    check_writable_file(args.out)
    if args.device_entry not in (None, "-"):
        check_writable_file(args.device_entry)
    cal = calibrate(args.dir, quick=args.quick, threads=_threads(args.threads) if args.threads else None, name=args.name)
    save_profile(cal, args.out)
    print(f"wrote {args.out} ({len(cal.modules[KERNELS + '/fp32'].ops)} kernels, {cal.calibrate_seconds:.1f} s)",
          file=sys.stderr if args.device_entry == "-" else sys.stdout)
    if args.device_entry is not None:
        text = entry_text(cal, args.name)
        if args.device_entry == "-":
            sys.stdout.write(text)
        else:
            atomic_write_text(args.device_entry, text)
            print(f"wrote {args.device_entry} (paste under `devices:` in scenarios/devices.yaml)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="reference kernels in seconds: a profile fragment for projection",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, metavar="CAL", help="calibration fragment (profile JSON)")
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer samples, a 32 MiB read")
    p.add_argument("--threads", default=None, metavar="1,N", help="thread counts (default 1 and all cores)")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help="where the scratch file of the storage read goes (default the temp dir; use the storage "
                        "the models load from)")
    p.add_argument("--name", default="this-device", help="device name in the fragment and the catalog entry")
    p.add_argument("--device-entry", nargs="?", const="-", default=None, metavar="FILE",
                   help="also print (or write FILE) a device entry for the catalog (scenarios/devices.yaml)")
    p.set_defaults(func=run_calibrate)
