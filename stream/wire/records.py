"""Frozen dataclasses read from and written to JSON objects, field by field, checked.

What :mod:`stream.wire.topics` builds its messages on. Writing keeps the declaration
order of the fields, so the JSON is stable byte for byte; reading checks each field
against its type hint (``str``, ``int``, ``float`` (an int is accepted, and kept as
sent), ``bool``, ``X | None``, ``list[X]``, ``dict[str, X]``, nested records) and
ignores keys it does not know. A field whose metadata has ``omit_default`` is left out
of the JSON while it holds its default; one marked ``part`` travels outside it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import field


class RecordError(ValueError):
    """A JSON object that does not fit its record: names where, and the field."""


def optional(default=None):
    """A field left out of the JSON while it holds ``default``."""
    return field(default=default, metadata={"omit_default": True})


class Record:
    """A dataclass read from and written to a JSON object, field by field, in order."""

    def to_dict(self) -> dict:
        """The JSON-ready dict: every field in declaration order, nested records as dicts."""
        out = {}
        for f in dataclasses.fields(self):
            if f.metadata.get("part"):
                continue
            value = getattr(self, f.name)
            if f.metadata.get("omit_default") and value == f.default:
                continue
            out[f.name] = _dump(value)
        return out

    @classmethod
    def from_dict(cls, data: object, *, where: str | None = None, **parts):
        """Read a record from its dict form, checking every field; extra keys are ignored.

        Args:
            data: The parsed JSON object.
            where: What the object is, for error messages (default: the class name).
            **parts: Fields that travel outside the JSON (marked ``part`` in their
                metadata, e.g. an overlay's JPEG).

        Raises:
            RecordError: On a missing field or a wrong type, naming ``where`` and the field.
        """
        return _read(cls, data, where or cls.__name__, "", parts)


def _dump(value):
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    return value


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _read(cls: type, data: object, where: str, prefix: str, parts: dict | None = None):
    if not isinstance(data, dict):
        what = f"field {prefix[:-1]!r}" if prefix else "the payload"
        raise RecordError(f"{where}: {what} must be a JSON object, got {short(data)}")
    hints = _hints(cls)
    values = dict(parts or {})
    for f in dataclasses.fields(cls):
        if f.metadata.get("part"):
            continue
        path = prefix + f.name
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where}: missing field {path!r}")
            continue
        values[f.name] = _value(data[f.name], hints[f.name], where, path)
    return cls(**values)


def _value(value, hint, where: str, path: str):
    """``value`` checked against the type hint ``hint`` (numbers are kept as sent, so a
    message read and written again is the same bytes)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(hint)):
            return None
        records = [a for a in args if dataclasses.is_dataclass(a)]
        if records and isinstance(value, dict):
            # Records of a union are told apart by a marker key (IdleStream's idle_ended).
            chosen = next((a for a in records if getattr(a, "MARK", None) in value), None)
            return _value(value, chosen or records[0], where, path)
        return _value(value, args[0], where, path)
    if origin is list:
        if not isinstance(value, list):
            raise _wrong(where, path, "a list", value)
        (inner,) = typing.get_args(hint)
        return [_value(v, inner, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, path, "an object", value)
        inner = typing.get_args(hint)[1]
        return {k: _value(v, inner, where, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _read(hint, value, where, path + ".")
    if hint is bool:
        if not isinstance(value, bool):
            raise _wrong(where, path, "true or false", value)
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong(where, path, "an integer", value)
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong(where, path, "a number", value)
    elif hint is str:
        if not isinstance(value, str):
            raise _wrong(where, path, "a string", value)
    else:  # pragma: no cover - a field type this reader was not taught
        raise TypeError(f"{path}: unsupported field type {hint}")
    return value


def short(value) -> str:
    text = json.dumps(value) if not isinstance(value, (bytes, bytearray)) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _wrong(where: str, path: str, expected: str, value) -> RecordError:
    return RecordError(f"{where}: field {path!r} must be {expected}, got {short(value)}")
