"""``vadstream users``: set up the dashboard's login (users and API tokens)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from stream.dashboard.auth import Credentials
from stream.dashboard.config import auth_path


def _credentials(args: argparse.Namespace) -> Credentials:
    return Credentials(auth_path(args.auth_file or "", args.events_db))


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        lines = Path(args.password_file).read_text().splitlines()
        if not lines or not lines[0]:
            raise ValueError(f"{args.password_file} is empty: put the password on its first "
                             "line")
        return lines[0]
    if not sys.stdin.isatty():
        raise ValueError("no terminal to ask the password on: give --password-file FILE")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ; nothing changed")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    creds = _credentials(args)
    if args.action in ("add", "remove") and not args.name:
        raise ValueError(f"`vadstream users {args.action} NAME`: give the name")
    if args.action == "add":
        new = creds.add_user(args.name, _password(args))
        print(f"user {args.name} {'added' if new else 'has a new password'} in {creds.path}")
    elif args.action == "token":
        name, token = creds.new_token(args.name or "")
        print(token)
        print(f"token {name} stored (as its hash) in {creds.path}; send it as "
              "`Authorization: Bearer TOKEN`; it is shown only now", file=sys.stderr)
    elif args.action == "remove":
        creds.remove(args.name)
        print(f"{args.name} removed from {creds.path}")
    else:
        data = creds.data()
        for name in sorted(data["users"]):
            print(f"user  {name}")
        for token in data["tokens"]:
            print(f"token {token.get('name')} (created {token.get('created')})")
        if not data["users"] and not data["tokens"]:
            print(f"no users or tokens in {creds.path}", file=sys.stderr)
    return 0
