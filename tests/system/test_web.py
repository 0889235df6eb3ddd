"""The Flask app through its test client, with a real portal to the dev server."""

from __future__ import annotations

import html
import os
import re
import threading
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from temporalio.client import Client, WorkflowExecutionStatus

from tests.conftest import WAIT_S, free_port, make_request, wait_until
from tests.system.conftest import FreezableProxy, form_tokens, log_in, make_app, started_besides_a_control
from trip.forms import demo_trip
from web import create_app
from web.portal import TemporalPortal
from wiring.client import connect
from wiring.start import start_booking


def describe(app: Flask, workflow_id: str) -> Any:
    """The run as Temporal describes it, by id: read-after-write, unlike visibility."""
    portal: TemporalPortal = app.extensions["temporal_portal"]
    return portal.call(lambda client: client.get_workflow_handle(workflow_id).describe())


HUGE = "x" * 5000
SCRIPT = "<script>alert(1)</script>"
TEXT_FIELDS = ["traveller_name", "traveller_email", "car_city", "hotel_city", "flight_from", "flight_to"]
DATE_FIELDS = ["car_pickup", "car_dropoff", "hotel_check_in", "hotel_check_out", "flight_date"]
BAD_INPUTS = (
    [(f, v) for f in TEXT_FIELDS for v in ("", SCRIPT, HUGE, "\x00\x07")]
    + [(f, v) for f in DATE_FIELDS for v in ("", "garbage", SCRIPT, "1999-01-01", HUGE)]
    + [(f, v) for f in ("mode", "scenario") for v in (SCRIPT, "nope", HUGE)]
)


@pytest.mark.parametrize(("field", "value"), BAD_INPUTS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_INPUTS)])
def test_bad_field_is_a_400_with_the_message_next_to_it_and_nothing_started(
    app: Flask, client: FlaskClient, task_queue: str, field: str, value: str
) -> None:
    data = {**demo_trip(date.today()), **form_tokens(client), field: value}
    response = client.post("/bookings", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    message = re.search(rf'<p class="error" id="{field}-error">([^<]+)</p>', page)
    assert message, f"no error shown next to {field}"
    assert 'aria-invalid="true"' in page
    if field not in ("mode", "scenario") and len(value) < 200:
        # The user's value is kept, escaped.
        assert f'value="{html.escape(value, quote=True)}"' in page
    assert "<script>alert(1)</script>" not in page
    assert started_besides_a_control(app, client, task_queue) == set()


@pytest.mark.parametrize("csrf", [None, "forged-token"])
def test_missing_or_wrong_csrf_token_is_rejected(
    app: Flask, client: FlaskClient, task_queue: str, csrf: str | None
) -> None:
    data = {**demo_trip(date.today()), "form_token": form_tokens(client)["form_token"]}
    if csrf:
        data["csrf_token"] = csrf
    response = client.post("/bookings", data=data)
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert started_besides_a_control(app, client, task_queue) == set()


def test_valid_form_redirects_at_once_and_a_double_submit_starts_one_booking(
    app: Flask, client: FlaskClient, task_queue: str
) -> None:
    data = {**demo_trip(date.today()), **form_tokens(client)}
    first = client.post("/bookings", data=data)
    second = client.post("/bookings", data=data)
    assert first.status_code == 303
    assert re.fullmatch(rf"/bookings/trip-{data['form_token']}-[0-9a-f]{{16}}", first.headers["Location"])
    assert second.status_code == 303 and second.headers["Location"] == first.headers["Location"]
    workflow_id = first.headers["Location"].rsplit("/", 1)[1]
    assert describe(app, workflow_id).status == WorkflowExecutionStatus.RUNNING
    assert started_besides_a_control(app, client, task_queue) == {workflow_id}


def test_the_form_is_never_cached(client: FlaskClient) -> None:
    # Back would otherwise show the form with its spent one-time token.
    assert client.get("/").headers["Cache-Control"] == "no-store"
    invalid = client.post("/bookings", data={**demo_trip(date.today()), **form_tokens(client), "traveller_name": ""})
    assert invalid.status_code == 400 and invalid.headers["Cache-Control"] == "no-store"


def test_the_same_form_sent_back_changed_starts_a_new_booking(app: Flask, client: FlaskClient, task_queue: str) -> None:
    # Back after submitting can restore the form with the token already used.
    tokens = form_tokens(client)
    first = client.post("/bookings", data={**demo_trip(date.today()), **tokens, "scenario": "flight-sold-out"})
    changed = client.post("/bookings", data={**demo_trip(date.today()), **tokens, "scenario": "happy"})
    again = client.post("/bookings", data={**demo_trip(date.today()), **tokens, "scenario": "happy"})
    assert first.status_code == changed.status_code == again.status_code == 303
    assert changed.headers["Location"] != first.headers["Location"]
    assert again.headers["Location"] == changed.headers["Location"]  # the same request is still deduplicated
    first_id, changed_id = (r.headers["Location"].rsplit("/", 1)[1] for r in (first, changed))
    assert describe(app, first_id).run_id != describe(app, changed_id).run_id
    assert started_besides_a_control(app, client, task_queue) == {first_id, changed_id}


def test_status_page_and_json_without_a_worker(client: FlaskClient) -> None:
    # No worker polls this queue: the run exists, but nobody answers the query.
    data = {**demo_trip(date.today()), **form_tokens(client)}
    location = client.post("/bookings", data=data).headers["Location"]
    page = client.get(location)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Open in Temporal Web UI" in body
    assert f'href="http://ui.test/namespaces/default/workflows/{location.rsplit("/", 1)[1]}"' in body
    status = client.get(f"{location}/status")
    assert status.status_code == 200 and status.headers["Cache-Control"] == "no-store"
    payload = status.get_json()
    assert payload["status"] == "RUNNING" and payload["closed"] is False
    assert "no worker" in payload["note"]
    # What the page swaps in on each poll: the same status, drawn by the server, without the page around it.
    fragment = client.get(f"{location}/fragment")
    assert fragment.status_code == 200 and fragment.headers["Cache-Control"] == "no-store"
    part = fragment.get_data(as_text=True)
    assert part.lstrip().startswith('<div id="booking"') and "<html" not in part
    assert '<span id="saga-status" class="badge badge-running">Running</span>' in part and "no worker" in part
    # An open run's page and fragment poll for the next fragment.
    assert f'hx-get="{location}/fragment"' in part and 'data-polling="stopped"' not in part
    assert f'hx-get="{location}/fragment"' in body


@pytest.mark.parametrize(
    "path",
    [
        "/bookings/trip-doesnotexist",
        "/bookings/trip-doesnotexist/status",
        "/bookings/trip-doesnotexist/fragment",
        "/bookings/%3Cscript%3E",
        "/nope",
    ],
)
def test_unknown_booking_is_a_404(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    if path.endswith("/status"):
        assert response.get_json()["error"] == "Not found"
    else:
        assert "Not found" in response.get_data(as_text=True)


def test_temporal_down_is_a_503_with_a_plain_message(task_queue: str) -> None:
    app = make_app(f"127.0.0.1:{free_port()}", "default", task_queue)
    client = app.test_client()
    try:
        assert client.get("/").status_code == 200  # the form itself needs no Temporal
        response = client.post("/bookings", data={**demo_trip(date.today()), **form_tokens(client)})
        assert response.status_code == 503
        body = response.get_data(as_text=True)
        assert "Temporal is unavailable" in body and "nothing was started" in body
        assert "Traceback" not in body
        status = client.get("/bookings/trip-abc/status")
        assert status.status_code == 503 and status.get_json()["error"] == "Temporal is unavailable"
        log_in(client)  # a traveller's empty list needs no Temporal; an operator's does
        assert client.get("/bookings").status_code == 503
    finally:
        app.extensions["temporal_portal"].close()


async def test_names_are_escaped_on_every_page(dev_client: Client, task_queue: str) -> None:
    # A workflow started by some other client, whose traveller search attribute
    # holds markup: the list page must show it as text.
    nasty = "<img src=x onerror=alert(1)>"
    req = make_request(name="Ada").model_copy(
        update={"traveller": make_request().traveller.model_copy(update={"name": nasty})}
    )
    handle = await start_booking(dev_client, req, task_queue=task_queue)
    app = make_app(dev_client.service_client.config.target_host, dev_client.namespace, task_queue)
    client = app.test_client()
    try:
        log_in(client)  # only an operator's list shows bookings started elsewhere
        # Visibility is eventually consistent.
        await wait_until(lambda: handle.id in client.get("/bookings").get_data(as_text=True), what="the list row")
        found = client.get("/bookings").get_data(as_text=True)
        assert nasty not in found and html.escape(nasty) in found
        form = client.post(
            "/bookings", data={**demo_trip(date.today()), **form_tokens(client), "traveller_name": nasty}
        ).get_data(as_text=True)
        assert nasty not in form and html.escape(nasty, quote=True) in form
    finally:
        app.extensions["temporal_portal"].close()
        await handle.terminate()


async def test_the_list_shows_a_traveller_only_their_own_bookings_and_an_operator_all(app: Flask) -> None:
    ada, bob, stranger, operator = (app.test_client() for _ in range(4))
    ids = {}
    for name, client in (("Ada Own", ada), ("Bob Own", bob)):
        response = client.post(
            "/bookings", data={**demo_trip(date.today()), **form_tokens(client), "traveller_name": name}
        )
        assert response.status_code == 303
        ids[name] = response.headers["Location"].rsplit("/", 1)[1]
    log_in(operator)

    def listing(client: FlaskClient) -> str:
        response = client.get("/bookings")
        assert response.status_code == 200
        return response.get_data(as_text=True)

    # Visibility is eventually consistent: wait until the operator's list has both.
    await wait_until(lambda: all(i in listing(operator) for i in ids.values()), what="both bookings to be listed")
    assert "Recent bookings" in listing(operator)
    mine, theirs = listing(ada), listing(bob)
    assert ids["Ada Own"] in mine and ids["Bob Own"] not in mine and "Bob Own" not in mine
    assert ids["Bob Own"] in theirs and ids["Ada Own"] not in theirs and "Ada Own" not in theirs
    assert "Your bookings" in mine
    nothing = listing(stranger)
    assert not any(i in nothing for i in ids.values()) and "No bookings" in nothing
    # The status filter still applies within one's own bookings.
    assert ids["Ada Own"] in ada.get("/bookings?status=RUNNING").get_data(as_text=True)
    assert ids["Ada Own"] not in ada.get("/bookings?status=COMPLETED").get_data(as_text=True)


def test_list_rejects_an_unknown_status_filter(client: FlaskClient) -> None:
    response = client.get("/bookings?status=%3Cb%3E")
    assert response.status_code == 400
    assert "Unknown status filter" in response.get_data(as_text=True)


def test_secret_key_is_generated_once_into_the_instance_folder(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("FLASK_SECRET_KEY", raising=False)
    from web import _secret_key

    first = _secret_key(tmp_path / "instance")
    assert len(first) == 64 and _secret_key(tmp_path / "instance") == first
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("SECRET_KEY", "from-env")
    assert _secret_key(tmp_path / "instance") == "from-env"


def test_secret_key_file_is_never_readable_by_others(tmp_path: Any, monkeypatch: Any) -> None:
    # A process killed between writing the key and restricting it must not
    # leave a world-readable key behind: here, chmod "crashes".
    monkeypatch.delenv("SECRET_KEY", raising=False)
    from web import _secret_key

    def crash(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed before chmod")

    monkeypatch.setattr(Path, "chmod", crash)
    monkeypatch.setattr(os, "chmod", crash)
    old_umask = os.umask(0o022)
    try:
        try:
            _secret_key(tmp_path / "instance")
        except SystemExit:
            pass
    finally:
        os.umask(old_umask)
    assert len((tmp_path / "instance" / "secret_key").read_text()) == 64
    for leftover in (tmp_path / "instance").iterdir():
        assert leftover.stat().st_mode & 0o077 == 0, f"{leftover.name} is readable by others"


@pytest.mark.parametrize("path", ["/", "/bookings", "/login", "/healthz", "/nope", "/static/htmx.min.js"])
def test_every_response_forbids_framing_sniffing_and_foreign_scripts(client: FlaskClient, path: str) -> None:
    headers = client.get(path).headers
    csp = {d.split()[0]: d.split()[1:] for d in headers["Content-Security-Policy"].split("; ")}
    assert csp["frame-ancestors"] == ["'none'"] and headers["X-Frame-Options"] == "DENY"
    assert csp["script-src"] == ["'self'"] and csp["object-src"] == ["'none'"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_app_runs_with_debug_off(app: Flask) -> None:
    assert app.debug is False


def test_fresh_form_tokens_differ(client: FlaskClient) -> None:
    assert form_tokens(client)["form_token"] != form_tokens(client)["form_token"]
    assert uuid.UUID(form_tokens(client)["form_token"])


def test_cancelling_a_booking_that_ended_since_the_page_loaded_is_a_409(dev_client: Client, task_queue: str) -> None:
    app = make_app(dev_client.service_client.config.target_host, dev_client.namespace, task_queue)
    client = app.test_client()
    try:
        location = client.post("/bookings", data={**demo_trip(date.today()), **form_tokens(client)}).headers["Location"]
        workflow_id = location.rsplit("/", 1)[1]
        log_in(client)
        page = client.get(location).get_data(as_text=True)
        assert re.search(r'id="cancel-form"\s*>', page), "the operator sees a cancel button while it runs"
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf

        app.extensions["temporal_portal"].call(lambda c: c.get_workflow_handle(workflow_id).terminate("test"))
        response = client.post(f"{location}/cancel", data={"csrf_token": csrf.group(1)})
        assert response.status_code == 409
        body = html.unescape(response.get_data(as_text=True))
        assert "already ended (TERMINATED); there is nothing to cancel" in body
        unknown = client.post("/bookings/trip-doesnotexist/cancel", data={"csrf_token": csrf.group(1)})
        assert unknown.status_code == 404
    finally:
        app.extensions["temporal_portal"].close()


def test_a_status_poll_gives_up_on_a_stalled_temporal_long_before_other_calls(
    dev_client: Client, task_queue: str
) -> None:
    proxy = FreezableProxy(dev_client.service_client.config.target_host)
    # The portal's own bound is an hour, so only the status poll's STATUS_TIMEOUT can answer it in time.
    portal = TemporalPortal(lambda: connect(target_host=proxy.address, namespace=dev_client.namespace), timeout=3600)
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "TASK_QUEUE": task_queue,
            "TEMPORAL_PORTAL": portal,
            "QUERY_TIMEOUT": 0.5,
            "STATUS_TIMEOUT": 1.5,
        }
    )
    client = app.test_client()
    try:
        location = client.post("/bookings", data={**demo_trip(date.today()), **form_tokens(client)}).headers["Location"]
        assert client.get(f"{location}/status").status_code == 200  # through the proxy while it relays
        proxy.frozen.set()
        replies: list[Any] = []
        poll = threading.Thread(target=lambda: replies.append(client.get(f"{location}/status")), daemon=True)
        poll.start()
        poll.join(WAIT_S)  # bounds a hang, not a budget: the alternative is the portal's hour
        assert replies, "the poll held its thread for the portal's own timeout, not its STATUS_TIMEOUT"
        [stalled] = replies
        assert stalled.status_code == 503 and stalled.get_json()["error"] == "Temporal is unavailable"
    finally:
        proxy.frozen.clear()
        portal.close()
        proxy.close()
