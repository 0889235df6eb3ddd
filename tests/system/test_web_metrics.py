"""The web app's ``/metrics``: form submissions by result, requests by route, and the
booking gauges read from visibility (stuck bookings, even paused; held trips)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from tests.conftest import free_port, make_request, wait_for_saga_status, wait_until
from tests.system.conftest import form_tokens, make_app, temporal_cli
from trip.forms import demo_trip
from trip.models import Mode, Scenario
from trip.status import SagaStatus
from wiring.paused_status import describe_execution
from wiring.start import start_booking
from wiring.updates import resolve


def samples(web: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = web.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def submissions(web: FlaskClient, result: str) -> float:
    return samples(web).get(("booking_form_submissions_total", frozenset({("result", result)})), 0.0)


def test_each_form_result_is_counted_once(app: Flask, client: FlaskClient) -> None:
    valid = demo_trip(date.today())
    assert client.post("/bookings", data={**valid, **form_tokens(client)}).status_code == 303
    assert client.post("/bookings", data={**valid, **form_tokens(client), "car_city": ""}).status_code == 400
    assert client.post("/bookings", data={**valid, "csrf_token": "forged"}).status_code == 400
    assert submissions(client, "started") == 1
    assert submissions(client, "invalid") == 1
    assert submissions(client, "rejected") == 1


def test_requests_are_counted_by_route_not_by_path(app: Flask, client: FlaskClient) -> None:
    client.get("/bookings/trip-aaaaaaaaaaaa")
    client.get("/bookings/trip-bbbbbbbbbbbb")
    found = {
        labels: v
        for (name, labels), v in samples(client).items()
        if name == "booking_web_requests_total" and ("method", "GET") in labels
    }
    routes = {dict(labels)["route"] for labels in found}
    assert not any("trip-aaaa" in r for r in routes)
    by_route = {dict(labels)["route"]: v for labels, v in found.items()}
    assert sum(v for r, v in by_route.items() if r.startswith("/bookings/<")) == 2


def gauge(web: FlaskClient, name: str) -> float | None:
    """The value of one booking gauge (one task queue per app), None when it is left out."""
    found = [v for (n, _), v in samples(web).items() if n == name]
    return found[0] if found else None


@pytest.fixture
def fresh_app(dev_client: Client, task_queue: str) -> Iterator[Flask]:
    """An app that asks visibility on every scrape, so a test sees each change at once."""
    app = make_app(
        dev_client.service_client.config.target_host, dev_client.namespace, task_queue, VISIBILITY_METRICS_TTL=0
    )
    yield app
    app.extensions["temporal_portal"].close()


async def test_a_stuck_booking_is_counted_while_paused_and_not_once_resolved(
    dev_client: Client, worker: str, fresh_app: Flask
) -> None:
    web = fresh_app.test_client()
    handle = await start_booking(
        dev_client, make_request(Scenario.CAR_CANCEL_BROKEN, Mode.SEQUENTIAL), task_queue=worker
    )
    await wait_for_saga_status(handle, SagaStatus.NEEDS_ATTENTION)
    await wait_until(
        lambda: gauge(web, "booking_needs_attention"), lambda v: v == 1, what="the stuck booking to be counted"
    )
    assert (gauge(web, "booking_needs_attention_oldest_age_seconds") or 0) > 0
    assert gauge(web, "booking_visibility_up") == 1

    # Paused in Temporal, it still waits for an operator: still counted.
    assert temporal_cli(dev_client, "workflow", "pause", "--workflow-id", handle.id, "--reason", "t").returncode == 0
    await wait_until(lambda: describe_execution(dev_client, handle.id), lambda e: e.paused, what="the run to be paused")
    assert gauge(web, "booking_needs_attention") == 1
    assert temporal_cli(dev_client, "workflow", "unpause", "--workflow-id", handle.id).returncode == 0

    await resolve(handle, step="book_car", operator="ops", note="released by phone")
    await wait_until(
        lambda: gauge(web, "booking_needs_attention"), lambda v: v == 0, what="the resolved booking to leave the count"
    )
    assert gauge(web, "booking_needs_attention_oldest_age_seconds") == 0


async def test_a_held_trip_is_counted_while_it_awaits_the_traveller(
    dev_client: Client, worker: str, fresh_app: Flask
) -> None:
    web = fresh_app.test_client()
    held = make_request(Scenario.HAPPY, Mode.SEQUENTIAL).model_copy(update={"confirm_within": timedelta(hours=1)})
    handle = await start_booking(dev_client, held, task_queue=worker)
    try:
        await wait_for_saga_status(handle, SagaStatus.AWAITING_CONFIRMATION)
        await wait_until(
            lambda: gauge(web, "booking_awaiting_confirmation"), lambda v: v == 1, what="the held trip to be counted"
        )
        assert gauge(web, "booking_needs_attention") == 0
    finally:
        await handle.terminate("test over")
    await wait_until(
        lambda: gauge(web, "booking_awaiting_confirmation"), lambda v: v == 0, what="the closed run to leave the count"
    )


def test_temporal_unreachable_leaves_the_gauges_out_and_says_so(dev_client: Client, task_queue: str) -> None:
    # Nothing listens on this port: the gauges are left out and booking_visibility_up says why.
    app = make_app(f"127.0.0.1:{free_port()}", "default", task_queue, VISIBILITY_METRICS_TIMEOUT=2.0)
    try:
        web = app.test_client()
        assert gauge(web, "booking_visibility_up") == 0
        assert gauge(web, "booking_needs_attention") is None
    finally:
        app.extensions["temporal_portal"].close()
