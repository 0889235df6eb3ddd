"""Operator login and the guard on operator actions, through the Flask test client.

No Temporal here: the app gets a fake portal that records every call, so "nothing
was done" means the portal was never called.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from web import create_app
from web.operators import add_operator, ensure_demo_operator, load_operators
from web.portal import TemporalUnavailable

PASSWORD = "correct horse battery staple"


class RecordingPortal:
    """Stands in for ``TemporalPortal``: records each call, and Temporal is down."""

    def __init__(self) -> None:
        self.calls: list[Callable[[Any], Awaitable[Any]]] = []

    def call(self, fn: Callable[[Any], Awaitable[Any]], *, timeout: float | None = None) -> Any:
        self.calls.append(fn)
        raise TemporalUnavailable("no Temporal in these tests")

    @property
    def actions(self) -> list[str]:
        """Every call but the nav bar's count badge (harmless, and on every operator page)."""
        return [fn.__qualname__ for fn in self.calls if not fn.__qualname__.startswith("attention_count")]

    def close(self) -> None:
        pass


@pytest.fixture
def portal() -> RecordingPortal:
    return RecordingPortal()


@pytest.fixture
def app(portal: RecordingPortal) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "TEMPORAL_PORTAL": portal,
            "OPERATORS": {"ops": generate_password_hash(PASSWORD)},
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found
    return found.group(1)


def log_in(client: FlaskClient, name: str = "ops", password: str = PASSWORD, next_url: str = "") -> Any:
    return client.post(
        "/login", data={"csrf_token": csrf_token(client), "name": name, "password": password, "next": next_url}
    )


ACTIONS = [
    ("/bookings/trip-abc/cancel", {}),
    ("/bookings/trip-abc/retry", {"step": "book_car"}),
    ("/bookings/trip-abc/retry", {}),
    ("/bookings/trip-abc/resolve", {"step": "book_car", "note": "released by phone"}),
]


@pytest.mark.parametrize(("path", "data"), ACTIONS)
def test_an_anonymous_action_is_refused_and_does_nothing(
    client: FlaskClient, portal: RecordingPortal, path: str, data: dict[str, str]
) -> None:
    response = client.post(path, data={**data, "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    assert "nothing was changed" in response.get_data(as_text=True)
    assert portal.calls == [], "an anonymous POST must not reach Temporal"


@pytest.mark.parametrize(("path", "data"), ACTIONS)
def test_a_logged_in_action_without_csrf_is_refused_and_does_nothing(
    client: FlaskClient, portal: RecordingPortal, path: str, data: dict[str, str]
) -> None:
    assert log_in(client).status_code == 303
    response = client.post(path, data=data)
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert portal.actions == []


def test_operator_pages_redirect_an_anonymous_visitor_to_login(client: FlaskClient, portal: RecordingPortal) -> None:
    response = client.get("/attention")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fattention"
    assert portal.calls == []


@pytest.mark.parametrize(
    ("name", "password"), [("ops", "wrong"), ("ops", ""), ("nobody", PASSWORD), ("", ""), ("OPS", PASSWORD)]
)
def test_bad_credentials_are_rejected(client: FlaskClient, name: str, password: str) -> None:
    response = log_in(client, name, password)
    assert response.status_code == 401
    assert "Unknown operator or wrong password." in response.get_data(as_text=True)
    assert client.get("/attention").status_code == 302  # still not logged in


def test_good_login_opens_operator_pages_and_logout_closes_them(client: FlaskClient, portal: RecordingPortal) -> None:
    response = log_in(client, next_url="/attention")
    assert response.status_code == 303 and response.headers["Location"] == "/attention"
    # Past the guard: the page asks Temporal, which is down here.
    portal.calls.clear()
    attention = client.get("/attention")
    assert attention.status_code == 503 and len(portal.calls) >= 1
    # The nav bar names the operator; with Temporal down it shows no badge rather than failing.
    home = client.get("/")
    body = home.get_data(as_text=True)
    assert home.status_code == 200 and "Log out ops" in body and 'id="attention-count"' not in body
    assert client.post("/logout", data={"csrf_token": csrf_token(client, "/")}).status_code == 303
    assert client.get("/attention").status_code == 302


def test_login_without_csrf_is_refused(client: FlaskClient) -> None:
    response = client.post("/login", data={"name": "ops", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/attention").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(client: FlaskClient, target: str) -> None:
    response = log_in(client, next_url=target)
    assert response.status_code == 303 and response.headers["Location"] == "/attention"


def test_travellers_see_no_operator_controls(client: FlaskClient) -> None:
    body = client.get("/").get_data(as_text=True)
    assert "Operator login" in body and "Needs attention" not in body


def test_operators_come_from_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "operators.toml"
    add_operator(path, "alice", "s3cret")
    assert set(load_operators(path)) == {"alice"}
    assert "s3cret" not in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    monkeypatch.setenv("OPERATORS_FILE", str(path))
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "TEMPORAL_PORTAL": RecordingPortal()})
    client = app.test_client()
    assert log_in(client, "alice", "s3cret").status_code == 303
    with pytest.raises(ValueError):
        add_operator(path, "bad name", "x")


def test_make_run_creates_a_demo_operator_once_and_prints_a_working_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPERATORS_FILE", raising=False)
    instance = tmp_path / "instance"
    line = ensure_demo_operator(instance)
    assert line == ensure_demo_operator(instance)  # the second run keeps the first password
    name, password = re.fullmatch(r"name (\S+), password (\S+)", line).groups()  # type: ignore[union-attr]
    operators = load_operators(instance / "operators.toml")
    assert list(operators) == [name] == ["ops"]
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "TEMPORAL_PORTAL": RecordingPortal(), "OPERATORS": operators})
    assert log_in(app.test_client(), name, password).status_code == 303
