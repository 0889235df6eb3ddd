"""The worker's Prometheus endpoint, scraped after real sagas: the saga-level
counters move by exactly what the runs did, and the histogram has samples."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from activities import BookingActivities, make_http_client
from tests.conftest import ProviderService, free_port, make_request, wait_for_saga_status, wait_until
from trip.models import Mode, Scenario
from trip.status import SagaStatus
from wiring.client import connect
from wiring.metrics import runtime_with_prometheus
from wiring.outcome import await_outcome
from wiring.start import start_booking
from wiring.worker import build_worker


@pytest_asyncio.fixture
async def metered(dev_client: Client, providers: ProviderService, task_queue: str) -> AsyncIterator[tuple[Client, str]]:
    """A worker whose client has its own runtime serving /metrics, so the counts start at zero."""
    address = f"127.0.0.1:{free_port()}"
    client = await connect(
        target_host=dev_client.service_client.config.target_host,
        namespace=dev_client.namespace,
        runtime=runtime_with_prometheus(address),
    )
    async with (
        make_http_client(providers.url) as http,
        build_worker(client, BookingActivities(http), task_queue=task_queue),
    ):
        yield client, f"http://{address}/metrics"


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, keyed by name and our labels (the SDK adds namespace, task queue...)."""
    text = httpx.get(url, timeout=5).text
    ours = {"status", "step", "outcome", "le", "cause"}
    return {
        (s.name, frozenset((k, v) for k, v in s.labels.items() if k in ours)): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_counters_move_by_exactly_what_the_sagas_did(metered: tuple[Client, str], task_queue: str) -> None:
    client, url = metered
    for scenario in (Scenario.FLIGHT_SOLD_OUT, Scenario.HAPPY, Scenario.HAPPY):
        handle = await start_booking(client, make_request(scenario, Mode.SEQUENTIAL), task_queue=task_queue)
        await await_outcome(client, handle)

    samples = await wait_until(
        lambda: scrape(url),
        lambda s: value(s, "booking_sagas_total", status="COMPLETED") >= 2,
        what="two completed sagas to be counted",
    )
    assert value(samples, "booking_sagas_total", status="ROLLED_BACK") == 1
    assert value(samples, "booking_sagas_total", status="COMPLETED") == 2
    assert value(samples, "booking_compensations_total", step="book_car", outcome="compensated") == 1
    assert value(samples, "booking_compensations_total", step="book_hotel", outcome="compensated") == 1
    assert value(samples, "booking_compensations_total", step="book_car", outcome="failed") == 0
    assert value(samples, "booking_steps_total", step="book_car", outcome="succeeded") == 3
    assert value(samples, "booking_steps_total", step="book_flight", outcome="failed") == 1
    assert value(samples, "booking_steps_total", step="book_flight", outcome="succeeded") == 2
    assert value(samples, "booking_rollbacks_total", cause="SoldOut") == 1
    # One rollback, so one time-to-consistent sample, and a positive one.
    assert value(samples, "booking_time_to_consistent_seconds_count") == 1
    assert value(samples, "booking_time_to_consistent_seconds_sum") > 0
    # Its buckets reach past the SDK's 60 s default, so the p99 alert can tell minutes apart.
    buckets = {dict(labels)["le"] for name, labels in samples if name == "booking_time_to_consistent_seconds_bucket"}
    assert {"300", "600", "3600"} <= buckets, buckets
    # The SDK's own worker metrics are served on the same endpoint.
    assert any(name.startswith("temporal_") for name, _ in samples)


async def test_an_undo_that_keeps_failing_is_counted_by_step(metered: tuple[Client, str], task_queue: str) -> None:
    client, url = metered
    handle = await start_booking(
        client, make_request(Scenario.CAR_CANCEL_BROKEN, Mode.SEQUENTIAL), task_queue=task_queue
    )
    try:
        await wait_for_saga_status(handle, SagaStatus.NEEDS_ATTENTION)
        samples = await wait_until(
            lambda: scrape(url),
            lambda s: value(s, "booking_compensations_total", step="book_car", outcome="failed") >= 1,
            what="the car's failed undo to be counted",
        )
        assert value(samples, "booking_compensations_total", step="book_car", outcome="failed") == 1
        assert value(samples, "booking_compensations_total", step="book_hotel", outcome="compensated") == 1
        # Not closed yet: no final status counted.
        assert not any(name == "booking_sagas_total" and v for (name, _), v in samples.items())
    finally:
        await handle.terminate("test over")


async def test_a_hold_nobody_confirms_is_counted_as_lapsed(metered: tuple[Client, str], task_queue: str) -> None:
    client, url = metered
    held = make_request(Scenario.HAPPY, Mode.SEQUENTIAL).model_copy(update={"confirm_within": timedelta(seconds=1)})
    await await_outcome(client, await start_booking(client, held, task_queue=task_queue))
    samples = await wait_until(
        lambda: scrape(url),
        lambda s: value(s, "booking_sagas_total", status="ROLLED_BACK") >= 1,
        what="the lapsed hold to be counted",
    )
    assert value(samples, "booking_rollbacks_total", cause="ConfirmationTimeout") == 1


def test_final_status_names_how_the_workflow_closed() -> None:
    from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState

    from wiring.metrics import _final_status

    assert _final_status(ApplicationError("x", type="BookingRolledBack")) == "ROLLED_BACK"
    assert _final_status(ApplicationError("x", type="RollbackIncomplete")) == "ROLLBACK_INCOMPLETE"
    assert _final_status(ApplicationError("x", type="Other")) == "FAILED"
    assert _final_status(CancelledError("x")) == "CANCELLED"
    activity_error = ActivityError(
        "x",
        scheduled_event_id=1,
        started_event_id=2,
        identity="w",
        activity_type="book_car",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    assert _final_status(activity_error) == "FAILED"
    # A plain exception fails the workflow task, which retries: the saga has not closed.
    assert _final_status(RuntimeError("bug")) is None


async def test_a_step_whose_provider_never_calls_back_is_counted_as_timed_out(
    metered: tuple[Client, str], task_queue: str
) -> None:
    client, url = metered
    req = make_request(Scenario.FLIGHT_ASYNC_LOST, Mode.SEQUENTIAL).model_copy(update={"async_deadline_s": 0.5})
    handle = await start_booking(client, req, task_queue=task_queue)
    assert (await await_outcome(client, handle)).status is SagaStatus.ROLLED_BACK
    samples = await wait_until(
        lambda: scrape(url),
        lambda s: value(s, "booking_sagas_total", status="ROLLED_BACK") >= 1,
        what="the rolled-back saga to be counted",
    )
    assert value(samples, "booking_confirmations_timed_out_total", step="book_flight") == 1
    assert value(samples, "booking_rollbacks_total", cause="CallbackTimedOut") == 1
