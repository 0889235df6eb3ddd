"""Operator login and the guard on operator actions, through the Flask test client.

No Temporal here: the app gets a fake portal that records every call, so "nothing
was done" means the portal was never called.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from tests.unit.conftest import PASSWORD, RecordingPortal
from trip.forms import demo_trip
from web import create_app
from web.auth import SESSIONS_KEY
from web.operators import add_operator, ensure_demo_operator, load_operators
from web.owners import MAX_BOOKINGS, MAX_FORM_TOKENS
from web.sessions import SessionStore
from web.status import BookingView


def make_app(portal: RecordingPortal) -> Flask:
    """The web app with ``portal`` in place of Temporal, and one operator, ops."""
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "TEMPORAL_PORTAL": portal,
            "OPERATORS": {"ops": generate_password_hash(PASSWORD)},
        }
    )


@pytest.fixture
def portal() -> RecordingPortal:
    return RecordingPortal()


@pytest.fixture
def app(portal: RecordingPortal) -> Flask:
    return make_app(portal)


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
    ("/bookings/trip-abc/retry", {"step": "book_car"}),
    ("/bookings/trip-abc/retry", {}),
    ("/bookings/trip-abc/resolve", {"step": "book_car", "note": "released by phone"}),
    # Retry all / Resolve all on /attention: the confirmation step and the job itself.
    ("/attention/bulk/confirm", {"action": "retry", "step": "book_car"}),
    ("/attention/bulk", {"action": "resolve", "step": "book_car", "note": "by phone", "workflow_id": "trip-abc"}),
]


@pytest.mark.parametrize(("path", "data"), ACTIONS)
def test_an_anonymous_action_is_refused_and_does_nothing(
    client: FlaskClient, portal: RecordingPortal, path: str, data: dict[str, str]
) -> None:
    response = client.post(path, data={**data, "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    assert "nothing was changed" in response.get_data(as_text=True)
    assert portal.calls == [], "an anonymous POST must not reach Temporal"


#: The traveller's actions: for the browser that booked the trip, or an operator (web.owners).
TRAVELLER_ACTIONS = [
    ("/bookings/trip-abc/confirm", {"note": "price ok"}),
    ("/bookings/trip-abc/decline", {}),
    ("/bookings/trip-abc/cancel", {}),
]


@pytest.mark.parametrize(("path", "data"), TRAVELLER_ACTIONS)
def test_a_stranger_gets_403_on_confirm_decline_and_cancel_and_nothing_is_sent(
    client: FlaskClient, portal: RecordingPortal, path: str, data: dict[str, str]
) -> None:
    response = client.post(path, data={**data, "csrf_token": csrf_token(client)})
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert "Not your booking" in body and "nothing was changed" in body
    assert portal.calls == [], "a stranger's confirm, decline or cancel must not reach Temporal"


@pytest.mark.parametrize(("path", "data"), [*ACTIONS, *TRAVELLER_ACTIONS])
def test_a_logged_in_action_without_csrf_is_refused_and_does_nothing(
    client: FlaskClient, portal: RecordingPortal, path: str, data: dict[str, str]
) -> None:
    assert log_in(client).status_code == 303
    response = client.post(path, data=data)
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert portal.actions == []


class StartingPortal(RecordingPortal):
    """Temporal accepts every call (a start, an Update) and answers nothing in particular."""

    def call(self, fn: Callable[[Any], Awaitable[Any]], *, timeout: float | None = None) -> Any:
        self.calls.append(fn)
        return None


@pytest.fixture
def starting() -> StartingPortal:
    return StartingPortal()


@pytest.fixture
def booking_app(starting: StartingPortal) -> Flask:
    return make_app(starting)


def form(client: FlaskClient) -> dict[str, str]:
    page = client.get("/").get_data(as_text=True)
    fields = dict(re.findall(r'name="(csrf_token|form_token)" value="([^"]+)"', page))
    return {**demo_trip(date.today()), **fields}


def book(client: FlaskClient, data: dict[str, str] | None = None) -> str:
    response = client.post("/bookings", data=data or form(client))
    assert response.status_code == 303
    return str(response.headers["Location"])


def answer(client: FlaskClient, location: str, action: str = "confirm") -> int:
    return client.post(f"{location}/{action}", data={"csrf_token": csrf_token(client, "/")}).status_code


def test_only_the_browser_that_booked_may_confirm_and_an_operator_may_too(
    booking_app: Flask, starting: StartingPortal
) -> None:
    traveller, stranger, operator = (booking_app.test_client() for _ in range(3))
    location = book(traveller)
    for action in ("confirm", "decline", "cancel"):
        assert answer(stranger, location, action) == 403
    assert starting.actions == ["create_booking.<locals>.start"], "a stranger's answer reached Temporal"
    assert answer(traveller, location) == 303
    assert len(starting.actions) == 2, "the traveller's confirm was not sent"
    assert log_in(operator).status_code == 303
    assert answer(operator, location, "decline") == 303
    assert len(starting.actions) == 3, "the operator's decline was not sent"


def test_re_posting_someone_elses_form_does_not_hand_over_their_booking(
    booking_app: Flask, starting: StartingPortal
) -> None:
    """The booking id holds the form token, and the status page shows the trip: enough to
    re-post the same form and land on the same id. That must not make it the re-poster's."""
    traveller, attacker = booking_app.test_client(), booking_app.test_client()
    data = form(traveller)
    location = book(traveller, data)
    copied = {**data, "csrf_token": csrf_token(attacker, "/")}
    response = attacker.post("/bookings", data=copied)
    assert response.status_code == 303 and response.headers["Location"] == location  # the same booking
    assert "cannot confirm, decline or cancel" in attacker.get("/").get_data(as_text=True)
    for action in ("confirm", "decline", "cancel"):
        assert answer(attacker, location, action) == 403
    assert answer(traveller, location) == 303


def test_a_form_too_old_for_the_session_still_books_but_cannot_be_confirmed(booking_app: Flask) -> None:
    traveller = booking_app.test_client()
    old = form(traveller)
    for _ in range(MAX_FORM_TOKENS):
        form(traveller)  # tabs opened since
    location = book(traveller, old)
    assert "cannot confirm, decline or cancel" in traveller.get("/").get_data(as_text=True)
    assert answer(traveller, location) == 403


def test_the_session_keeps_the_latest_bookings_first_and_the_cookie_stays_small(booking_app: Flask) -> None:
    traveller = booking_app.test_client()
    assert log_in(traveller).status_code == 303  # an operator's login shares the cookie
    locations = [book(traveller) for _ in range(MAX_BOOKINGS + 5)]
    ids = [loc.rsplit("/", 1)[1] for loc in locations]
    with traveller.session_transaction() as session:
        assert session["bookings"] == ids[::-1][:MAX_BOOKINGS]
    cookie = traveller.get_cookie("session")
    assert cookie is not None and len(cookie.value) < 2500, len(cookie.value)
    assert traveller.post("/logout", data={"csrf_token": csrf_token(traveller, "/")}).status_code == 303
    # Logged out: the newest booking is still this browser's, the oldest fell off the list.
    assert answer(traveller, locations[-1]) == 303
    assert answer(traveller, locations[0]) == 403


def test_operator_pages_redirect_an_anonymous_visitor_to_login(client: FlaskClient, portal: RecordingPortal) -> None:
    response = client.get("/attention")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fattention"
    for page in ("/attention/bulk/bulk-x", "/attention/bulk/bulk-x/fragment"):  # a bulk job's progress
        assert client.get(page).status_code == 302
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


class AttentionPortal(StartingPortal):
    """The booking at ``workflow_id`` is open, its saga in ``saga_status`` (by default waiting
    for an operator, NEEDS_ATTENTION); other calls are accepted."""

    workflow_id = ""
    saga_status = "NEEDS_ATTENTION"

    def call(self, fn: Callable[[Any], Awaitable[Any]], *, timeout: float | None = None) -> Any:
        self.calls.append(fn)
        if not fn.__qualname__.startswith("load_booking"):
            return None
        return BookingView(
            workflow_id=self.workflow_id,
            namespace="default",
            saga_status=self.saga_status,
            closed=False,
            temporal_status="RUNNING",
            start_time=None,
            status=None,
            outcome=None,
            ui_base="http://127.0.0.1:8233",
        )


def test_only_an_operator_may_cancel_a_booking_an_operator_is_settling() -> None:
    """A traveller's cancel in NEEDS_ATTENTION would end the run with its stuck steps
    unsettled and drop it from /attention: refused (409), and no cancel is sent."""
    portal = AttentionPortal()
    app = make_app(portal)
    traveller, operator = app.test_client(), app.test_client()
    location = book(traveller)
    portal.workflow_id = location.rsplit("/", 1)[1]
    assert 'id="cancel-form"' not in traveller.get(location).get_data(as_text=True)
    response = traveller.post(f"{location}/cancel", data={"csrf_token": csrf_token(traveller, "/")})
    assert response.status_code == 409
    assert "can no longer be cancelled" in response.get_data(as_text=True)
    cancels = [name for name in portal.actions if name.startswith("cancel_booking")]
    assert cancels == [], "the traveller's cancel reached Temporal"
    assert log_in(operator).status_code == 303
    assert 'id="cancel-form"' in operator.get(location).get_data(as_text=True)
    assert operator.post(f"{location}/cancel", data={"csrf_token": csrf_token(operator, "/")}).status_code == 303
    assert [name for name in portal.actions if name.startswith("cancel_booking")], "the operator's cancel was not sent"


@pytest.mark.parametrize(("saga_status", "offered"), [("RUNNING", True), ("ROLLED_BACK", False), ("COMPLETED", False)])
def test_cancel_is_offered_only_while_the_saga_has_not_ended(saga_status: str, offered: bool) -> None:
    """A saga's status query says it ended a moment before its run closes: from then on
    there is nothing left to cancel, so the traveller is not offered Cancel."""
    portal = AttentionPortal()
    portal.saga_status = saga_status
    traveller = make_app(portal).test_client()
    location = book(traveller)
    portal.workflow_id = location.rsplit("/", 1)[1]
    form = re.search(r'<form[^>]*id="cancel-form"[^>]*>', traveller.get(location).get_data(as_text=True))
    assert form is not None, "the booking's browser may cancel it"
    assert ("hidden" not in form.group(0)) is offered


# --- sessions end on logout, and logins are throttled ------------------------------

EMPTY_PAYLOADS = '{"payloads": []}'


def operator_access(client: FlaskClient) -> tuple[int, int]:
    """(/attention, /codec/decode) statuses: 503 and 200 past the guards, 302 and 401 refused."""
    attention = client.get("/attention").status_code
    decoded = client.post("/codec/decode", data=EMPTY_PAYLOADS, content_type="application/json").status_code
    return attention, decoded


def test_a_copied_session_cookie_stops_working_once_its_operator_logs_out(app: Flask, client: FlaskClient) -> None:
    assert log_in(client).status_code == 303
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    assert operator_access(thief) == (503, 200)  # a copy works while the session lives
    assert client.post("/logout", data={"csrf_token": csrf_token(client, "/")}).status_code == 303
    assert operator_access(thief) == (302, 401)
    assert operator_access(client) == (302, 401)


def test_an_operator_session_ends_after_its_lifetime(app: Flask, client: FlaskClient) -> None:
    now = [1_000_000.0]
    app.extensions[SESSIONS_KEY] = SessionStore(":memory:", clock=lambda: now[0])
    assert log_in(client).status_code == 303
    lifetime = app.config["OPERATOR_SESSION_LIFETIME"].total_seconds()
    assert lifetime == 8 * 3600
    now[0] += lifetime - 1
    assert operator_access(client) == (503, 200)
    now[0] += 2
    assert operator_access(client) == (302, 401)


def test_wrong_passwords_for_a_name_end_in_429_and_then_even_the_right_one_is_refused(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    limit = app.config["LOGIN_LIMIT_PER_NAME"]
    for _ in range(limit):
        assert log_in(client, "ops", "wrong").status_code == 401
    caplog.set_level("WARNING", logger="web.auth")
    refused = log_in(client, "ops", PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "Too many refused logins (too many refused logins for this operator)" in refused.get_data(as_text=True)
    assert client.get("/attention").status_code == 302
    assert any("login refused for 'ops'" in r.getMessage() for r in caplog.records)
    # Another operator name from the same address is not locked out by this one.
    assert log_in(client, "someone", "wrong").status_code == 401


def test_many_refused_logins_from_one_address_end_in_429_for_every_name(app: Flask, client: FlaskClient) -> None:
    per_name = app.config["LOGIN_LIMIT_PER_NAME"]
    for i in range(app.config["LOGIN_LIMIT_PER_CLIENT"]):
        assert log_in(client, f"guess{i // per_name}", "wrong").status_code == 401
    refused = log_in(client, "ops", PASSWORD)
    assert refused.status_code == 429
    assert "from this address" in refused.get_data(as_text=True)
    # Another address still gets in.
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert log_in(other).status_code == 303


def test_a_good_login_starts_the_names_count_again(app: Flask, client: FlaskClient) -> None:
    limit = app.config["LOGIN_LIMIT_PER_NAME"]
    for _ in range(limit - 1):
        assert log_in(client, "ops", "wrong").status_code == 401
    assert log_in(client).status_code == 303
    for _ in range(limit - 1):
        assert log_in(client, "ops", "wrong").status_code == 401
    assert log_in(client).status_code == 303


def test_a_csrf_token_expires(app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = app.config["WTF_CSRF_TIME_LIMIT"]
    assert limit == 8 * 3600
    issued = time.time()
    token = csrf_token(client)
    form = {"csrf_token": token, "name": "nobody", "password": "x"}
    # Time only moves forward here: a signed cookie from the future is refused too.
    monkeypatch.setattr(time, "time", lambda: issued + limit - 60)
    assert client.post("/login", data=form).status_code == 401  # past the CSRF check: a wrong password
    monkeypatch.setattr(time, "time", lambda: issued + limit + 5)
    expired = client.post("/login", data=form)
    assert expired.status_code == 400
    assert "no longer valid" in expired.get_data(as_text=True)
