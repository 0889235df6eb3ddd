"""Fuzz the booking form: any field values get 200, 303 or 400, never a 5xx,
and a 400 starts no workflow.

"Starts no workflow" is checked twice, neither time through visibility (which
lags, so a count of 0 right after the request would prove nothing): the
portal records every call the app makes to Temporal, and the id a start would
have used (``trip-<form token>``) is described, which is consistent at once.
A 303 must pass the same checks the other way round, so the checks can fail.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import example, given
from hypothesis import strategies as st
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tests.fuzzing import content_type, deep_json, edge_days, huge_ints
from trip.forms import demo_trip
from web import create_app
from web.portal import TemporalPortal
from wiring.client import connect
from wiring.paused_status import describe_execution

T = TypeVar("T")


class RecordingPortal(TemporalPortal):
    """The real portal, noting what each request asked Temporal to do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def call(self, fn: Callable[[Client], Awaitable[T]], *, timeout: float | None = None) -> T:
        self.calls.append(fn.__qualname__)
        return super().call(fn, timeout=timeout)

    def starts(self) -> list[str]:
        return [name for name in self.calls if name.startswith("create_booking.")]


@pytest.fixture(scope="module")
def portal(dev_client: Client) -> Iterator[RecordingPortal]:
    address, namespace = dev_client.service_client.config.target_host, dev_client.namespace
    portal = RecordingPortal(lambda: connect(target_host=address, namespace=namespace), timeout=10)
    yield portal
    portal.close()


@pytest.fixture(scope="module")
def app(portal: RecordingPortal) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "fuzz-secret",
            "TASK_QUEUE": f"fuzz-{uuid.uuid4().hex}",  # no worker: started bookings just wait
            "TEMPORAL_UI_URL": "http://ui.test",
            "TEMPORAL_PORTAL": portal,
        }
    )


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def csrf(client: FlaskClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert found
    return found.group(1)


FIELDS = [*demo_trip(date.today())]
text = st.text(st.characters(codec="utf-8"), max_size=80)
odd_values = st.one_of(
    text,
    st.sampled_from(["", " ", "2030-02-30", "0001-01-01", "9999-12-31", "sequential", "hotel-down", "<b>x</b>"]),
    st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "é", "\U0001f600", "\u202e"]), st.integers(60, 20_000)),
    st.binary(max_size=20),  # not UTF-8: a hand-made request can send anything
    edge_days,
    huge_ints.map(str),
    deep_json,
)


@st.composite
def forms(draw: st.DrawFn) -> dict[str, Any]:
    """The demo trip with some fields replaced, dropped or repeated, and sometimes extra fields."""
    data: dict[str, Any] = dict(demo_trip(date.today()))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=5, unique=True)):
        if draw(st.integers(0, 4)) == 0:
            del data[name]
        else:
            data[name] = draw(odd_values)
    if draw(st.integers(0, 9)) == 0:
        data[draw(text)] = draw(odd_values)
    return data


def post(
    client: FlaskClient, data: dict[str, Any], media: str = "application/x-www-form-urlencoded"
) -> tuple[Any, int]:
    """The response, and how many bytes the body had."""
    # Encoded by hand so that bytes that are not UTF-8 reach the app as sent.
    body = urlencode(list(data.items()), doseq=False)
    return client.post("/bookings", data=body, content_type=media), len(body)


def started(portal: RecordingPortal, workflow_id: str) -> bool:
    async def describe(client: Client) -> bool:
        try:
            await describe_execution(client, workflow_id)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    return portal.call(describe)


@given(
    forms(),
    st.sampled_from(["ok", "missing", "forged"]),
    st.sampled_from(["ok", "missing", "bad"]),
    content_type("application/x-www-form-urlencoded"),
)
@example(
    dict(demo_trip(date.today())), "ok", "ok", "application/x-www-form-urlencoded"
)  # the valid form: the checks must see its start
def test_any_form_gets_200_303_or_400_and_a_400_starts_nothing(
    app: Flask,
    client: FlaskClient,
    portal: RecordingPortal,
    csrf: str,
    data: dict[str, Any],
    csrf_how: str,
    token_how: str,
    media: str,
) -> None:
    token = uuid.uuid4().hex
    data = dict(data)
    if csrf_how == "ok":
        data["csrf_token"] = csrf
    elif csrf_how == "forged":
        data["csrf_token"] = csrf[::-1]
    if token_how == "ok":
        data["form_token"] = token
    elif token_how == "bad":
        data["form_token"] = token.upper()
    before = len(portal.starts())
    response, size = post(client, data, media)
    # 413 is the app's own body limit (a 64 KiB form is no trip), and only past it.
    allowed = (200, 303, 400, 413) if size > app.config["MAX_CONTENT_LENGTH"] else (200, 303, 400)
    assert response.status_code in allowed, (size, response.get_data(as_text=True)[:500])
    if response.status_code == 303:
        # The id is the form's token plus the request's digest (web.booking).
        workflow_id = response.headers["Location"].removeprefix("/bookings/")
        assert workflow_id.startswith(f"trip-{token}-")
        assert len(portal.starts()) == before + 1
        assert started(portal, workflow_id)
    else:
        # Every start goes through the portal, which records it: read-after-write,
        # unlike visibility. (A refused form has no request digest, so no id to describe.)
        assert len(portal.starts()) == before, "a refused form asked Temporal to start a booking"
