"""One booking from the form is one trace: the form request, StartWorkflow, the
workflow, each activity, each provider HTTP call and the provider's handling of
it, each span the child of the one before.

Everything runs in this process (web app, worker, provider service) so one
in-memory exporter sees every span; across processes the same links travel in
the workflow's headers and the ``traceparent`` HTTP header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.client import Client

from activities import BookingActivities, make_http_client
from providers.app import create_app as create_providers_app
from providers.ledger import Ledger
from tests.conftest import free_port
from tests.system.conftest import form_tokens
from trip.forms import demo_trip
from trip.models import Scenario
from trip.status import SagaStatus
from web import create_app
from web.portal import TemporalPortal
from wiring.client import connect
from wiring.outcome import await_outcome
from wiring.tracing import instrument_http_client, temporal_interceptor
from wiring.worker import build_worker

STEPS = ("book_car", "book_hotel", "book_flight")


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest_asyncio.fixture
async def providers_url(spans: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Path) -> AsyncIterator[str]:
    app = create_providers_app(Ledger(tmp_path / "ledger.db", default_capacity=100), tracer_provider=spans[0])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def traced_client(dev_client: Client, provider: TracerProvider) -> Client:
    return await connect(
        target_host=dev_client.service_client.config.target_host,
        namespace=dev_client.namespace,
        interceptors=[temporal_interceptor(provider)],
    )


def by_name(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {sorted(s.name for s in spans)}"
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


@pytest.mark.parametrize("scenario", [Scenario.HAPPY, Scenario.FLIGHT_SOLD_OUT])
async def test_a_booking_from_the_form_is_one_trace_down_to_the_provider(
    dev_client: Client,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    providers_url: str,
    task_queue: str,
    scenario: Scenario,
) -> None:
    provider, exporter = spans
    client = await traced_client(dev_client, provider)
    portal = TemporalPortal(lambda: traced_client(dev_client, provider), timeout=10)
    app: Flask = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "TASK_QUEUE": task_queue,
            "TEMPORAL_PORTAL": portal,
            "TRACER_PROVIDER": provider,
        }
    )
    try:
        async with make_http_client(providers_url) as http:
            instrument_http_client(http, provider)
            async with build_worker(client, BookingActivities(http), task_queue=task_queue):
                web_client = app.test_client()
                form: dict[str, Any] = {
                    **demo_trip(date.today()),
                    **form_tokens(web_client),
                    "scenario": scenario.value,
                }
                response = web_client.post("/bookings", data=form)
                assert response.status_code == 303
                workflow_id = response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
                outcome = await await_outcome(client, client.get_workflow_handle(workflow_id))
    finally:
        portal.close()
    assert outcome.status is (SagaStatus.COMPLETED if scenario is Scenario.HAPPY else SagaStatus.ROLLED_BACK)

    finished = list(exporter.get_finished_spans())
    form_span = next(s for s in finished if s.kind is SpanKind.SERVER and s.name == "POST /bookings")
    assert form_span.parent is None
    trace_id = form_span.context.trace_id if form_span.context else None
    ours = [s for s in finished if s.context is not None and s.context.trace_id == trace_id]

    start = by_name(ours, "StartWorkflow:BookingWorkflow")
    run = by_name(ours, "RunWorkflow:BookingWorkflow")
    assert parent_of(start) == span_id(form_span)
    assert parent_of(run) == span_id(start)
    assert parent_of(by_name(ours, "CompleteWorkflow:BookingWorkflow")) == span_id(start)

    activities = list(STEPS)
    if scenario is Scenario.FLIGHT_SOLD_OUT:  # the undos of what was booked are in the same trace
        activities += ["undo_book_car", "undo_book_hotel"]
    for activity in activities:
        started = [s for s in ours if s.name == f"StartActivity:{activity}"]
        # The SDK parents workflow-side spans on the workflow's incoming
        # context (StartWorkflow): RunWorkflow and each StartActivity are siblings.
        assert started and all(parent_of(s) == span_id(start) for s in started), activity
        ran = [s for s in ours if s.name == f"RunActivity:{activity}" and parent_of(s) in {span_id(x) for x in started}]
        assert ran, f"no RunActivity:{activity} under its StartActivity"
        calls = [s for s in ours if s.kind is SpanKind.CLIENT and parent_of(s) in {span_id(r) for r in ran}]
        assert calls, f"no provider HTTP call under RunActivity:{activity}"
        served = [s for s in ours if s.kind is SpanKind.SERVER and parent_of(s) in {span_id(c) for c in calls}]
        assert served, f"the provider's span for {activity} does not continue the caller's trace"
