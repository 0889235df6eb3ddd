"""Confirmation by signed callback, end to end: the dev server, the real provider
service sending its callbacks, the real web app receiving them, a real worker.

One stack for the module: the web app (``python -m web``), a provider service
whose callbacks go to it (``--callback-url``, ``--callback-secrets``, a short
``--callback-delay-s``) and ``run_worker.py``. The tests that send callbacks
themselves use ``flight-async-lost``, where the provider never calls back, and
sign them with the secrets file the two services share.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from tests.conftest import (
    ROOT,
    ProviderService,
    WorkerProcess,
    make_request,
    stop_process,
    wait_until,
    wait_until_blocking,
)
from tests.system.conftest import cli
from tests.system.test_web_e2e import browser  # noqa: F401  (the Chromium fixture)
from trip.callbacks import MAX_BODY_BYTES, generate_secrets, load_secrets, signed_headers
from trip.models import Kind, Mode, Scenario
from trip.status import BookingStatus, SagaStatus
from web.operators import add_operator
from wiring.local_stack import parse_providers_url, providers_command
from wiring.outcome import await_outcome
from wiring.secrets import write_secret
from wiring.start import start_booking
from workflows.booking import BookingWorkflow

#: Seconds the provider waits before its callback: long enough that a booking
#: whose deadline is 1 s is undone first, short enough to keep the module quick.
CALLBACK_DELAY_S = 2.0


@dataclass
class Stack:
    web: str
    providers: ProviderService
    queue: str
    secret: bytes
    client: Client

    async def start(self, scenario: Scenario, mode: Mode = Mode.SEQUENTIAL, **extra: Any) -> WorkflowHandle[Any, Any]:
        req = make_request(scenario, mode).model_copy(update=extra)
        return await start_booking(self.client, req, task_queue=self.queue)

    async def waiting(self, handle: WorkflowHandle[Any, Any]) -> BookingStatus:
        return await wait_until(
            lambda: handle.query(BookingWorkflow.status), lambda s: bool(s.waiting), what="the flight to wait"
        )

    def send(
        self,
        body: dict[str, Any] | bytes,
        *,
        delivery: str | None = None,
        secret: bytes | None = None,
        at: float | None = None,
        kind: str = "flight",
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = signed_headers(
            secret or self.secret, int(at if at is not None else time.time()), raw, delivery or uuid.uuid4().hex
        )
        return httpx.post(f"{self.web}/callbacks/{kind}", content=raw, headers=headers, timeout=15)

    def post_unsigned(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.web}/callbacks/flight", content=json.dumps(body).encode(), timeout=15)

    def metrics(self) -> str:
        return httpx.get(f"{self.web}/metrics", timeout=15).text

    def pending_row(self, booking_id: str) -> dict[str, Any]:
        [row] = [r for r in self.providers.reservations(booking_id) if r["kind"] == "flight"]
        return row

    def deliveries(self, booking_id: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.providers.url}/callbacks/deliveries", params={"booking_id": booking_id})
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()
        return rows


def genuine(row: dict[str, Any], **changes: str) -> dict[str, Any]:
    body = {
        "booking_id": row["booking_id"],
        "idempotency_key": row["idempotency_key"],
        "kind": row["kind"],
        "reference": row["reference"],
        "confirmation": "FLT-BY-HAND",
    }
    return {**body, **changes}


@pytest.fixture(scope="module")
def stack(dev_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("callbacks")
    secrets_file = folder / "callback_secrets.json"
    write_secret(secrets_file, generate_secrets())
    operators = folder / "operators.toml"
    add_operator(operators, "grace", "operator-password")
    queue = f"tq-{uuid.uuid4().hex}"
    env = dict(
        os.environ,
        TEMPORAL_ADDRESS=dev_client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=dev_client.namespace,
        BOOKING_TASK_QUEUE=queue,
        SECRET_KEY=uuid.uuid4().hex,
        OPERATORS_FILE=str(operators),
        CALLBACK_SECRETS_FILE=str(secrets_file),
    )
    web = subprocess.Popen(
        [sys.executable, "-m", "web", "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    procs: list[subprocess.Popen[str]] = [web]
    worker: WorkerProcess | None = None
    try:
        assert web.stdout is not None
        line = web.stdout.readline()
        assert line.startswith("web app listening on "), line
        web_url = line.split()[-1]
        db = folder / "ledger.db"
        extra = (
            *("--callback-url", web_url, "--callback-secrets", str(secrets_file)),
            *("--callback-delay-s", str(CALLBACK_DELAY_S)),
        )
        providers = subprocess.Popen(
            providers_command(db, extra=extra), cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        procs.append(providers)
        assert providers.stdout is not None
        url = parse_providers_url(providers.stdout.readline())
        worker = WorkerProcess(dev_client, url, queue)
        yield Stack(
            web=web_url,
            providers=ProviderService(url=url, db=db, proc=providers),
            queue=queue,
            secret=load_secrets(secrets_file)[Kind.FLIGHT],
            client=dev_client,
        )
    finally:
        if worker is not None:
            worker.stop()
        for proc in procs:
            stop_process(proc)


async def test_the_provider_calls_back_and_the_booking_completes_with_the_airlines_confirmation(stack: Stack) -> None:
    handle = await stack.start(Scenario.FLIGHT_ASYNC)
    status = await stack.waiting(handle)
    row = stack.pending_row(handle.id)
    assert row["status"] == "pending"
    assert status.waiting[0].reference == row["reference"]
    outcome = await await_outcome(stack.client, handle)
    assert outcome.status is SagaStatus.COMPLETED
    confirmed = stack.pending_row(handle.id)
    assert outcome.result is not None and outcome.result.confirmations["flight"] == confirmed["confirmation"]
    # The row becomes active once the receiver has accepted (just after the workflow saw it).
    await wait_until(lambda: stack.pending_row(handle.id), lambda r: r["status"] == "active", what="the row to confirm")
    attempts = stack.deliveries(handle.id)
    assert attempts[-1]["outcome"] == "delivered" and attempts[-1]["http_status"] == 200
    # One callback, one delivery id, however many attempts it took.
    assert len({a["delivery_id"] for a in attempts}) == 1


async def test_a_forged_expired_or_misdirected_callback_gets_401_and_the_genuine_one_then_completes(
    stack: Stack,
) -> None:
    handle = await stack.start(Scenario.FLIGHT_ASYNC_LOST, async_deadline_s=600)
    await stack.waiting(handle)
    row = stack.pending_row(handle.id)
    body = genuine(row)
    forged = stack.send(body, secret=b"not the airline's secret")
    expired = stack.send(body, at=time.time() - 6 * 60)
    other_step = stack.send(genuine(row, reference="FLT-QSOMEONEELSE"))
    unsigned = stack.post_unsigned(body)
    assert [r.status_code for r in (forged, expired, other_step, unsigned)] == [401] * 4
    assert [r.json()["error"] for r in (forged, expired, other_step)] == ["forged", "expired", "wrong_reference"]
    still = await handle.query(BookingWorkflow.status)
    assert still.status is SagaStatus.RUNNING and [w.step for w in still.waiting] == ["book_flight"]
    assert stack.pending_row(handle.id)["status"] == "pending"

    accepted = stack.send(body)
    assert accepted.status_code == 200, accepted.text
    outcome = await await_outcome(stack.client, handle)
    assert outcome.status is SagaStatus.COMPLETED
    assert outcome.result is not None and outcome.result.confirmations["flight"] == "FLT-BY-HAND"
    metrics = stack.metrics()
    assert 'booking_callbacks_rejected_total{kind="flight",reason="forged"}' in metrics
    assert 'booking_callback_latency_seconds_count{kind="flight"}' in metrics


async def test_a_replayed_delivery_is_answered_200_and_changes_nothing(stack: Stack) -> None:
    handle = await stack.start(Scenario.FLIGHT_ASYNC_LOST, mode=Mode.PARALLEL, async_deadline_s=600)
    await stack.waiting(handle)
    row = stack.pending_row(handle.id)
    delivery = uuid.uuid4().hex
    first = stack.send(genuine(row, confirmation="FLT-FIRST"), delivery=delivery)
    assert first.status_code == 200, first.text
    await await_outcome(stack.client, handle)
    # The same delivery again: answered from the first outcome.
    again = stack.send(genuine(row, confirmation="FLT-FIRST"), delivery=delivery)
    assert again.status_code == 200, again.text
    assert again.json()["step"] == "book_flight"
    # Its id with another confirmation in it is no replay: a 200 would tell the
    # provider that confirmation was taken. It is judged afresh, and refused.
    reused = stack.send(genuine(row, confirmation="FLT-SECOND"), delivery=delivery)
    assert reused.status_code == 409, reused.text
    history = await handle.fetch_history()
    accepted = [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
    assert len(accepted) == 1
    status = await handle.query(BookingWorkflow.status)
    assert status.confirmations["flight"] == "FLT-FIRST"


async def test_a_callback_for_an_unknown_booking_gets_404(stack: Stack) -> None:
    body = {"booking_id": "trip-nobody", "idempotency_key": "trip-nobody:flight", "kind": "flight"}
    response = stack.send({**body, "reference": "FLT-Q1", "confirmation": "FLT-1"})
    assert response.status_code == 404, response.text


async def test_a_callback_body_over_the_limit_gets_413(stack: Stack) -> None:
    response = stack.send(b"{" + b" " * MAX_BODY_BYTES + b"}")
    assert response.status_code == 413


async def test_past_the_deadline_the_booking_rolls_back_and_a_late_callback_gets_409(stack: Stack) -> None:
    handle = await stack.start(Scenario.FLIGHT_ASYNC_LOST, async_deadline_s=1)
    await stack.waiting(handle)
    row = stack.pending_row(handle.id)
    outcome = await await_outcome(stack.client, handle)
    assert outcome.status is SagaStatus.ROLLED_BACK
    late = stack.send(genuine(row))
    assert late.status_code == 409, late.text
    rows = stack.providers.reservations(handle.id)
    assert rows and all(r["status"] == "cancelled" for r in rows), rows
    status = await handle.query(BookingWorkflow.status)
    assert status.failure is not None and status.failure.step == "book_flight"
    assert stack.deliveries(handle.id) == []  # flight-async-lost never calls back


async def test_the_provider_does_not_send_the_callback_of_a_reservation_cancelled_first(stack: Stack) -> None:
    handle = await stack.start(Scenario.FLIGHT_ASYNC, async_deadline_s=0.5)
    outcome = await await_outcome(stack.client, handle)
    assert outcome.status is SagaStatus.ROLLED_BACK
    attempts = await wait_until(
        lambda: stack.deliveries(handle.id), lambda rows: bool(rows), what="the provider to try its callback"
    )
    assert [a["outcome"] for a in attempts] == ["abandoned"]
    assert stack.pending_row(handle.id)["status"] == "cancelled"


async def test_the_status_page_shows_the_waiting_banner_until_the_callback_comes(
    stack: Stack,
    browser: Any,  # noqa: F811
) -> None:
    page = await browser.new_page(viewport={"width": 1000, "height": 1100})
    await page.goto(stack.web + "/")
    await page.get_by_label("Demo scenario").select_option(Scenario.FLIGHT_ASYNC_LOST.value)
    await page.get_by_label("Mode").select_option("sequential")
    await page.get_by_label("Wait for a provider's confirmation (seconds)").fill("600")
    await page.get_by_role("button", name="Book the trip").click()
    await page.wait_for_url(re.compile(r"/bookings/trip-[0-9a-f]{32}-[0-9a-f]{16}$"))
    booking_id = page.url.rsplit("/", 1)[-1]
    banner = page.locator("#waiting-book_flight")
    await banner.wait_for(timeout=30_000)
    row = stack.pending_row(booking_id)
    text = " ".join((await banner.inner_text()).split())
    assert f"waiting for the airline's confirmation (ref {row['reference']}) since " in text
    status = await stack.client.get_workflow_handle(booking_id).query(BookingWorkflow.status)
    # The form's field reached the workflow: a 600 s deadline.
    assert status.waiting[0].deadline - status.waiting[0].since == timedelta(seconds=600)
    assert stack.send(genuine(row)).status_code == 200
    await page.locator("#saga-status", has_text="Completed").wait_for(timeout=30_000)
    assert await banner.count() == 0


@pytest.mark.parametrize(("scenario", "kind"), [(Scenario.FLIGHT_ASYNC, "flight"), (Scenario.HOTEL_ASYNC, "hotel")])
def test_the_cli_books_and_reports_the_providers_confirmation_from_its_callback_in_json(
    stack: Stack, scenario: Scenario, kind: str
) -> None:
    done = cli(stack.client, "--scenario", scenario.value, "--task-queue", stack.queue, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "COMPLETED"
    # The row turns active once the provider hears the receiver's 200, just after the workflow has moved on.
    [row] = wait_until_blocking(
        lambda: [r for r in stack.providers.reservations(report["workflow_id"]) if r["kind"] == kind],
        lambda rows: rows[0]["status"] == "active",
        what=f"the {kind} row to turn active",
    )
    assert report["confirmations"][kind] == row["confirmation"]
    [waited] = report["waited"]
    assert (waited["step"], waited["reference"], waited["outcome"]) == (f"book_{kind}", row["reference"], "confirmed")


def test_the_cli_rolls_a_lost_callback_back_and_leaves_nothing_held(stack: Stack) -> None:
    done = cli(stack.client, "--scenario", "flight-async-lost", "--async-deadline", "1", "--task-queue", stack.queue)
    assert done.returncode == 1, done.stderr  # rolled back
    assert "book_flight: waiting for the airline's confirmation (ref " in done.stdout
    assert "CallbackTimedOut" in done.stdout
    booking_id = re.search(r"Booking (\S+) started", done.stdout).group(1)  # type: ignore[union-attr]
    rows = stack.providers.reservations(booking_id)
    assert rows and not [r for r in rows if r["status"] in ("active", "pending")], rows


def test_a_retried_booking_call_gets_the_same_pending_answer(stack: Stack) -> None:
    body = {
        "booking_id": "trip-retried",
        "idempotency_key": "trip-retried:flight",
        "traveller": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "details": {"origin": "London", "destination": "Lisbon", "date": "2031-01-02"},
    }
    headers = {"X-Scenario": Scenario.FLIGHT_ASYNC_LOST.value}
    first, again = (
        httpx.post(f"{stack.providers.url}/flight/reservations", json=body, headers=headers, timeout=15)
        for _ in range(2)
    )
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["reference"] == again.json()["reference"]
    assert first.json()["status"] == "pending" and first.json()["confirmation"] is None
    assert len(stack.providers.reservations("trip-retried")) == 1
