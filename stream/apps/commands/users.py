"""``vadstream users add|token|remove|list``: the dashboard's login (what it does:
``stream.apps.users``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from stream.apps.commands.common import add_options
from stream.defaults import EVENTS_DB


@dataclass(frozen=True)
class UsersOptions:
    """``vadstream users``: where the credentials are.

    Args:
        password_file: read the password from this file's first line instead of asking
        auth_file: the credentials file (default: dashboard-users.json beside
            --events-db); `vadstream serve --auth-file` the same
        events_db: the events store the dashboard reads (its --events-db)
    """

    password_file: Path | None = None
    auth_file: str | None = None
    events_db: str = EVENTS_DB


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``users`` (its positional ``ACTION [NAME]`` written here: a verb and its
    operand, no option)."""
    from stream.apps.users import cmd_users

    p = sub.add_parser("users", help="the dashboard's login: users (browser) and tokens "
                       "(API clients)")
    p.add_argument("action", choices=["add", "token", "remove", "list"],
                   help="add NAME: a user (its password asked, or --password-file); token "
                   "[NAME]: print a new API token; remove NAME; list")
    p.add_argument("name", nargs="?", help="user name (add, remove) or token name (token)")
    add_options(p, UsersOptions)
    p.set_defaults(func=cmd_users)
