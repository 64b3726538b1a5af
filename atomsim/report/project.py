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
"""
from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError, valid_names

METHODS = ("ratio", "roofline")
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


def project_profile(profile, to_device, method: str = "roofline", reference: str | None = None,
                    published_dir: str | Path | None = None):
    """A copy of `profile` with times scaled to `to_device` (catalog name or Device); source: projected."""
    from ..schema.profile import Profile
    if method not in METHODS:
        raise ConfigError("--method: " + valid_names("projection method", method, METHODS))
    src, dst = source_device(profile), _target(to_device)
    factors = roofline_factors(profile, src, dst)   # ratio falls back to these
    detail: dict = {"method": method, "from_device": src.name, "to_device": dst.name,
                    "from_profile_source": profile.source, "projected": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if method == "ratio":
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
        detail.update(reference_device=ref_name, reference_profile=f"paper-{ref_name}.json",
                      target_profile=f"paper-{dst.name}.json", roofline_fallback=fallback)
    data = copy.deepcopy(profile.model_dump(mode="json"))
    for key, mod in data["modules"].items():
        for kind in ("cold", "warm"):
            f = factors[(key, f"load.{kind}")]
            mod["load"][f"{kind}_s"] = profile.modules[key].load.__getattribute__(f"{kind}_s").scaled(f).model_dump()
        for op_name, op in mod["ops"].items():
            f = factors[(key, op_name)]
            op["latency_s"] = {t: st.scaled(f).model_dump() for t, st in profile.modules[key].ops[op_name].latency_s.items()}
    data["pipeline_ops_s"] = {k: v * _need(src, "compute_gflops") / _need(dst, "compute_gflops")
                              for k, v in (profile.pipeline_ops_s or {}).items()}
    data["source"] = "projected"
    data["created"] = detail["projected"]
    data["storage_read_bytes_per_s"] = dst.storage_read_bytes_per_s
    data["device"] = {**dst.model_dump(), "projected_from": profile.device}
    data["method"] = {**(profile.method or {}), "projection": {**detail, "factors": {
        f"{k}:{w}": round(v, 6) for (k, w), v in sorted(factors.items())}}}
    data["corun"] = [c.model_dump() for c in profile.corun]
    return Profile.model_validate(data)


def _cmd_project(args) -> int:
    from ..io import check_writable_file
    from ..schema.profile import load_profile, save_profile
    check_writable_file(args.out)
    prof = project_profile(load_profile(args.from_), args.to, args.method, reference=args.reference,
                           published_dir=args.published_dir)
    save_profile(prof, args.out)
    return 0


def register_project(subparsers) -> None:
    """Add `project` to the `profile` command's subparsers."""
    p = subparsers.add_parser("project", help="scale a measured profile to another device (ratio or roofline)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="from_", required=True, metavar="FILE", help="profile to scale")
    p.add_argument("--to", required=True, metavar="DEVICE", help="target device (catalog name)")
    p.add_argument("--method", choices=METHODS, default="roofline")
    p.add_argument("--reference", default=None, metavar="DEVICE",
                   help=f"ratio: published reference device when the source has none (default {DEFAULT_REFERENCE})")
    p.add_argument("--published-dir", default=None, metavar="DIR", help="where paper-<device>.json live (default profiles/)")
    p.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(func=_cmd_project)
