"""Scenario (YAML): device, workload, models and quantization, policy, threads, profile.

    name: assembly-pixel_5a
    device: pixel_5a                 # a name from the device catalog, or a mapping
    workload: {task: assembly, clips: 5, prompt: "make a highlight reel", top_k: 5}
    models: {preset: paper, quant: torchao-int8}
    policy: reuse-parallel
    threads: {encoder: 1, decoder: 1, main: 2}
    profile: ../../profiles/paper-pixel_5a.json   # relative to this file

Errors name the file, the field and what was expected.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigError, valid_names
from .names import BACKENDS as TORCH_BACKENDS, EXECUTORCH_BACKENDS, POLICIES, PRESETS, TASKS
from .pipeline import is_file_ref, scenario_pipeline
from .validation import read_mapping, validate

BACKENDS = TORCH_BACKENDS + EXECUTORCH_BACKENDS

GB = 1e9
MB = 1e6
CATALOG = Path(__file__).resolve().parent.parent / "data" / "devices.yaml"
# clips x requests of one scenario: a plan holds a few steps per clip and request, the simulator
# takes ~1 ms per clip; beyond this bound the plan alone would not fit in a phone's RAM
MAX_PLAN_CLIPS = 100_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v, info):
        """YAML `clips: true` is a bool, which pydantic would read as 1: refuse it."""
        if isinstance(v, bool) and "bool" not in str(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"expected {_kind(cls.model_fields[info.field_name].annotation)}, got a boolean")
        return v


def _kind(annotation) -> str:
    text = str(annotation)
    return "a number" if ("int" in text or "float" in text) else "a value of type " + text.replace("typing.", "")


class Device(Strict):
    """What the simulator knows of a device. `ram_bytes` is the RAM the simulator gives the app
    (the paper's figure for its phones); `os_reserved_bytes` what the OS keeps of it, which the
    memory report takes off (`app_budget_bytes`). `runtime_baseline_bytes`: the app's runtime before
    any module, charged by the memory report where a profile has not measured one."""

    name: str = "custom"
    cores: int = Field(gt=0)
    ram_bytes: int = Field(gt=0)
    storage_read_bytes_per_s: float = Field(gt=0)
    page_cache_read_bytes_per_s: float = Field(default=4e9, gt=0)
    # For projection and energy (issue 7); optional.
    soc: str | None = None
    compute_gflops: float | None = Field(default=None, gt=0)
    memory_bandwidth_bytes_per_s: float | None = Field(default=None, gt=0)
    cpu_w: float = Field(default=2.0, ge=0)
    dram_w: float = Field(default=0.2, ge=0)
    # energy (schema/energy.py): the rule, `union` (the paper's F.7: cpu_w while any lane is busy) or
    # `per-core` (core_w per busy core; core_w default cpu_w / cores); where cpu_w and dram_w come from
    energy_rule: Literal["union", "per-core"] = "union"
    core_w: float | None = Field(default=None, ge=0)
    power_source: str | None = None   # None: F.7's when cpu_w and dram_w are its 2.0 / 0.2 W, else "not given"
    # memory report (report/memory_report.py): what the OS keeps, the runtime's default baseline, and why
    os_reserved_bytes: int = Field(default=0, ge=0)
    runtime_baseline_bytes: int | None = Field(default=None, ge=0)
    memory_source: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _units(cls, data):
        if isinstance(data, dict):
            data = dict(data)
            for alias, field, unit, scale in UNIT_ALIASES:
                if alias in data:
                    data[field] = _number(data.pop(alias), alias, unit) * scale
                    if field != "storage_read_bytes_per_s":
                        data[field] = int(data[field])
        return data

    def app_budget_bytes(self) -> int:
        """The RAM the app may use: the device's RAM less what the OS keeps."""
        return max(0, self.ram_bytes - self.os_reserved_bytes)


# (catalog alias, field, unit, factor): `ram_gb: 6` is `ram_bytes: 6e9`
UNIT_ALIASES = (("ram_gb", "ram_bytes", "GB", GB), ("storage_read_mb_s", "storage_read_bytes_per_s", "MB/s", MB),
                ("os_reserved_gb", "os_reserved_bytes", "GB", GB),
                ("runtime_baseline_mb", "runtime_baseline_bytes", "MB", MB))


def _number(value, field: str, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field}: expected a number of {unit}, got {value!r}")
    return float(value)


class Video(Strict):
    path: str | None = None
    duration_s: float | None = Field(default=None, gt=0)


class Workload(Strict):
    task: str | None = None     # a bundled pipeline's name (the scenario's `pipeline` takes precedence)
    clips: int | None = Field(default=None, gt=0)
    videos: list[Video] | None = None
    queries: list[str] = ["a person is cooking"]
    prompt: str = "make a highlight reel"
    top_k: int = Field(default=5, gt=0)
    clip_length_s: float = Field(default=10.0, gt=0)
    clip_stride_s: float = Field(default=5.0, gt=0)
    frames_per_clip: int = Field(default=6, gt=0)
    frame_size: int = Field(default=224, gt=0)
    beam: int = Field(default=4, gt=0)
    caption_tokens: int = Field(default=23, gt=0)
    script_tokens: int = Field(default=64, gt=0)
    queue_size: int = Field(default=2, gt=0)   # clips of features (parallel lanes) and of decoded frames in flight
    # several requests on the same clips: a count (each with `prompt` / `queries`), or a list of
    # prompts (assembly, summarization, qa) or of query lists (retrieval); `think_s` between them
    requests: int | list[str] | list[list[str]] = 1
    think_s: float = Field(default=0.0, ge=0)

    @field_validator("task")
    @classmethod
    def _task(cls, v):
        if v is not None and v not in TASKS:
            raise ValueError(valid_names("task", v, TASKS))
        return v

    @model_validator(mode="after")
    def _check(self):
        r = self.requests
        if isinstance(r, bool) or (isinstance(r, int) and r < 1):
            raise ValueError("requests: a count of at least 1, or a non-empty list")
        if isinstance(r, list):
            if not r:
                raise ValueError("requests: an empty list (give at least one prompt or query list)")
            want_lists = self.task == "retrieval" if self.task else isinstance(r[0], list)
            for i, item in enumerate(r):
                if want_lists != isinstance(item, list) or (isinstance(item, list) and not item) or not item:
                    kind = "a non-empty list of queries" if want_lists else "a non-empty prompt"
                    what = f"task {self.task!r}" if self.task else "a list like its first item"
                    raise ValueError(f"requests[{i}]: expected {kind} for {what}")
        n = self.clip_count() * self.request_count()
        if n > MAX_PLAN_CLIPS:
            raise ValueError(f"{'clips' if self.clips is not None else 'videos'}: {self.clip_count()} clips x "
                             f"{self.request_count()} requests is above the bound of {MAX_PLAN_CLIPS} "
                             "(a plan that large could not be built or run)")
        return self

    def request_count(self) -> int:
        return self.requests if isinstance(self.requests, int) else len(self.requests)

    def request_prompt(self, k: int) -> str:
        """Request k's prompt: the k-th of a list of prompts, else `prompt`."""
        if isinstance(self.requests, list) and isinstance(self.requests[k], str):
            return self.requests[k]
        return self.prompt

    def request_queries(self, k: int) -> list[str]:
        """Request k's queries: the k-th of a list of query lists, else `queries`."""
        if isinstance(self.requests, list) and isinstance(self.requests[k], list):
            return list(self.requests[k])
        return list(self.queries)

    def clip_count(self) -> int:
        """Clips in the workload: `clips`, or those cut from `videos` by length and stride."""
        if self.clips is not None:
            return self.clips
        if self.videos:
            if any(v.duration_s is None for v in self.videos):
                return len(self.videos)  # durations known only when the runner opens them
            return sum(len(clip_spans(v.duration_s, self.clip_length_s, self.clip_stride_s)) for v in self.videos)
        return 5


def clip_spans(duration_s: float, length_s: float, stride_s: float) -> list[tuple[float, float]]:
    """Clips of `length_s` every `stride_s` (paper appendix A); a shorter video is one clip."""
    if duration_s <= length_s + 1e-9:
        return [(0.0, duration_s)]
    n = int(math.floor((duration_s - length_s) / stride_s + 1e-9)) + 1
    return [(i * stride_s, i * stride_s + length_s) for i in range(n)]


class Models(Strict):
    preset: str = "small"
    quant: str = "fp32"
    # per-model backend overrides, e.g. {sentence-encoder: fp32}
    quant_by_model: dict[str, str] = {}

    @model_validator(mode="after")
    def _check(self):
        if self.preset not in PRESETS:
            raise ValueError("preset: " + valid_names("preset", self.preset, PRESETS))
        if self.quant not in BACKENDS:
            raise ValueError("quant: " + valid_names("quantization backend", self.quant, BACKENDS))
        for m, q in self.quant_by_model.items():   # zoo models, or a pipeline's own module names
            if q not in BACKENDS:
                raise ValueError(f"quant_by_model.{m}: " + valid_names("quantization backend", q, BACKENDS))
        return self

    def quant_of(self, model: str) -> str:
        return self.quant_by_model.get(model, self.quant)


class Threads(Strict):
    """Intra-op threads per lane: `main` for serial stages; under reuse-parallel each per-clip
    stage's lane (the paper's `encoder` and `decoder`; a pipeline's lane or module names)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    main: int = Field(default=2, gt=0)
    encoder: int = Field(default=1, gt=0)
    decoder: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _lanes(self):
        for lane, n in (self.model_extra or {}).items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"{lane}: expected a thread count of at least 1, got {n!r}")
        return self

    def of(self, lane: str, module: str | None = None) -> int:
        """Threads of `lane`, else of the module running on it, else 1."""
        extra = self.model_extra or {}
        if lane in type(self).model_fields:
            return int(getattr(self, lane))
        return int(extra.get(lane) or (extra.get(module) if module else None) or 1)


class Schedule(Strict):
    """How a budget policy (plan/budget.py) schedules: `lanes` serial (one lane, the per-clip
    stages one after another) or parallel (each per-clip stage on its lane, as reuse-parallel);
    `modules`: per module `keep` (never evicted once loaded), `reload` (freed after each phase
    that uses it) or `rule` (the default: kept while the plan fits, evicted by the policy's rule)."""
    lanes: Literal["serial", "parallel"] = "serial"
    modules: dict[str, Literal["keep", "reload", "rule"]] = {}


class Scenario(Strict):
    name: str = "scenario"
    device: Device
    workload: Workload
    models: Models = Models()
    policy: str = "reuse-parallel"
    threads: Threads = Threads()
    schedule: Schedule = Schedule()    # budget policies only
    profile: str | None = None
    # the pipeline: a bundled name or a pipeline file (relative to this file); default: workload.task
    pipeline: str | None = None
    # which modules: `auto` (the policy's: reload and baseline-resident take the pipeline's
    # `baseline` variant where it has one), `none` (the pipeline's own modules), or a variant name
    variant: str = "auto"
    # page cache when the run starts: cold (no weight file cached) or warm (every file the plan
    # loads is cached, as far as free RAM allows). Used by the simulator.
    page_cache: Literal["cold", "warm"] = "cold"

    @field_validator("policy")
    @classmethod
    def _policy(cls, v):
        if v not in POLICIES:
            raise ValueError(valid_names("policy", v, POLICIES))
        return v

    @model_validator(mode="after")
    def _pipeline(self):
        if self.pipeline is None and self.workload.task is None:
            raise ValueError("pipeline: missing (a bundled pipeline name or a pipeline file; "
                             f"or workload.task, one of {', '.join(TASKS)})")
        return self

    def with_changes(self, **changes) -> "Scenario":
        """A copy with dotted-path changes (`workload.clips=10`), validated again."""
        data = self.model_dump()
        for dotted, value in changes.items():
            set_dotted(data, dotted, value)
        return validate(Scenario, data, f"scenario {self.name!r}")


def set_dotted(data: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            raise ConfigError(f"no field {dotted!r} in scenario")
        node = node[k]
    node[keys[-1]] = value


def load_devices(path: str | Path = CATALOG) -> dict[str, Device]:
    data = read_mapping(path, "device catalog")
    devices = {}
    for name, spec in (data.get("devices") or {}).items():
        spec = {"name": name, **(spec or {})}
        devices[name] = validate(Device, spec, f"{path}: devices.{name}")
    return devices


def resolve_device(value, source: str) -> dict:
    if isinstance(value, str):
        devices = load_devices()
        if value not in devices:
            raise ConfigError(f"{source}: field 'device': " + valid_names("device", value, devices))
        return devices[value].model_dump()
    if isinstance(value, dict) and "base" in value:  # a catalog device with changes
        base = resolve_device(value["base"], source)
        changes = {k: v for k, v in value.items() if k != "base"}
        if {"cpu_w", "dram_w"} & set(changes):   # other power figures: the base's source is not theirs
            base.pop("power_source", None)
        return {**base, **changes}
    return value


def scenario_from_mapping(data: dict, source: str, base_dir: Path | None = None) -> Scenario:
    data = dict(data)
    if "device" not in data:
        raise ConfigError(f"{source}: field 'device': missing (a device name from {CATALOG.name} or a mapping)")
    data["device"] = resolve_device(data["device"], source)
    scenario = validate(Scenario, data, source)
    if base_dir is not None:
        for field in ("profile", "pipeline"):
            value = getattr(scenario, field)
            if value and (field == "profile" or is_file_ref(value)) and not Path(value).is_absolute():
                scenario = scenario.model_copy(update={field: str((base_dir / value).resolve())})
    scenario_pipeline(scenario)   # read and check it now: its errors name its file, stage and field
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    data = read_mapping(path, "scenario")
    data.setdefault("name", path.stem)
    return scenario_from_mapping(data, str(path), path.parent)


def dump_scenario(scenario: Scenario) -> str:
    return yaml.safe_dump(scenario.model_dump(exclude_defaults=False), sort_keys=False)
