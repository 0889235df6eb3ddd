"""Operator login (Flask-Login): ``GET/POST /login``, ``POST /logout``.

Travellers need no account: the form and the status pages stay public. Retry
and resolve are operator actions, guarded by ``operator_required``; confirm,
decline and cancel belong to the browser that booked, or an operator
(``web.owners``).
The logged-in name is what the workflow's audit trail records.

An operator's session lives on the server (``web.sessions``): the cookie holds a
random id, logout deletes it, and it lapses after ``OPERATOR_SESSION_LIFETIME``.
Refused logins are counted per client address and per name; past the limit a
login is a 429 whose password is not even checked. Every refused login is logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from web.sessions import SessionStore

bp = Blueprint("auth", __name__)
log = logging.getLogger("web.auth")
SESSIONS_KEY = "operator_sessions"
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Log in as an operator to see this page."

F = TypeVar("F", bound=Callable[..., Any])

#: Checked against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = "scrypt:32768:8:1$x$" + "0" * 128


class Operator(UserMixin):
    """A logged-in operator; ``id`` (what the cookie carries) is the server-side session's id, not the name."""

    def __init__(self, name: str, session_id: str) -> None:
        self.id = session_id
        self.name = name


def sessions() -> SessionStore:
    store: SessionStore = current_app.extensions[SESSIONS_KEY]
    return store


def operators() -> dict[str, str]:
    table: dict[str, str] = current_app.config["OPERATORS"]
    return table


@login_manager.user_loader
def load_user(session_id: str) -> Operator | None:
    """Every request: the session must still exist (not logged out, not expired) and its operator too."""
    name = sessions().operator_of(session_id)
    return Operator(name, session_id) if name is not None and name in operators() else None


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
    name = request.form.get("name", "").strip()[:64]
    password = request.form.get("password", "")
    config = current_app.config
    client = request.remote_addr or "unknown"
    window = float(config["LOGIN_WINDOW_S"])
    throttle = sessions().throttled(
        client=client,
        name=name,
        per_client=config["LOGIN_LIMIT_PER_CLIENT"],
        per_name=config["LOGIN_LIMIT_PER_NAME"],
        window_s=window,
    )
    if throttle is not None:
        log.warning("login refused for %r from %s: %s", name, client, throttle.reason)
        minutes = -(-throttle.retry_after_s // 60)
        error = f"Too many refused logins ({throttle.reason}); try again in {minutes} min."
        page = render_template("login.html", next_url=next_url or "", name=name, error=error)
        return Response(page, status=429, headers={"Retry-After": str(throttle.retry_after_s)}, mimetype="text/html")
    pw_hash = operators().get(name)
    ok = check_password_hash(pw_hash or _DUMMY_HASH, password)
    if not (pw_hash and ok):
        sessions().record_failure(client=client, name=name, window_s=window)
        log.warning(
            "login refused for %r from %s: %s", name, client, "wrong password" if pw_hash else "no such operator"
        )
        return render_template(
            "login.html", next_url=next_url or "", name=name, error="Unknown operator or wrong password."
        ), 401
    sessions().clear_failures(name=name)
    lifetime = config["OPERATOR_SESSION_LIFETIME"].total_seconds()
    login_user(Operator(name, sessions().create(name, lifetime)))
    flash(f"Logged in as {name}.", "info")
    return redirect(_safe_next(next_url), code=303)


@bp.post("/logout")
def logout() -> Response:
    if current_user.is_authenticated:
        sessions().revoke(current_user.id)  # every copy of the cookie dies with it
    logout_user()
    flash("Logged out.", "info")
    return redirect(url_for("booking.new_booking"), code=303)
