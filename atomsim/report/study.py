"""Study files (YAML): a base scenario, a grid over its fields, the profile of each point, plot options.

    name: clips-pixel_5a
    base: ../paper/assembly-pixel_5a.yaml     # a scenario path (relative to this file) or a mapping
    grid:                                     # dotted scenario fields -> values; every combination is a point
      workload.clips: [1, 2, 5, 10, 20, 50, 100]
      policy: [reload, reuse-serial, reuse-parallel]
    profile: ../../profiles/paper-{device}.json   # optional: a path ({field} is replaced by the point's value;
                                                  # {device} by its device name), or {by: FIELD, paths: {VALUE: PATH}}
    plots: {x: workload.clips, heatmap: [workload.clips, device.ram_gb], reuse: reuse-parallel}

Grid fields: any leaf of a scenario (`atomsim.schema.scenario.Scenario`), plus `device` (a catalog
name, applied first), `device.ram_gb` and `device.storage_read_mb_s` (unit aliases).
A point is numbered by its position in the product of the grid (the last field varies fastest).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AtomsimError, ConfigError
from ..schema.scenario import Scenario, load_scenario, resolve_device, scenario_from_mapping, set_dotted
from ..schema.trace import BREAKDOWN
from ..schema.validation import read_mapping, validate

DEVICE_ALIASES = ("device", "device.ram_gb", "device.storage_read_mb_s")
RESULT_COLUMNS = ("e2e_s", "lower_bound_s", "peak_bytes", "peak_high_bytes", *(f"{k}_bytes" for k in BREAKDOWN),
                  "ram_bytes", "oom", "energy_j", "cpu_busy_s", "loads", "cold_loads", "read_bytes", "error")
DEFAULT_SIMULATE = "atomsim.sim:simulate"
# a grid field whose values are mappings of fields -> values, each applied as the point's own
# (`atomsim search` lists its candidates so: they are no product of independent fields)
CHANGES = "changes"


def leaf_fields(data: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in data.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(leaf_fields(v, path + "."))
        else:
            out.append(path)
    return out


def valid_fields(base: dict) -> list[str]:
    return sorted(set(leaf_fields(base)) | set(DEVICE_ALIASES))


@dataclass
class Study:
    name: str
    source: str
    base: dict                       # a validated scenario, as a mapping
    base_dir: str
    grid: dict[str, list]
    profile: str | dict | None = None
    plots: dict = field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        return list(self.grid)

    def size(self) -> int:
        n = 1
        for vs in self.grid.values():
            n *= len(vs)
        return n

    def point(self, index: int) -> dict:
        """The grid values of point `index` (mixed radix, last field fastest)."""
        values = {}
        for f in reversed(self.fields):
            vs = self.grid[f]
            index, r = divmod(index, len(vs))
            values[f] = vs[r]
        return {f: values[f] for f in self.fields}

    def payload(self) -> dict:
        """Everything a worker needs, as plain data (pickles small)."""
        return {"name": self.name, "source": self.source, "base": self.base, "base_dir": self.base_dir,
                "grid": self.grid, "profile": self.profile, "plots": self.plots}

    @classmethod
    def from_payload(cls, p: dict) -> "Study":
        return cls(**p)

    def fingerprint(self) -> str:
        text = json.dumps({k: v for k, v in self.payload().items() if k != "plots"}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # ---- a point
    def scenario(self, values: dict) -> Scenario:
        data = copy.deepcopy(self.base)
        src = f"study {self.name!r} point {values}"
        values = {**{f: v for f, v in values.items() if f != CHANGES}, **values.get(CHANGES, {})}
        if "device" in values:
            data["device"] = resolve_device(values["device"], src)
        for f, v in values.items():
            if f == "device":
                continue
            if f in ("device.ram_gb", "device.storage_read_mb_s"):
                data["device"].pop("ram_bytes" if f.endswith("ram_gb") else "storage_read_bytes_per_s", None)
            set_dotted(data, f, v)
        sc = validate(Scenario, data, src)
        return sc

    def profile_path(self, values: dict, scenario: Scenario) -> str:
        spec = self.profile
        if spec is None:
            path = scenario.profile
            if not path:
                raise ConfigError(f"study {self.name!r}: no profile: give `profile:` in the study or in the base scenario")
            return path
        if isinstance(spec, dict):
            by, paths = spec["by"], spec["paths"]
            key = scenario.device.name if by == "device" and by not in values else values.get(by)
            if str(key) not in {str(k) for k in paths}:
                raise ConfigError(f"study {self.name!r}: profile: no path for {by} = {key!r}; "
                                  f"has: {', '.join(str(k) for k in paths)}")
            path = {str(k): v for k, v in paths.items()}[str(key)]
        else:
            path = spec.replace("{device}", scenario.device.name)
            for f, v in values.items():
                path = path.replace("{" + f + "}", str(v))
        p = Path(path)
        return str(p if p.is_absolute() else (Path(self.base_dir) / p).resolve())


def study_from_mapping(data: dict, source: str, base_dir: Path) -> Study:
    for key in ("base", "grid"):
        if key not in data:
            raise ConfigError(f"{source}: field {key!r}: missing (a study needs `base:` and `grid:`)")
    unknown = set(data) - {"name", "base", "grid", "profile", "plots", "description"}
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}; "
                          "valid: name, description, base, grid, profile, plots")
    base = data["base"]
    if isinstance(base, str):
        p = Path(base)
        scenario = load_scenario(p if p.is_absolute() else base_dir / p)
    elif isinstance(base, dict):
        scenario = scenario_from_mapping(base, f"{source}: base", base_dir)
    else:
        raise ConfigError(f"{source}: field 'base': expected a scenario path or mapping, got {type(base).__name__}")
    base_dict = scenario.model_dump()
    grid = data["grid"]
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(f"{source}: field 'grid': expected a mapping of field -> list of values")
    fields = valid_fields(base_dict)
    clean = {}
    for f, vs in grid.items():
        f = str(f)
        if f == CHANGES and isinstance(vs, list) and all(isinstance(v, dict) for v in vs):
            bad = sorted({k for v in vs for k in v if k not in fields and k not in DEVICE_ALIASES})
            if bad:
                raise ConfigError(f"{source}: grid field {f!r}: {', '.join(bad)} is not a scenario field")
        elif f not in fields and not (f.startswith("models.quant_by_model.") and f.count(".") == 2):
            raise ConfigError(f"{source}: grid field {f!r} is not a scenario field; valid fields: {', '.join(fields)}")
        if not isinstance(vs, list) or not vs:
            raise ConfigError(f"{source}: grid field {f!r}: expected a non-empty list of values, got {vs!r}")
        clean[f] = vs
    profile = data.get("profile")
    if isinstance(profile, dict) and not ({"by", "paths"} <= set(profile)):
        raise ConfigError(f"{source}: field 'profile': a mapping needs `by:` (a grid field) and `paths:` {{value: path}}")
    if profile is not None and not isinstance(profile, (str, dict)):
        raise ConfigError(f"{source}: field 'profile': expected a path or {{by, paths}}")
    plots = data.get("plots") or {}
    for key in ("x", "ram"):
        if plots.get(key) and plots[key] not in clean:
            raise ConfigError(f"{source}: plots.{key}: {plots[key]!r} is not a grid field; grid: {', '.join(clean)}")
    for f in plots.get("heatmap") or []:
        if f not in clean:
            raise ConfigError(f"{source}: plots.heatmap: {f!r} is not a grid field; grid: {', '.join(clean)}")
    return Study(name=str(data.get("name") or Path(source).stem), source=source, base=base_dict,
                 base_dir=str(base_dir.resolve()), grid=clean, profile=profile, plots=dict(plots))


def load_study(path: str | Path) -> Study:
    path = Path(path)
    data = read_mapping(path, "study")
    data.setdefault("name", path.stem)
    return study_from_mapping(data, str(path), path.parent)


# ---- evaluating points (runs in worker processes)
def _profile(path: str):
    import os
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        stamp = None   # load_profile says the file is missing
    return _profile_at(path, stamp)


@functools.lru_cache(maxsize=64)
def _profile_at(path: str, stamp):
    from ..schema.profile import load_profile
    return load_profile(path)


@functools.lru_cache(maxsize=8)
def _simulator(spec: str):
    import importlib
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)


def evaluate(study: Study, index: int, simulate: str = DEFAULT_SIMULATE) -> dict:
    """One row: the point's grid values and its simulated figures, or its error."""
    from ..schema.energy import energy_parts
    values = study.point(index)
    row = {"index": index, **values, **{c: None for c in RESULT_COLUMNS}}
    row["error"] = ""
    try:
        sc = study.scenario(values)
        profile = _profile(study.profile_path(values, sc))
        res = _simulator(simulate)(sc, profile)
        s = res.summary
        b = s.get("breakdown_bytes") or {}
        row.update({"e2e_s": float(s["e2e_s"]),
                    "lower_bound_s": None if s.get("lower_bound_s") is None else float(s["lower_bound_s"]),
                    "peak_bytes": int(s["peak_bytes"]), "ram_bytes": int(sc.device.ram_bytes),
                    "peak_high_bytes": int(s.get("peak_high_bytes", s["peak_bytes"])),
                    "oom": bool(s.get("oom")), **{f"{k}_bytes": int(b.get(k, 0)) for k in BREAKDOWN},
                    "loads": len(s.get("loads") or ()), "cold_loads": s.get("cold_loads"),
                    "read_bytes": sum(int(ld.get("read_bytes", 0)) for ld in s.get("loads") or ())})
        parts = energy_parts(res.trace if getattr(res, "trace", None) is not None else s, sc.device)
        row["energy_j"], row["cpu_busy_s"] = parts["energy_j"], parts["cpu_busy_s"]
    except AtomsimError as e:
        row["error"] = " | ".join(str(e).splitlines()) or type(e).__name__
    except Exception as e:  # a bug in one point must not lose the sweep; the error column says what
        row["error"] = " | ".join(f"{type(e).__name__}: {e}".splitlines())
    return row


def run_chunk(payload: dict, indices: list[int], simulate: str = DEFAULT_SIMULATE) -> list[dict]:
    study = Study.from_payload(payload)
    return [evaluate(study, i, simulate) for i in indices]
