"""Paths read from a database row or a request stay inside the folder they belong to."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def within(root: str | Path, path: str | Path) -> Path | None:
    """``root / path`` resolved (links followed), or None when it leaves ``root``.

    A relative ``path`` is below ``root``; an absolute one must itself lie inside it; a
    ``..`` or a link that leads out of ``root`` gives None. The dashboard serves, and
    retention deletes, nothing else.
    """
    base = Path(root).resolve()
    file = (base / path).resolve()
    return file if file.is_relative_to(base) else None


def within_any(roots: Iterable[str | Path], path: str | Path) -> Path | None:
    """:func:`within` the first of ``roots`` that holds ``path``; None when none does."""
    for root in roots:
        file = within(root, path)
        if file is not None:
            return file
    return None
