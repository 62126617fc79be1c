"""Where a weights stem's files are, without loading MXNet (a capture or the supervisor
reads a model's input contract through it: :func:`models.contract.read_contract`)."""

from __future__ import annotations

from pathlib import Path


def weights_paths(path: str | Path) -> tuple[Path, Path]:
    """The ``.params`` and ``.json`` paths for a weights stem or either file."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".params", ".json") else path
    return stem.with_name(stem.name + ".params"), stem.with_name(stem.name + ".json")
