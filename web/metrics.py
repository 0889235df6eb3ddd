"""``GET /metrics``: the web app's request and form metrics for Prometheus.

* ``booking_web_requests_total{method,route,status}`` and
  ``booking_web_request_duration_seconds{method,route}``: every request, by
  URL rule (never the raw path, so workflow ids do not explode cardinality);
* ``booking_form_submissions_total{result}``: ``POST /bookings`` by outcome,
  ``started``, ``invalid``, ``rejected`` (CSRF), ``temporal_unavailable`` or
  ``error``;
* the booking gauges from Temporal's visibility (``web.gauges``): bookings in
  NEEDS_ATTENTION and the oldest one's age, held trips awaiting an answer.

Observed from request hooks, so no view carries telemetry. Each app gets its
own registry: the tests build many apps in one process.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from web.gauges import make_gauges

METRICS_KEY = "prometheus_registry"

_FORM_RESULT = {303: "started", 302: "started", 400: "invalid", 503: "temporal_unavailable"}


def _form_result(response: Response) -> str:
    # CSRFProtect's own before_request hook runs before ours (it is registered
    # first); when it refuses a request ours never ran.
    if response.status_code == 400 and "metrics_started" not in g:
        return "rejected"
    return _FORM_RESULT.get(response.status_code, "error")


def register(app: Flask) -> None:
    registry = CollectorRegistry()
    requests = Counter(
        "booking_web_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=registry
    )
    latency = Histogram(
        "booking_web_request_duration_seconds", "HTTP request latency", ["method", "route"], registry=registry
    )
    submissions = Counter(
        "booking_form_submissions", "Booking form submissions by result", ["result"], registry=registry
    )
    registry.register(make_gauges(app))
    app.extensions[METRICS_KEY] = registry

    @app.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if route == "/metrics":
            return response
        requests.labels(request.method, route, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            latency.labels(request.method, route).observe(time.perf_counter() - started)
        if request.method == "POST" and route == "/bookings":
            submissions.labels(_form_result(response)).inc()
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
