"""Turn pydantic validation errors into messages naming the file, the field and what was expected."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError

# a model validator names the field it refuses by starting its message with "FIELD: "
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.*)$", re.S)


def describe(err: ValidationError, source: str) -> str:
    """One line: `source: field 'a.b': what was wrong (got X); field 'c': ...`."""
    parts = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        msg = e["msg"].removeprefix("Value error, ")
        m = _FIELD_PREFIX.match(msg) if e["type"] == "value_error" else None
        if m:
            loc, msg = loc + [m.group(1)], m.group(2)
        field = ".".join(loc) or "(top level)"
        got = e.get("input")
        got_s = "" if isinstance(got, (dict, list)) or m else f" (got {got!r})"
        parts.append(f"field '{field}': {' '.join(msg.split())}{got_s}")
    return f"{source}: " + "; ".join(parts)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _pairs_without_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def parse_text(text: str, path: Path, kind: str):
    """YAML (or JSON for a .json file) refusing duplicate keys; ConfigError naming the file."""
    is_json = path.suffix == ".json"
    try:
        if is_json:
            return json.loads(text, object_pairs_hook=_pairs_without_duplicates)
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, ValueError) as e:
        one_line = " ".join(str(e).split())
        raise ConfigError(f"{path}: malformed {kind} ({'JSON' if is_json else 'YAML'}): {one_line}") from None


def read_text(path: str | Path, kind: str) -> str:
    """A file's text, or ConfigError naming the file: missing, a directory, unreadable, not UTF-8."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{kind} file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a {kind} file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {kind} file {path}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a {kind} file: byte 0x{raw[e.start]:02x} at offset {e.start} "
                          f"is not UTF-8 text") from None


def read_mapping(path: str | Path, kind: str) -> dict:
    """Read a YAML or JSON file into a mapping, or raise ConfigError naming the file."""
    path = Path(path)
    text = read_text(path, kind)
    if not text.strip():
        raise ConfigError(f"{path}: empty file, expected a {kind} (a mapping)")
    data = parse_text(text, path, kind)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {kind} must be a mapping at the top level, got {type(data).__name__}")
    return data


def validate(model: type[BaseModel], data: dict, source: str):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, source)) from None
