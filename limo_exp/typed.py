"""Strict dataclasses from plain mappings: the parser behind ``limo_exp.config``.

``Section.from_dict(data, path)`` builds a dataclass, recursing into nested sections, lists and
dicts; an unknown key, a missing required key, a ``???`` placeholder or a value of the wrong type
raises ``ConfigError`` naming the key's full path (``train.lora.r``) and, for an unknown key,
the valid ones. ints are accepted where a float is declared; nothing else is coerced.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """A config key that is unknown, missing or of the wrong type; the message names its full path."""


class Section:
    """A config group or sub-section: ``from_dict`` checks keys and types against the fields."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, path: str = ""):
        return _build(cls, data, path or _section_name(cls))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _section_name(cls: type) -> str:
    return cls.__name__.removesuffix("Config").lower()


def _build(cls: type, data: Mapping[str, Any] | None, path: str):
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__} {data!r:.60}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]}; valid keys of {path or 'the config'}: {names}"
        )
    kw = {}
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        if f.name in data:
            kw[f.name] = _value(hints[f.name], data[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing config key {key}")
    return cls(**kw)


def _value(tp: Any, v: Any, key: str) -> Any:
    if v == "???":
        raise ConfigError(f"{key} must be set (it is ??? in the config): add {key}=<value>")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _value(a, v, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[-1] if len(errors) == 1 else f"{key}: expected {_name(tp)}, got {v!r:.60}")
    if tp is Any:
        return v
    if isinstance(tp, type) and issubclass(tp, Section):
        return _build(tp, v, key)
    if origin is list:
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(v).__name__} {v!r:.60}")
        return [_value(args[0], x, f"{key}[{i}]") for i, x in enumerate(v)]
    if origin is dict:
        if not isinstance(v, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(v).__name__} {v!r:.60}")
        return {k: _value(args[1], x, f"{key}.{k}") for k, x in v.items()}
    ok = {
        bool: isinstance(v, bool),
        int: isinstance(v, int) and not isinstance(v, bool),
        float: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: isinstance(v, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"{key}: the schema uses an unsupported type {tp!r}")
    if not ok:
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(v).__name__} {v!r:.60}")
    return float(v) if tp is float else v


def _name(tp: Any) -> str:
    return " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(tp) if a is not type(None))


def one_of(key: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise ConfigError(f"{key}={value!r} is not one of {valid}")


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``: the MLflow params of a config."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = json.dumps(d) if isinstance(d, list) else str(d)
    return out


def hydra_quote(value: str) -> str:
    """A value as a quoted Hydra override value: commas, spaces and = stay one string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
