"""Operator login (Flask-Login): ``GET/POST /login``, ``POST /logout``.

Travellers need no account: the form and the status pages stay public. Retry
and resolve are operator actions, guarded by ``operator_required``; confirm,
decline and cancel belong to the browser that booked, or an operator
(``web.owners``).
The logged-in name is what the workflow's audit trail records.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Log in as an operator to see this page."

F = TypeVar("F", bound=Callable[..., Any])

#: Checked against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = "scrypt:32768:8:1$x$" + "0" * 128


class Operator(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name
        self.name = name


def operators() -> dict[str, str]:
    table: dict[str, str] = current_app.config["OPERATORS"]
    return table


@login_manager.user_loader
def load_user(name: str) -> Operator | None:
    return Operator(name) if name in operators() else None


def operator_required(view: F) -> F:
    """Anonymous GET: redirect to the login page. Anonymous POST: 401, nothing done."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            if request.method == "GET":
                return login_manager.unauthorized()
            abort(401)
        return view(*args, **kwargs)

    return cast(F, wrapped)


def current_operator() -> str:
    return str(current_user.name)


def _safe_next(target: str | None) -> str:
    # Only paths on this site: "//evil.example" and "https://..." are not.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("attention.attention_list")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    next_url = request.values.get("next")
    if request.method == "GET":
        return render_template("login.html", next_url=next_url or "", name="", error=None)
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    pw_hash = operators().get(name)
    ok = check_password_hash(pw_hash or _DUMMY_HASH, password)
    if not (pw_hash and ok):
        return render_template(
            "login.html", next_url=next_url or "", name=name, error="Unknown operator or wrong password."
        ), 401
    login_user(Operator(name))
    flash(f"Logged in as {name}.", "info")
    return redirect(_safe_next(next_url), code=303)


@bp.post("/logout")
def logout() -> Response:
    logout_user()
    flash("Logged out.", "info")
    return redirect(url_for("booking.new_booking"), code=303)
