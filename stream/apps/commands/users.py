"""``vadstream users add|token|remove|list``: the dashboard's login (the parser and handler
live with the credentials code, ``stream.apps.users``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``users``."""
    from stream.apps.users import add_users_parser

    add_users_parser(sub)
