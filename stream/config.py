"""YAML configs mapped one-to-one onto constructor dataclasses, strictly checked."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A config file that cannot be used as written."""


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping.

    Raises:
        ConfigError: If the file is missing, is not YAML, or is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; see configs/ for examples")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of sections, got {type(data).__name__}")
    return data


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value, tp, where: str):
    """Check ``value`` against the type hint ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0]
        if len(args) != 2 or args[1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
        return tuple(_coerce(v, inner, where) for v in value)
    if dataclasses.is_dataclass(tp):   # a nested section, e.g. detector.drift
        if isinstance(value, tp):
            return value
        return build(tp, value, where)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def build(cls: type, data: dict | None, where: str, **overrides):
    """Build dataclass ``cls`` from a config section, checking every key and type.

    Args:
        cls: A dataclass whose fields are the section's valid keys.
        data: The section (None: all defaults).
        where: ``file: section`` for error messages.
        **overrides: Values that win over the file (command-line flags); None is ignored.

    Raises:
        ConfigError: Naming the file, the key, and what is valid.
    """
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys, got {data!r}")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(names)}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def check_sections(data: dict, path: str | Path, sections: typing.Iterable[str],
                   origins: dict[tuple[str, ...], Path] | None = None) -> None:
    """Fail on a top-level section that is not one of ``sections``, naming the file that
    wrote it (``origins``, from :func:`load_extending`; else ``path``)."""
    valid = list(sections)
    for key in data:
        if key not in valid:
            where = (origins or {}).get((str(key),), path)
            raise ConfigError(f"{where}: unknown section {key!r}; valid sections: "
                              f"{', '.join(valid)}")


#: The key with which a config names the config it builds on.
EXTENDS = "extends"


def load_extending(path: str | Path) -> tuple[dict, dict[tuple[str, ...], Path]]:
    """Read a YAML config and, through its ``extends:`` key, the configs it builds on.

    ``extends: base.yaml`` (a path relative to the file that names it) reads that file
    first, then lays this one over it: mappings merge key by key, at any depth; a list,
    a scalar or null replaces what the base says. A base may extend another in turn.

    Args:
        path: The YAML file.

    Returns:
        The merged mapping (without ``extends``), and for every key path that a file
        wrote (``("training", "epochs")``, and ``("training",)`` for the section) the
        file whose value won, so an error can name the file to change.

    Raises:
        ConfigError: A missing or malformed file, an ``extends`` that is not a path, or
            a circle of files extending each other.
    """
    return _load_chain(Path(path), ())


def _load_chain(path: Path, chain: tuple[Path, ...]) -> tuple[dict, dict]:
    resolved = path.resolve()
    if resolved in chain:
        circle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"{path}: extends circles back to itself ({circle}); "
                          "remove one of these extends")
    data = load_yaml(path)
    origins = _origins(data, path)
    if EXTENDS not in data:
        return data, origins
    base_name = data.pop(EXTENDS)
    origins.pop((EXTENDS,), None)
    if not isinstance(base_name, str) or not base_name:
        raise ConfigError(f"{path}: extends must be the path of another config (relative "
                          f"to this file), got {base_name!r}")
    base_path = path.parent / base_name
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends {base_name!r}: {base_path} not found "
                          "(the path is relative to the extending file)")
    base, base_origins = _load_chain(base_path, (*chain, resolved))
    return _merge(base, data), {**base_origins, **origins}


def _origins(data: dict, path: Path, prefix: tuple[str, ...] = ()) -> dict:
    """Every key path in ``data`` (nested mappings too), each mapped to ``path``."""
    found = {}
    for key, value in data.items():
        found[(*prefix, str(key))] = path
        if isinstance(value, dict):
            found.update(_origins(value, path, (*prefix, str(key))))
    return found


def _merge(base: dict, over: dict) -> dict:
    """``over`` laid on ``base``: mappings merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_keys(cls: type, data: dict | None, section: str,
               origins: dict[tuple[str, ...], Path]) -> None:
    """Check each key of a merged section against ``cls`` (its name and type), naming the
    file that wrote it: in a config that extends others, the one to change.

    Raises:
        ConfigError: ``file: section: unknown key ...`` or ``file: section.key: ...``.
    """
    if not isinstance(data, dict):
        return      # build() says what is wrong with the section itself
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        where = f"{origins.get((section, str(key)), '?')}: {section}"
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(names)}")
        _coerce(value, hints[key], f"{where}.{key}")
