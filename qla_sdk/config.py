"""Dataclass configs from plain dicts (YAML/JSON), validated before any work starts.

``from_dict(Config, data)`` checks every key against the dataclass fields (an unknown key is named, with the
closest known one), every value against its type annotation (nested dataclasses, ``X | None``, lists, tuples,
``Literal``), then lets the dataclass's own ``__post_init__`` check the values together.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from qla_sdk.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """``cls`` built from ``data``; a ``ConfigError`` names its place (``where`` and the keys under it) and carries
    the dotted key it concerns as ``error.key`` (``config.lat.train.epochs``), for callers that know where a key
    came from (``recipe.config`` names the ``--set`` that gave it)."""
    if not isinstance(data, dict):
        raise _at(where, ConfigError(f"{where}: expected a mapping of options, got {type(data).__name__} {data!r}"))
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        error = ConfigError(f"{where}: unknown key {key!r}{hint} Known keys: {', '.join(fields)}")
        raise _at(f"{where}.{key}", error)
    values = {}
    for key, value in data.items():
        try:
            values[key] = _coerce(hints[key], value, f"{where}.{key}")
        except ConfigError as exc:
            raise _at(f"{where}.{key}", exc) from None  # a nested section's error keeps its own, deeper key
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _at(f"{where}.{missing[0]}", ConfigError(f"{where}: missing required key {missing[0]!r}"))
    try:
        return cls(**values)
    except (ConfigError, TypeError, ValueError) as exc:
        # a section's own check: its message starts with the field it is about where it names one ("doc_stride=0:")
        named = re.match(r"(\w+)\s*=", str(exc))
        key = f"{where}.{named.group(1)}" if named and named.group(1) in fields else where
        raise _at(key, ConfigError(f"{where}: {exc}")) from None


def _at(key: str, error: ConfigError) -> ConfigError:
    """``error`` with ``key``, unless a deeper call set one."""
    if getattr(error, "key", None) is None:
        error.key = key
    return error


def to_dict(config: Any) -> Any:
    """JSON/YAML-ready form of a config (paths as strings, tuples as lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, Path):
        return str(config)
    return config


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]  # with the key it concerns, where a nested section set one
        raise ConfigError(f"{where}: {value!r} matches none of {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not allowed; choose one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy integers too
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            # YAML 1.1 reads exponents without a dot (``lr: 2e-5``) as strings; users mean the number.
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not isinstance(value, (int, float)):  # np.float32(0.2) means 0.2, which its shortest repr gives
            value = _shortest_float(value)
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range (YAML reads 1e400-like digits as int)
            raise ConfigError(f"{where}: {value} is too large for a number") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {type(value).__name__} {value!r}")
        return Path(value)
    return value


def _shortest_float(value: numbers.Real) -> float:
    try:
        return float(str(value))
    except ValueError:  # a Fraction's str is "1/5"
        return float(value)


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder: give the recipe's YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        _check_unique_keys(yaml.compose(text, Loader=yaml.SafeLoader), path)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _check_unique_keys(node, path: Path, visited: set | None = None) -> None:
    """Refuse a key given twice in one mapping: YAML would keep its last value without a word, where an unknown key
    is refused."""
    import yaml

    visited = set() if visited is None else visited
    if id(node) in visited:  # an alias (&a ... *a) points back at a node already checked
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    line = key.start_mark.line + 1
                    raise ConfigError(f"{path}, line {line}: the key {key.value!r} is given twice in one section")
                seen.add(key.value)
            _check_unique_keys(value, path, visited)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_unique_keys(item, path, visited)
