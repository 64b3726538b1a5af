"""Turn pydantic validation errors into messages naming the file, the field and what was expected."""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError


def describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        got_s = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        lines.append(f"{source}: field '{field}': {e['msg']}{got_s}")
    return "\n".join(lines)


def read_mapping(path: str | Path, kind: str) -> dict:
    """Read a YAML or JSON file into a mapping, or raise ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{kind} file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {kind} file {path}: {e.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: malformed {kind} ({'JSON' if path.suffix == '.json' else 'YAML'}): {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {kind} must be a mapping at the top level, got {type(data).__name__}")
    return data


def validate(model: type[BaseModel], data: dict, source: str):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, source)) from None
