"""Times as people write them: Unix seconds, ISO 8601, or an age."""

from __future__ import annotations

import datetime as dt
import re
import time


def parse_time(text: str | None, what: str = "--since") -> float | None:
    """Unix seconds, an ISO 8601 time, or an age such as ``90s``, ``15m``, ``2h``, ``1d``.

    Args:
        text: The time as written (None: None).
        what: The option or parameter it came from, for the error message.

    Raises:
        ValueError: If ``text`` is none of these.
    """
    if text is None:
        return None
    age = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if age:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[age.group(2)]
        return time.time() - float(age.group(1)) * unit
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a time: use Unix seconds, ISO 8601 "
                         "(2026-11-24T10:00) or an age (90s, 15m, 2h, 1d)") from None
