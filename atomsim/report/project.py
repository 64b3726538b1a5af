"""Device projection: scale a measured profile to another device (`atomsim profile project`).

    from atomsim.report.project import project_profile
    projected = project_profile(profile, "pixel_8a", method="roofline")   # source: projected

Only times change; bytes (weights, activations, inputs, baseline RSS) are properties of the models
and the runtime, kept as measured.

**roofline** (device catalog figures of the source and the target; the source is the profile's
`device.name` if it is in the catalog, else the catalog's `host` entry):
- an op's latency is split into a memory part and a compute part on the source:
  memory part = min(t, resident_bytes × passes / memory_bandwidth_src), passes = the op's
  `shape.tokens` (a decoder reads its weights once per generated token) or 1; compute part = rest.
  On the target: compute × gflops_src / gflops_dst + memory × bandwidth_src / bandwidth_dst.
- cold loads scale by storage read bandwidth (source: the profile's measured
  `storage_read_bytes_per_s` if present, else the catalog's), warm loads by page-cache bandwidth.

**ratio** (per-stage ratios between the paper's published profiles, profiles/paper-<device>.json):
for every (model, op) the published target time over the published reference time, applied to
every quantization of that model; loads likewise (cold and warm). The reference is the published
profile of the source's device when there is one (a phone you measured yourself); otherwise
`reference` (default `pixel_5a`, the paper's main device): the source's host figures are then
scaled by how much faster or slower the target is than the reference phone, which assumes
the host behaves like the reference: prefer roofline for host profiles, ratio between phones.
A (model, op) the published profiles lack falls back to the roofline factor (recorded in `method`).

**calibrated** (`--calibrate CAL`, a partial profile measured on the target: some modules, or the
reference kernels of `atomsim calibrate`): the target's factors fitted by kind of work (compute,
decode, warm load, storage part of cold loads) from the figures the source and CAL share
(atomsim.report.fit); `method.projection` records the fitted factors and, per projected figure,
the calibration figures it rests on. Kernel figures need the same kernels measured on the source
device (`--source-calibration`). **one-factor**: the naive baseline, one factor (the median
target / source ratio of every shared figure) for everything.

Every projected profile carries, in `method.projection.expected_error`, the |error| its method
had leave-one-module-out on the paper's three phones (benchmarks/projection_error.py,
docs/projection.md); `atomsim profile project` prints it.
"""
from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError, valid_names

METHODS = ("ratio", "roofline", "calibrated", "one-factor")
CALIBRATED = ("calibrated", "one-factor")
# |error| of each method, measured by benchmarks/projection_error.py (docs/projection.json summary):
# leave-one-module-out over the six ordered pairs of the paper's three phones, every op and load
# figure; strict_*: also holding out the figures built from the same published number (ratio: 0 by
# construction, it is built from those very profiles)
EXPECTED_ERROR = {
    "roofline": {"median_pct": 48.62, "worst_pct": 187.41, "strict_median_pct": None, "strict_worst_pct": None},
    "one-factor": {"median_pct": 4.93, "worst_pct": 35.67, "strict_median_pct": 8.2, "strict_worst_pct": 39.5},
    "calibrated": {"median_pct": 0.0, "worst_pct": 19.0, "strict_median_pct": 8.34, "strict_worst_pct": 34.11},
    "ratio": {"median_pct": 0.0, "worst_pct": 0.0, "strict_median_pct": None, "strict_worst_pct": None},
}
EXPECTED_ERROR_NOTE = ("leave-one-module-out over the six ordered pairs of the paper's three phones "
                       "(benchmarks/projection_error.py, docs/projection.md)")
DEFAULT_REFERENCE = "pixel_5a"


def _catalog():
    from ..schema.scenario import load_devices
    return load_devices()


def source_device(profile):
    cat = _catalog()
    name = (profile.device or {}).get("name")
    return cat[name] if name in cat else cat["host"]


def _target(to_device):
    from ..schema.scenario import Device
    if isinstance(to_device, Device):
        return to_device
    cat = _catalog()
    if to_device not in cat:
        raise ConfigError("--to: " + valid_names("device", to_device, cat))
    return cat[to_device]


def _need(dev, field):
    v = getattr(dev, field)
    if v is None:
        raise ConfigError(f"device {dev.name!r} has no {field} in the catalog; roofline projection needs it")
    return v


def roofline_factors(profile, src, dst) -> dict:
    """{(module key, op or 'load.cold'/'load.warm'): factor}."""
    c = _need(src, "compute_gflops") / _need(dst, "compute_gflops")
    m = _need(src, "memory_bandwidth_bytes_per_s") / _need(dst, "memory_bandwidth_bytes_per_s")
    s_src = profile.storage_read_bytes_per_s or src.storage_read_bytes_per_s
    out = {}
    for key, mod in profile.modules.items():
        out[(key, "load.cold")] = s_src / dst.storage_read_bytes_per_s
        out[(key, "load.warm")] = src.page_cache_read_bytes_per_s / dst.page_cache_read_bytes_per_s
        for op_name, op in mod.ops.items():
            t = op.latency(1)
            passes = int((op.shape or {}).get("tokens", 1) or 1)
            mem = min(t, mod.resident_bytes * passes / src.memory_bandwidth_bytes_per_s) if t > 0 else 0.0
            out[(key, op_name)] = ((t - mem) * c + mem * m) / t if t > 0 else 1.0
    return out


def _published(device: str, published_dir: Path):
    from ..schema.profile import load_profile
    p = published_dir / f"paper-{device}.json"
    if not p.exists():
        raise ConfigError(f"ratio projection needs the published profile {p} (or use --method roofline)")
    return load_profile(p)


def _by_model(profile) -> dict:
    """{(model, op|'load.cold'|'load.warm'): seconds} from a published profile (first quant of each model)."""
    out = {}
    for key in sorted(profile.modules):
        mod = profile.modules[key]
        out.setdefault((mod.model, "load.cold"), mod.load.cold_s.median)
        out.setdefault((mod.model, "load.warm"), mod.load.warm_s.median)
        for op_name, op in mod.ops.items():
            out.setdefault((mod.model, op_name), op.latency(1))
    return out


def _ratio_factors(profile, factors, src, dst, reference, published_dir) -> dict:
    """Replace `factors` by published per-(model, op) ratios where both published profiles have them."""
    from .memory_report import default_profiles_dir
    pdir = Path(published_dir) if published_dir else default_profiles_dir()
    ref_name = src.name if (pdir / f"paper-{src.name}.json").exists() and src.name != "host" else (reference or DEFAULT_REFERENCE)
    ref, tgt = _by_model(_published(ref_name, pdir)), _by_model(_published(dst.name, pdir))
    fallback = []
    for (key, what) in list(factors):
        model = profile.modules[key].model
        a, b = ref.get((model, what)), tgt.get((model, what))
        if a and b:
            factors[(key, what)] = b / a
        else:
            fallback.append(f"{key}:{what}")
    return {"reference_device": ref_name, "reference_profile": f"paper-{ref_name}.json",
            "target_profile": f"paper-{dst.name}.json", "roofline_fallback": fallback}


def _calibrated_factors(profile, method, calibration, source_calibration) -> tuple[dict, dict]:
    """({(module key, 'load.cold'|'load.warm'|'<op>@<t>'): factor}, method detail) fitted from `calibration`."""
    from . import fit
    if calibration is None:
        raise ConfigError(f"--method {method} needs --calibrate CAL (a profile or `atomsim calibrate` output "
                          "measured on the target device)")
    source = _with_modules(profile, source_calibration)
    f = fit.fit(source, calibration, by_kind=(method == "calibrated"))
    times = fit.project_times(source, f)
    factors, rests_on = {}, {}
    for name, (seconds, on, how) in times.items():
        key, what = name.split(":", 1)
        if key not in profile.modules:   # the source's reference kernels: not projected
            continue
        mod = profile.modules[key]
        base = (mod.load.cold_s if what == "load.cold" else mod.load.warm_s if what == "load.warm"
                else mod.ops[what.split("@")[0]].latency_s[what.split("@")[1]]).median
        factors[(key, what)] = seconds / base if base > 0 else 1.0
        rests_on[name] = {"how": how, "on": on}
    dev = calibration.device or {}
    kernels = any(m.model == fit.KERNELS for m in calibration.modules.values())
    detail = {"fitted_factors": fit.factor_table(f), "rests_on": rests_on,
              "pipeline_ops_factor": fit.factor(f, "compute", 1)[0],
              "calibration": {"source": calibration.source, "preset": calibration.preset,
                              "device": dev.get("name") or dev.get("cpu_model"), "figures_shared": len(f["ratios"]),
                              "modules": sorted(calibration.modules)}}
    if kernels:
        detail["expected_error_note"] = ("expected_error was measured with calibrations of modules on the paper's "
                                         "phones; a reference-kernel calibration's error is not measured")
    return factors, detail


def _with_modules(profile, extra):
    """`profile` with the modules of `extra` (the source device's reference kernels) added."""
    if extra is None:
        return profile
    data = profile.model_dump(mode="json")
    data["modules"] = {**data["modules"], **{k: m.model_dump(mode="json") for k, m in extra.modules.items()}}
    return type(profile).model_validate(data)


def _factor(factors, key, what, threads=None):
    if threads is not None and (key, f"{what}@{threads}") in factors:
        return factors[(key, f"{what}@{threads}")]
    return factors[(key, what)]


def project_profile(profile, to_device, method: str = "roofline", reference: str | None = None,
                    published_dir: str | Path | None = None, calibration=None, source_calibration=None):
    """A copy of `profile` with times scaled to `to_device` (catalog name or Device); source: projected.
    `calibration` (a Profile measured on the target) for the calibrated and one-factor methods."""
    from ..schema.profile import Profile
    if method not in METHODS:
        raise ConfigError("--method: " + valid_names("projection method", method, METHODS))
    src, dst = source_device(profile), _target(to_device)
    detail: dict = {"method": method, "from_device": src.name, "to_device": dst.name,
                    "from_profile_source": profile.source, "projected": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "expected_error": {**EXPECTED_ERROR[method], "measured": EXPECTED_ERROR_NOTE}}
    if method in CALIBRATED:
        factors, more = _calibrated_factors(profile, method, calibration, source_calibration)
        compute = more["pipeline_ops_factor"]   # rank, assemble: compute at 1 thread
    else:
        factors = roofline_factors(profile, src, dst)   # ratio falls back to these
        compute = _need(src, "compute_gflops") / _need(dst, "compute_gflops")
        more = _ratio_factors(profile, factors, src, dst, reference, published_dir) if method == "ratio" else {}
    detail.update(more)
    data = copy.deepcopy(profile.model_dump(mode="json"))
    for key, mod in data["modules"].items():
        src_mod = profile.modules[key]
        for kind in ("cold", "warm"):
            mod["load"][f"{kind}_s"] = getattr(src_mod.load, f"{kind}_s").scaled(_factor(factors, key, f"load.{kind}")).model_dump()
        for op_name, op in mod["ops"].items():
            op["latency_s"] = {t: st.scaled(_factor(factors, key, op_name, t)).model_dump()
                               for t, st in src_mod.ops[op_name].latency_s.items()}
    data["pipeline_ops_s"] = {k: v * compute for k, v in (profile.pipeline_ops_s or {}).items()}
    data["source"] = "projected"
    data["created"] = detail["projected"]
    data["storage_read_bytes_per_s"] = dst.storage_read_bytes_per_s
    data["device"] = {**dst.model_dump(), "projected_from": profile.device}
    data["method"] = {**(profile.method or {}), "projection": {**detail, "factors": {
        f"{k}:{w}": round(v, 6) for (k, w), v in sorted(factors.items())}}}
    data["corun"] = [c.model_dump() for c in profile.corun]
    return Profile.model_validate(data)


def expected_error_text(method: str) -> str:
    e = EXPECTED_ERROR[method]
    if e["median_pct"] is None:
        return f"expected |error| of {method}: not measured"
    text = f"expected |error| of {method}: median {e['median_pct']:.1f}%, worst {e['worst_pct']:.1f}%"
    if e["strict_median_pct"] is not None:
        text += (f" held out by module; {e['strict_median_pct']:.1f}% / {e['strict_worst_pct']:.1f}% when the figures "
                 "built from the same published number are held out too")
    if method == "ratio":
        text += " (by construction: built from the published profiles it is compared with)"
    return f"{text} ({EXPECTED_ERROR_NOTE})"


def _cmd_project(args) -> int:
    from ..io import check_writable_file
    from ..schema.profile import load_profile, save_profile
    check_writable_file(args.out)
    method = args.method or ("calibrated" if args.calibrate else "roofline")
    cal = load_profile(args.calibrate) if args.calibrate else None
    src_cal = load_profile(args.source_calibration) if args.source_calibration else None
    prof = project_profile(load_profile(args.from_), args.to, method, reference=args.reference,
                           published_dir=args.published_dir, calibration=cal, source_calibration=src_cal)
    save_profile(prof, args.out)
    print(f"wrote {args.out} ({method}, {prof.method['projection']['from_device']} -> {args.to})")
    print(expected_error_text(method))
    if "expected_error_note" in prof.method["projection"]:
        print(prof.method["projection"]["expected_error_note"])
    return 0


def register_project(subparsers) -> None:
    """Add `project` to the `profile` command's subparsers."""
    p = subparsers.add_parser("project", help="scale a measured profile to another device (roofline, ratio, calibrated)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="from_", required=True, metavar="FILE", help="profile to scale")
    p.add_argument("--to", required=True, metavar="DEVICE", help="target device (catalog name)")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="default: calibrated with --calibrate, else roofline")
    p.add_argument("--calibrate", default=None, metavar="CAL",
                   help="partial profile measured on the target (modules, or `atomsim calibrate` output)")
    p.add_argument("--source-calibration", default=None, metavar="CAL",
                   help="`atomsim calibrate` output of the source device (when CAL holds reference kernels)")
    p.add_argument("--reference", default=None, metavar="DEVICE",
                   help=f"ratio: published reference device when the source has none (default {DEFAULT_REFERENCE})")
    p.add_argument("--published-dir", default=None, metavar="DIR", help="where paper-<device>.json live (default profiles/)")
    p.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(func=_cmd_project)
