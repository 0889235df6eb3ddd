"""The callback receiver (``web.callbacks``) in front of a stand-in Temporal:
which callbacks reach the workflow as the same Update, and which as new ones.

Temporal answers a second Update with an id it has seen from the first one's
outcome, without running it: that is how a replayed delivery changes nothing.
So the Update id must name one delivery of one callback, and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from trip.callbacks import CallbackAccepted, signed_headers
from trip.models import Kind
from web import create_app
from web.callbacks import SECRETS_KEY

SECRETS = {Kind.FLIGHT: b"flight-secret", Kind.HOTEL: b"hotel-secret"}


class DedupingTemporal:
    """Runs the receiver's calls against one workflow that keeps one outcome per Update id, as Temporal does."""

    def __init__(self) -> None:
        #: The callbacks the workflow's handler saw, in order.
        self.handled: list[Any] = []
        self._outcomes: dict[str, CallbackAccepted] = {}

    def call(self, fn: Callable[[Any], Awaitable[Any]], *, timeout: float | None = None) -> Any:
        return asyncio.run(fn(self))

    def get_workflow_handle(self, workflow_id: str) -> DedupingTemporal:
        return self

    async def execute_update(self, name: str, arg: Any, *, id: str, result_type: type) -> CallbackAccepted:
        if id not in self._outcomes:
            self.handled.append(arg)
            self._outcomes[id] = CallbackAccepted(step=f"book_{arg.kind.value}", waited_s=1.0)
        return self._outcomes[id]

    def close(self) -> None:
        pass


@pytest.fixture
def temporal() -> DedupingTemporal:
    return DedupingTemporal()


@pytest.fixture
def client(temporal: DedupingTemporal) -> FlaskClient:
    app = create_app(
        {"TESTING": True, "SECRET_KEY": "x", "TEMPORAL_PORTAL": temporal, "OPERATORS": {}, SECRETS_KEY: SECRETS}
    )
    return app.test_client()


def deliver(client: FlaskClient, kind: Kind, delivery: str, confirmation: str = "OK-1") -> int:
    body = {
        "booking_id": "trip-1",
        "idempotency_key": f"trip-1:{kind.value}",
        "kind": kind.value,
        "reference": f"REF-{kind.value}",
        "confirmation": confirmation,
    }
    raw = json.dumps(body).encode()
    headers = signed_headers(SECRETS[kind], int(time.time()), raw, delivery)
    return client.post(f"/callbacks/{kind.value}", data=raw, headers=headers).status_code


def test_a_replayed_delivery_reaches_the_workflow_once(client: FlaskClient, temporal: DedupingTemporal) -> None:
    assert deliver(client, Kind.FLIGHT, "d-1") == 200
    assert deliver(client, Kind.FLIGHT, "d-1") == 200
    assert len(temporal.handled) == 1


def test_two_providers_delivery_ids_that_collide_are_two_callbacks(
    client: FlaskClient, temporal: DedupingTemporal
) -> None:
    # Each provider numbers its own deliveries: the hotel's "1" is not a replay of the airline's "1".
    assert deliver(client, Kind.FLIGHT, "1") == 200
    assert deliver(client, Kind.HOTEL, "1") == 200
    assert [cb.kind for cb in temporal.handled] == [Kind.FLIGHT, Kind.HOTEL]


def test_a_delivery_id_reused_with_another_body_is_not_a_replay(
    client: FlaskClient, temporal: DedupingTemporal
) -> None:
    # Only the same callback again is answered from the first outcome; another
    # body under a used id goes to the workflow, whose validator decides.
    assert deliver(client, Kind.FLIGHT, "d-1", confirmation="OK-1") == 200
    assert deliver(client, Kind.FLIGHT, "d-1", confirmation="OK-2") == 200
    assert [cb.confirmation for cb in temporal.handled] == ["OK-1", "OK-2"]


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"\xff\xfe", b"[1, 2]", b'{"booking_id": "trip-1"}', b'{"kind": "boat"}', b"[" * 4000],
    ids=["text", "not-utf8", "a-list", "fields-missing", "unknown-kind", "deeply-nested"],
)
def test_a_signed_body_that_is_not_a_callback_is_a_400_and_never_reaches_the_workflow(
    client: FlaskClient, temporal: DedupingTemporal, raw: bytes
) -> None:
    headers = signed_headers(SECRETS[Kind.FLIGHT], int(time.time()), raw, "d-1")
    response = client.post("/callbacks/flight", data=raw, headers=headers)
    assert response.status_code == 400 and response.json is not None
    assert response.json["error"] == "malformed"
    assert temporal.handled == []
