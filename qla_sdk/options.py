"""Command-line flags generated from a config dataclass, so that an option is written once: its type, default and
validation in the dataclass (``__post_init__``), its help in ``field(metadata={"help": ...})``. The recipe's YAML
sections are the same dataclasses (``qla_sdk.config.from_dict``).

``add_options(parser, Config)`` adds ``--field-name`` for every field (``metadata["aliases"]`` adds other spellings,
``metadata["choices"]`` restricts the values; a ``list[X]`` or ``tuple[X, ...]`` field takes one or more values);
``options_from_args(Config, args)`` builds the config back. Help strings name a default as ``%(default)s``, so the
default is written once too.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal


def option(default: Any = dataclasses.MISSING, help: str | None = None, **extra: Any) -> Any:
    """A dataclass field with its flag's help (and ``aliases``/``choices``); without ``default`` it is required.
    ``default_factory=...`` goes in ``extra`` like in ``dataclasses.field``."""
    factory = extra.pop("default_factory", dataclasses.MISSING)
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help, **extra})


def add_options(
    parser: argparse.ArgumentParser | Any, cls: type, exclude: typing.Iterable[str] = (), prefix: str = ""
) -> None:
    """Add one flag per field of the dataclass ``cls`` (except ``exclude``) to ``parser`` or an argument group.
    ``prefix`` names the flags of a config whose field names alone would be unclear or taken: ``prefix="augment"``
    makes ``copies`` ``--augment-copies``; give ``options_from_args`` the same prefix (``aliases`` are taken as
    written)."""
    hints = typing.get_type_hints(cls)
    skip = set(exclude)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        dest = _dest(prefix, f.name)
        flags = ["--" + dest.replace("_", "-"), *f.metadata.get("aliases", ())]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        item = _list_item(hints[f.name])
        kind, choices = _flag_type(hints[f.name] if item is None else item, f.name, cls)
        kwargs: dict[str, Any] = {"dest": dest, "help": f.metadata.get("help")}
        if kind is bool:
            if default is False:
                kwargs.update(action="store_true", default=False)
            else:
                kwargs.update(action=argparse.BooleanOptionalAction, default=default)
        else:
            kwargs.update(type=kind, default=default, required=required)
            if item is not None:
                kwargs["nargs"] = "+"
            choices = f.metadata.get("choices", choices)
            if choices:
                kwargs["choices"] = list(choices)
        parser.add_argument(*flags, **kwargs)


def options_from_args(cls: type, args: argparse.Namespace, prefix: str = "", **values: Any):
    """``cls`` from the flags ``add_options`` added (fields without a flag keep their default), plus ``values``."""
    given = {
        f.name: getattr(args, _dest(prefix, f.name))
        for f in dataclasses.fields(cls)
        if f.init and hasattr(args, _dest(prefix, f.name))
    }
    return cls(**{**given, **values})


def _dest(prefix: str, name: str) -> str:
    return f"{prefix}_{name}" if prefix else name


def option_names(cls: type, exclude: typing.Iterable[str] = (), prefix: str = "") -> set[str]:
    """The fields ``add_options`` makes flags of (their ``args`` names, with ``prefix``)."""
    skip = set(exclude)
    return {_dest(prefix, f.name) for f in dataclasses.fields(cls) if f.init and f.name not in skip}


def _list_item(tp: Any) -> Any:
    """The item type of a ``list[X]`` (or ``list[X] | None``) field, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) != 1:
            return None
        tp = members[0]
    if typing.get_origin(tp) is list:
        args = typing.get_args(tp)
        return args[0] if args else str
    if typing.get_origin(tp) is tuple and len(typing.get_args(tp)) == 2 and typing.get_args(tp)[1] is Ellipsis:
        return typing.get_args(tp)[0]  # tuple[X, ...]: the list's immutable twin, for frozen configs
    return None


def _flag_type(tp: Any, name: str, cls: type) -> tuple[type, tuple | None]:
    """The argparse ``type`` (and choices) of a field annotation: ``X | None`` is ``X``; a union with ``str`` or
    ``Path`` reads text (the dataclass parses it); ``Literal`` gives choices."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return _flag_type(members[0], name, cls)
        if str in members or Path in members:
            return str, None
        raise TypeError(f"{cls.__name__}.{name}: cannot make a flag of {tp}")
    if typing.get_origin(tp) is Literal:
        return type(args[0]), args
    if tp in (bool, int, float, str):
        return tp, None
    if tp is Path:
        return str, None
    raise TypeError(f"{cls.__name__}.{name}: cannot make a flag of {tp}")
