"""Operators: who may retry, resolve and cancel, from configuration.

An operator is a name and a werkzeug password hash. They come from, in order:
the app's ``OPERATORS`` config (a mapping name -> hash, as tests pass it), the
TOML file named by ``OPERATORS_FILE``, or ``instance/operators.toml``::

    [operators]
    ops = "scrypt:32768:8:1$..."

``python -m web.operators add NAME`` asks for a password (or reads it from
stdin) and writes its hash into that file. Passwords are never stored.
"""

from __future__ import annotations

import argparse
import getpass
import re
import secrets
import sys
import tomllib
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from web.settings import WebSettings
from wiring.secrets import write_secret

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def operators_file(instance_path: Path, settings: WebSettings | None = None) -> Path:
    """OPERATORS_FILE from the environment, else ``instance/operators.toml``."""
    return (settings or WebSettings.load()).operators_file or instance_path / "operators.toml"


def load_operators(path: Path) -> dict[str, str]:
    """name -> password hash; an absent file means no operators."""
    if not path.exists():
        return {}
    with path.open("rb") as f:
        data = tomllib.load(f)
    table = data.get("operators", {})
    return {str(name): str(pw_hash) for name, pw_hash in table.items()}


def write_operators(path: Path, operators: dict[str, str]) -> None:
    lines = ["# Operators of the booking web app: name = werkzeug password hash.", "[operators]"]
    lines += [f'{name} = "{pw_hash}"' for name, pw_hash in sorted(operators.items())]
    write_secret(path, "\n".join(lines) + "\n", replace=True)


def add_operator(path: Path, name: str, password: str) -> None:
    if not NAME_RE.match(name):
        raise ValueError("an operator name is 1-64 letters, digits, '.', '_' or '-'")
    if not password:
        raise ValueError("the password must not be empty")
    operators = load_operators(path)
    operators[name] = generate_password_hash(password)
    write_operators(path, operators)


DEMO_OPERATOR = "ops"


def ensure_demo_operator(instance: Path) -> str:
    """``make run``: with no operators file yet, create one with operator ``ops``
    and a random password (kept in ``instance/demo-password``, 0600, for the
    banner). Returns how to log in, as one line for the banner."""
    path = operators_file(instance)
    saved = instance / "demo-password"
    if not path.exists():
        password = secrets.token_urlsafe(12)
        add_operator(path, DEMO_OPERATOR, password)
        write_secret(saved, password + "\n", replace=True)
    pw_hash = load_operators(path).get(DEMO_OPERATOR)
    if pw_hash and saved.exists() and check_password_hash(pw_hash, saved.read_text().strip()):
        return f"name {DEMO_OPERATOR}, password {saved.read_text().strip()}"
    return f"an operator from {path} (add one: .venv/bin/python -m web.operators add NAME)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web.operators", description="Manage the web app's operators.")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add an operator, or set a new password")
    add.add_argument("name")
    add.add_argument("--file", type=Path, help="default: $OPERATORS_FILE, else instance/operators.toml")
    args = parser.parse_args(argv)
    path = args.file or operators_file(Path(__file__).resolve().parent.parent / "instance")
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            print("error: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        add_operator(path, args.name, password)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"operator {args.name} written to {path}; restart the web app to pick it up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
