"""Command-line flags generated from a config dataclass: one ``--field-name`` per field.

The flag's type comes from the field's type hint, its help from the class docstring's
``Args:`` section, and its default is None: a flag that is not given leaves the value
to the YAML config (or the dataclass default), as ``stream.config.build``'s overrides
do. A field added to the dataclass gets its flag with no edit here or in the CLI.

Types: ``str``, ``int``, ``float``, ``Path``; ``bool`` as ``--x/--no-x``;
``Literal[...]`` as choices; ``T | None`` as ``T``; ``tuple[T, ...]`` and ``list[T]`` as
one or more values (``tuple[A, B]``: exactly two); anything else (a mapping, say) as
JSON text, checked against the type by ``stream.config.build``.

A command's own options (no YAML underneath) are a dataclass too, added with
``defaults=True``: the fields' defaults are the flags' defaults. A field's
``metadata={"flag": {...}}`` holds ``add_argument`` keywords that replace the generated
ones (``action="append"``, ``metavar``, ``choices``), ``aliases`` (more names of the
same flag) and ``show_default`` (False: the help names the default in its own words; a
string: the default as the help shows it); :func:`flag` writes such a field.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path

_SECTION = re.compile(r"^\s*([A-Z][A-Za-z ]*):\s*$")
_ARG = re.compile(r"^(\s*)(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def docstring_args(cls: type) -> dict[str, str]:
    """The ``Args:`` entries of a Google-style class docstring, as one line each.

    Returns:
        ``{name: text}``; empty when the docstring has no ``Args:`` section.
    """
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    out: dict[str, str] = {}
    inside, indent, name = False, None, None
    for line in lines:
        section = _SECTION.match(line)
        if section:
            inside, indent, name = section.group(1) == "Args", None, None
            continue
        if not inside or not line.strip():
            continue
        match = _ARG.match(line)
        depth = len(line) - len(line.lstrip())
        if match and (indent is None or depth == indent):
            indent, name = depth, match.group(2)
            out[name] = match.group(3).strip()
        elif name is not None and depth > (indent or 0):
            out[name] = f"{out[name]} {line.strip()}"
        else:        # dedented past the entries: the section ended
            inside = False
    return out


def flag(default=dataclasses.MISSING, *, default_factory=dataclasses.MISSING,
         **argparse_kwargs) -> dataclasses.Field:
    """A dataclass field whose flag takes ``argparse_kwargs`` (``aliases``: more names).

    Example: ``topic: list[str] | None = flag(None, action="append")``.
    """
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"flag": argparse_kwargs})


def _json_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({err.msg})") from None


def _number_or_word(text: str) -> float | str:
    """A flag that takes a number or a word (``--gate 96`` / ``--gate auto``)."""
    try:
        return float(text)
    except ValueError:
        return text


def _flag_kwargs(hint) -> dict:
    """``add_argument`` keywords for a field of type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _flag_kwargs(args[0])
        if set(args) == {float, str}:
            return {"type": _number_or_word}
    elif origin is typing.Literal:
        values = typing.get_args(hint)
        return {"choices": list(values), "type": type(values[0])}
    elif origin in (tuple, list):
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(set(args)) == 1 and args[0] in (str, int, float):
                return {"nargs": len(args), "type": args[0]}
        elif args and args[0] in (str, int, float, Path):
            return {"nargs": "*", "type": args[0]}
    elif hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    elif hint in (str, int, float, Path):
        return {"type": hint}
    return {"type": _json_value, "metavar": "JSON"}


def _default_value(field: dataclasses.Field):
    """The field's default (``dataclasses.MISSING``: it has none)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _default_text(field: dataclasses.Field) -> str | None:
    value = _default_value(field)
    if value is dataclasses.MISSING or value == "" or value is None or value == []:
        return None
    if dataclasses.is_dataclass(value):   # a nested section: as the JSON the flag takes
        return json.dumps(dataclasses.asdict(value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, skip: Iterable[str] = (),
                        rename: Mapping[str, str] | None = None,
                        choices: Mapping[str, Iterable] | None = None,
                        defaults: bool = False) -> list[str]:
    """Add one flag per field of dataclass ``cls``; each stores under the field's name.

    Args:
        parser: Parser, or argument group, to add to.
        cls: A dataclass with a Google-style docstring (its ``Args:`` give the help).
        skip: Fields that get no flag.
        rename: Field name -> flag name without dashes (default: the name with ``_`` as
            ``-``), e.g. ``{"history_s": "history"}``.
        choices: Field name -> the values a flag accepts.
        defaults: False (a config section): a flag not given is None, leaving the value to
            the YAML or the dataclass. True (a command's own options): the field's default
            is the flag's, a field with no default is a required flag, and a ``bool`` that
            defaults to False is a plain switch (``--x``, no ``--no-x``).

    Returns:
        The flags added, e.g. ``["--bind", "--max-batch"]``.
    """
    rename, choices, skip = dict(rename or {}), dict(choices or {}), set(skip)
    hints = typing.get_type_hints(cls)
    docs = docstring_args(cls)
    added = []
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.init:
            continue
        name = rename.get(field.name, field.name.replace("_", "-"))
        kwargs = _flag_kwargs(hints[field.name])
        value = _default_value(field) if defaults else None
        if value is dataclasses.MISSING:
            kwargs["required"], value = True, None
        elif defaults and hints[field.name] is bool and value is False:
            kwargs = {"action": "store_true"}
        if field.name in choices:
            kwargs["choices"] = list(choices[field.name])
        given = dict(field.metadata.get("flag", {}))
        aliases, shown = given.pop("aliases", ()), given.pop("show_default", True)
        if "action" in given and "nargs" not in given:
            kwargs.pop("nargs", None)         # an appended flag takes one value a time
        kwargs.update(given)
        if "action" not in kwargs and "choices" not in kwargs:
            kwargs.setdefault("metavar", name.upper().replace("-", "_"))
        # Docstrings mark code as ``x``; a terminal shows it plain.
        text = docs.get(field.name, field.name.replace("_", " ")).replace("``", "")
        if isinstance(shown, str):
            default = shown
        elif shown and kwargs.get("action") != "store_true":
            default = _default_text(field)
        else:                                 # a switch's default goes without saying
            default = None
        if default is not None:
            text = f"{text} (default: {default})"
        # argparse formats help with %: a literal one is written %%.
        parser.add_argument(f"--{name}", *aliases, dest=field.name, default=value,
                            help=text.replace("%", "%%"), **kwargs)
        added.append(f"--{name}")
    return added


def overrides_from_args(args: argparse.Namespace, cls: type) -> dict:
    """The flags of ``cls``'s fields that were given: ``{field: value}``, None left out
    (so the config file's value, or the dataclass default, stays)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}
