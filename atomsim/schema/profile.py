"""Profile (JSON, `version` 1): what modules cost on one device, and how each figure was measured.

Every statistic keeps its raw samples, warm-ups apart (pyperf style). `source` is `measured`,
`published` (from the paper's tables) or `projected` (scaled from another device).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ProfileError
from .validation import describe, read_mapping

PROFILE_VERSION = 1
SUPPORTED_VERSIONS = (1,)


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class Stat(BaseModel):
    """Sample statistics of one figure. Build with `Stat.of(samples, warmups)`."""

    model_config = ConfigDict(extra="forbid")
    samples: list[float] = Field(min_length=1)
    warmups: list[float] = []
    n: int
    median: float
    mean: float
    p10: float
    p90: float
    stdev: float
    mad: float

    @classmethod
    def of(cls, samples, warmups=()) -> "Stat":
        xs = sorted(float(x) for x in samples)
        if not xs:
            raise ValueError("a statistic needs at least one sample")
        med = statistics.median(xs)
        return cls(
            samples=[float(x) for x in samples], warmups=[float(x) for x in warmups], n=len(xs),
            median=med, mean=statistics.fmean(xs), p10=quantile(xs, 0.10), p90=quantile(xs, 0.90),
            stdev=statistics.stdev(xs) if len(xs) > 1 else 0.0,
            mad=statistics.median(abs(x - med) for x in xs),
        )

    @classmethod
    def point(cls, value: float) -> "Stat":
        """A single published or projected figure (n = 1, no spread known)."""
        return cls.of([value])

    def scaled(self, factor: float) -> "Stat":
        return Stat.of([x * factor for x in self.samples], [x * factor for x in self.warmups])

    @property
    def unstable(self) -> bool:
        """pyperf's warning: standard deviation over 10% of the mean."""
        return self.n > 1 and self.mean > 0 and self.stdev > 0.10 * self.mean


def quantile(sorted_xs: list[float], q: float) -> float:
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = q * (len(sorted_xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


class Load(BaseModel):
    model_config = ConfigDict(extra="allow")
    # null only where an import's source lacks the figure (ModuleProfile.imported says so)
    cold_s: Stat | None
    warm_s: Stat | None
    cold_evicted: bool | None = None     # did page-cache eviction take effect (None: unknown)
    transient_bytes: tuple[int, int] = (0, 0)   # [low, high] freed after load (Table 8's temporaries)
    transient_hwm_bytes: int | None = None      # the RSS-based figure of the range, when measured
    transient_runner_bytes: int | None = None   # anonymous-memory figure in the runner's state, when measured
    bytes_read: int | None = None

    def temporaries_bytes(self) -> int:
        """Load temporaries as process memory (what an OOM killer counts): the anonymous-memory
        peak taken in the runner's state where measured (file pages a load maps are page
        cache, which the simulator models apart), else the load jobs' RSS
        figure, else the high end of the range (published profiles)."""
        for x in (self.transient_runner_bytes, self.transient_hwm_bytes):
            if x is not None:
                return int(x)
        return int(self.transient_bytes[1])


class Op(BaseModel):
    model_config = ConfigDict(extra="allow")
    latency_s: dict[str, Stat]            # by intra-op thread count, "1", "2", ...
    activation_peak_bytes: int | None = Field(ge=0)   # null: imported, not in the source
    # RSS the op leaves behind when it returns, from a trimmed heap: freed memory the allocator
    # keeps (glibc returns it at the next malloc_trim, which every load and free does). None: not
    # measured (the simulator then assumes the op returns everything).
    heap_retained_bytes: int | None = Field(default=None, ge=0)
    # each profiling round's peak (a new process each): where a round peaked above the median, the
    # simulator puts that in the top of the peak's range (sim/engine.py). None: one figure only
    activation_peak_rounds: list[int] | None = None
    input_bytes: int = Field(default=0, ge=0)
    items: int = Field(default=1, gt=0)   # inputs in the profiled call; latency scales linearly
    shape: dict = {}
    # the op's first call since its module's load (one sample a round, at `first_call_threads`):
    # the simulator charges what it takes above the median to each first call after a load
    first_call_s: Stat | None = None
    first_call_threads: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _threads(self):
        if any(x < 0 for x in self.activation_peak_rounds or ()):
            raise ValueError("activation_peak_rounds: bytes, none negative")
        if not self.latency_s:
            raise ValueError("latency_s needs at least one thread count")
        for k in self.latency_s:
            if not k.isdigit() or int(k) < 1:
                raise ValueError(f"latency_s keys are thread counts like '1', got {k!r}")
        return self

    def threads(self) -> list[int]:
        return sorted(int(k) for k in self.latency_s)

    def latency(self, threads: int) -> float:
        """Median latency at `threads` (nearest profiled count at or below, else the smallest)."""
        ts = self.threads()
        below = [t for t in ts if t <= threads]
        return self.latency_s[str(max(below) if below else ts[0])].median


class ModuleProfile(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    quant: str
    preset: str | None = None
    params: int | None = None
    file_bytes: int | None = Field(ge=0)       # null: imported, not in the source
    resident_bytes: int | None = Field(ge=0)   # null: imported, not in the source
    resident_anon_bytes: int | None = None
    resident_file_bytes: int | None = None
    load: Load
    free_s: Stat | None = None            # time to free the module (gc, malloc_trim); absent: 0
    # anonymous memory that stays once the module is freed: the runtime's first-use state
    kept_after_free_bytes: int | None = Field(default=None, ge=0)
    ops: dict[str, Op] = {}
    # figures taken from other tools' files (`atomsim profile import`), by figure path
    # ("load.cold_s", "ops.encode.latency_s.2", ...): where each came from (Provenance)
    imported: dict[str, "Provenance"] = {}

    def missing(self, op: str | None = None) -> list[str]:
        """The figures the simulator needs that this module lacks (left empty by an import)."""
        need = {"file_bytes": self.file_bytes, "resident_bytes": self.resident_bytes,
                "load.cold_s": self.load.cold_s, "load.warm_s": self.load.warm_s}
        if op is not None and op in self.ops:
            need[f"ops.{op}.activation_peak_bytes"] = self.ops[op].activation_peak_bytes
        return [k for k, v in need.items() if v is None]

    @model_validator(mode="after")
    def _empty_only_where_imported(self):
        said = {f for p in self.imported.values() for f in p.not_in_source}
        empty = self.missing() + [f for op in self.ops for f in self.missing(op) if f.startswith("ops.")]
        wrong = [f for f in empty if f not in said]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: null, which only an import whose source lacks the "
                             "figure may leave (imported.*.not_in_source)")
        return self


class Provenance(BaseModel):
    """Where an imported figure came from; what its source could not supply is left empty."""
    model_config = ConfigDict(extra="allow")
    file: str
    sha256: str
    tool: str                     # "etdump", "minibench", "aihub", "llama-bench"
    tool_version: str | None      # None: the file does not say
    device: str | None            # the device the file (or --device) names; None: unknown
    imported: str                 # when (UTC, ISO 8601)
    not_in_source: list[str] = [] # figures of this module the source cannot supply (left empty)
    note: str | None = None


class CoRun(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: str                        # "<model>/<quant>:<op>"
    b: str
    threads: tuple[int, int] = (1, 1)
    # together / alone, alone timed at the thread counts the simulator's CPU sharing gives each
    # side (threads x min(1, cores / sum of threads)): the slowdown beyond core sharing
    slowdown_a: float = Field(ge=0.5)
    slowdown_b: float = Field(ge=0.5)


class Profile(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: int
    source: Literal["measured", "published", "projected"]
    created: str | None = None
    preset: str | None = None
    device: dict = {}
    method: dict = {}
    baseline_rss_bytes: int | None = Field(ge=0)   # null: a profile assembled from imports
    # of that RSS, the anonymous part (heap, torch's allocations); the rest is file pages
    # (shared libraries) that a memory cgroup does not charge when other processes read them first
    baseline_anon_bytes: int | None = Field(default=None, ge=0)
    # the runner's decoder process (run/decoder.py): its anonymous memory after decoding clips,
    # which a RAM limit (the run's memory cgroup) charges beside the runner's own; none in
    # profiles taken before 2026-12-03 (their runs decoded in a lane thread)
    decoder_anon_bytes: int | None = Field(default=None, ge=0)
    storage_read_bytes_per_s: float | None = Field(default=None, gt=0)
    memray: bool = False
    modules: dict[str, ModuleProfile]
    corun: list[CoRun] = []
    # costs of module-less ops (rank, assemble), seconds; absent means zero
    pipeline_ops_s: dict[str, float] = {}
    pipeline_ops_items: dict[str, int] = {}   # items (e.g. clips assembled) of each pipeline_ops_s figure
    # memory a module-less op's call adds (the assembler's decoder and encoder buffers), bytes; absent means zero
    pipeline_ops_bytes: dict[str, Annotated[int, Field(ge=0)]] = {}

    def module(self, model: str, quant: str) -> ModuleProfile:
        key = f"{model}/{quant}"
        if key not in self.modules:
            raise ProfileError(f"profile lacks module {key!r}; it has: {', '.join(sorted(self.modules)) or 'none'}"
                               f" (profile it: atomsim profile --quant {quant})")
        lack = self.modules[key].missing() + ([] if self.baseline_rss_bytes is not None else ["baseline_rss_bytes"])
        if lack:
            raise ProfileError(_lacks(key, lack))
        return self.modules[key]

    def op(self, model: str, quant: str, op: str) -> Op:
        mod = self.module(model, quant)
        if op in mod.ops and mod.missing(op):
            raise ProfileError(_lacks(f"{model}/{quant}:{op}", mod.missing(op)))
        if op not in mod.ops:
            raise ProfileError(f"profile lacks op {op!r} of module {model}/{quant}; it has: {', '.join(sorted(mod.ops)) or 'none'}")
        return mod.ops[op]

    def corun_slowdown(self, a: str, b: str, threads: tuple | None = None) -> tuple[float, float] | None:
        """(slowdown of a, slowdown of b) when both run at once, if measured. Keys "<model>/<quant>:<op>";
        `threads` (of a, of b): the figure measured at those thread counts when there is one, else
        the pair's first figure."""
        found = None
        for c in self.corun:
            if (c.a, c.b) == (a, b):
                hit, ts = (c.slowdown_a, c.slowdown_b), tuple(c.threads)
            elif (c.a, c.b) == (b, a):
                hit, ts = (c.slowdown_b, c.slowdown_a), tuple(reversed(c.threads))
            else:
                continue
            if threads is None or tuple(int(round(t)) for t in threads) == ts:
                return hit
            found = found or hit
        return found


def _lacks(what: str, figures: list[str]) -> str:
    return (f"profile lacks {', '.join(figures)} of {what} (left empty by `atomsim profile import`: its "
            "source does not supply them; import them from a file that has them, or measure them with atomsim profile)")


def profile_presets(profile: Profile) -> set[str]:
    """The presets a profile measured: its own `preset`, else its modules'."""
    if profile.preset:
        return {profile.preset}
    return {m.preset for m in profile.modules.values() if m.preset}


def profile_mismatch(profile: Profile, preset: str, keys=()) -> str | None:
    """Why `profile` does not describe modules of `preset` (and each "model/quant" of `keys`):
    it measured another preset, or lacks one of them. None when it fits."""
    presets = profile_presets(profile)
    if presets and preset not in presets:
        return f"it measured preset {', '.join(sorted(presets))}, the scenario uses preset {preset}"
    missing = sorted(k for k in set(keys) if k not in profile.modules)
    if missing:
        return f"it lacks {', '.join(missing)} (it has {', '.join(sorted(profile.modules)) or 'none'})"
    return None


def check_profile_fits(profile: Profile, profile_path, preset: str, keys=(), scenario_path=None) -> None:
    """Raise ProfileError naming both files when `profile` does not describe the scenario's modules."""
    why = profile_mismatch(profile, preset, keys)
    if why:
        of = f" for {scenario_path}" if scenario_path else ""
        raise ProfileError(f"profile {profile_path} does not fit{of} (fields models.preset, models.quant): {why}; "
                           f"profile them (atomsim profile --preset {preset}), or pass --allow-profile-mismatch")


def _not_a_profile(data: dict, source: str) -> str | None:
    """What a mapping is when it is not a profile (a profile side file, a summary, a trace, a scenario)."""
    if "config" in data and "whole" in data:
        return (f"{source}: a partial profile (the side file of an interrupted `atomsim profile`), not a "
                "profile: rerun the same `atomsim profile` command to resume it")
    if "modules" in data:
        return None
    kinds = (("traceEvents", "a trace"), ("e2e_s", "a run or simulation summary"), ("workload", "a scenario"),
             ("grid", "a study"))
    looks = next((what for key, what in kinds if key in data), None)
    if looks:
        return f"{source}: not a profile (no field 'modules'); it looks like {looks}"
    return None


# Numbers whose sign means something (deltas against the process's baseline), and free-form
# sections (a device's fingerprint, the command's settings, a tool's own figures, provenance):
# there only finiteness is checked. Every other number of a profile is a time, a size, a count, a
# rate or a ratio of them, and is 0 or more.
SIGNED_FIELDS = frozenset({"resident_anon_bytes", "other_file_bytes"})
FREE_FORM_FIELDS = frozenset({"device", "method", "settings", "tool_figures", "imported", "warnings"})


def check_numbers(data: dict, source: str) -> None:
    """ProfileError naming the file and the field path of the first number that is NaN or infinite
    (anywhere), or negative where its meaning forbids it."""
    from ..io import field_path, numbers
    for parts, x in numbers(data):
        if isinstance(x, float) and not math.isfinite(x):
            raise ProfileError(f"{source}: field '{field_path(parts)}': not a finite number ({x})")
        if x < 0:
            keys = [p for p in parts if isinstance(p, str)]
            if (keys[-1:] or [None])[0] not in SIGNED_FIELDS and not FREE_FORM_FIELDS.intersection(keys):
                raise ProfileError(f"{source}: field '{field_path(parts)}': negative ({x}); a time, size, count "
                                   "or rate of a profile is 0 or more")


def profile_from_mapping(data: dict, source: str) -> Profile:
    why = _not_a_profile(data, source)
    if why:
        raise ProfileError(why)
    if "version" not in data:
        raise ProfileError(f"{source}: field 'version': missing (this atomsim reads profile versions {list(SUPPORTED_VERSIONS)})")
    if data["version"] not in SUPPORTED_VERSIONS:
        raise ProfileError(f"{source}: field 'version': unknown profile version {data['version']!r}; "
                           f"this atomsim reads {list(SUPPORTED_VERSIONS)} (re-profile, or upgrade atomsim)")
    check_numbers(data, source)
    try:
        return Profile.model_validate(data)
    except Exception as e:  # pydantic ValidationError
        from pydantic import ValidationError
        if isinstance(e, ValidationError):
            raise ProfileError(describe(e, source)) from None
        raise


def load_profile(path: str | Path) -> Profile:
    data = read_mapping(path, "profile")
    return profile_from_mapping(data, str(path))


def save_profile(profile: Profile, path: str | Path) -> None:
    from ..io import atomic_write_json
    atomic_write_json(path, profile.model_dump(mode="json"))
