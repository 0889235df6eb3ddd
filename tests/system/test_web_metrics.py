"""The web app's ``/metrics``: form submissions by result and requests by route."""

from __future__ import annotations

from datetime import date

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.system.conftest import form_tokens
from trip.forms import demo_trip


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
