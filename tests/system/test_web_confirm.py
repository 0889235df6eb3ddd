"""Hold and confirm in the web app: the form's option, the status page's
banner and its Confirm / Decline buttons, through the Flask test client.

The app talks to the real dev server, but the worker runs ``HeldTrip``, a
stand-in registered under the booking workflow's name that keeps the contract
the page relies on (the ``status`` query, the ``confirm`` / ``decline``
Updates and their validators) and nothing else. What the page does with the
real workflow and providers is in ``tests/system/test_web_e2e.py``.
"""

from __future__ import annotations

import asyncio
import html
import re
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from temporalio import workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from saga import StepKind, StepState
from tests.conftest import wait_until
from tests.system.conftest import form_tokens, log_in, started_besides_a_control
from trip import UPDATE_CONFIRM, UPDATE_DECLINE, WORKFLOW_TYPE
from trip.errors import ErrorType
from trip.forms import demo_trip
from trip.models import BookingRequest
from trip.status import (
    BookingResult,
    BookingStatus,
    ConfirmationView,
    ConfirmInput,
    ConfirmResult,
    SagaStatus,
    StepView,
)
from wiring.client import connect

TICKET = "TKT-0042-TEST"
STEPS = [
    ("book_car", StepKind.COMPENSATABLE),
    ("book_hotel", StepKind.COMPENSATABLE),
    ("book_flight", StepKind.COMPENSATABLE),
    ("ticket_flight", StepKind.PIVOT),
    ("finalize_car", StepKind.RETRIABLE),
    ("finalize_hotel", StepKind.RETRIABLE),
]


@workflow.defn(name=WORKFLOW_TYPE)
class HeldTrip:
    """Holds, waits for the traveller, then ticketing stays open until ``finish``."""

    def __init__(self) -> None:
        self._status = SagaStatus.RUNNING
        self._req: BookingRequest | None = None
        self._confirmation: ConfirmationView | None = None
        self._decision: str | None = None
        self._finish = False

    @workflow.run
    async def run(self, req: BookingRequest) -> BookingResult:
        self._req = req
        if req.confirm_within is None:
            self._status = SagaStatus.COMPLETED
            return BookingResult(confirmations={}, steps=self._steps())
        now = workflow.now()
        self._confirmation = ConfirmationView(since=now, deadline=now + req.confirm_within)
        self._status = SagaStatus.AWAITING_CONFIRMATION
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=req.confirm_within)
        except TimeoutError:
            self._decision = "expired"
        self._confirmation = self._confirmation.model_copy(update={"decision": self._decision})
        if self._decision != "confirmed":
            self._status = SagaStatus.ROLLED_BACK
            cause = ErrorType.DECLINED if self._decision == "declined" else ErrorType.CONFIRMATION_TIMEOUT
            raise ApplicationError(
                "Trip not booked: every hold was released",
                type=ErrorType.BOOKING_ROLLED_BACK.value,
                non_retryable=True,
            ) from ApplicationError(self._decision or "", type=cause.value, non_retryable=True)
        self._status = SagaStatus.RUNNING  # ticketed; finalizing until the test says ``finish``
        try:
            await workflow.wait_condition(lambda: self._finish)
        except asyncio.CancelledError:
            # As the booking workflow: past the pivot a cancel is too late, the trip goes on.
            await workflow.wait_condition(lambda: self._finish)
        self._status = SagaStatus.COMPLETED
        return BookingResult(confirmations={}, steps=self._steps(), ticket=TICKET)

    def _steps(self) -> list[StepView]:
        confirmed = self._decision == "confirmed"
        return [
            StepView(
                name=name,
                kind=kind,
                state=StepState.SUCCEEDED if kind is StepKind.COMPENSATABLE or confirmed else StepState.PENDING,
            )
            for name, kind in STEPS
        ]

    @workflow.query(name="status")
    def status(self) -> BookingStatus:
        assert self._req is not None
        confirmed = self._decision == "confirmed"
        return BookingStatus(
            status=self._status,
            mode=self._req.mode,
            scenario=self._req.scenario,
            traveller=self._req.traveller.name,
            steps=self._steps(),
            compensation_plan=[],
            trip=self._req,
            confirmation=self._confirmation,
            past_pivot=confirmed,
            ticket=TICKET if confirmed else None,
        )

    @workflow.update(name=UPDATE_CONFIRM)
    def confirm(self, answer: ConfirmInput) -> ConfirmResult:
        return self._decide("confirmed", answer)

    @workflow.update(name=UPDATE_DECLINE)
    def decline(self, answer: ConfirmInput) -> ConfirmResult:
        return self._decide("declined", answer)

    def _decide(self, decision: str, answer: ConfirmInput) -> ConfirmResult:
        self._decision = decision
        assert self._confirmation is not None
        self._confirmation = self._confirmation.model_copy(update={"note": answer.note})
        return ConfirmResult(status=self._status, decision=decision)

    @confirm.validator
    def _check_confirm(self, answer: ConfirmInput) -> None:
        self._check()

    @decline.validator
    def _check_decline(self, answer: ConfirmInput) -> None:
        self._check()

    def _check(self) -> None:
        if self._status is not SagaStatus.AWAITING_CONFIRMATION or self._decision is not None:
            raise ValueError(f"the trip is not waiting for confirmation (it is {self._status.value})")

    @workflow.signal
    def finish(self) -> None:
        self._finish = True


class ThreadedWorker:
    """A ``HeldTrip`` worker on its own thread and event loop.

    The Flask test client blocks the test's loop while a view waits for a
    query; a worker on that same loop could never answer it.
    """

    def __init__(self, address: str, namespace: str, task_queue: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="held-trip-worker", daemon=True)
        self._thread.start()
        self._worker = asyncio.run_coroutine_threadsafe(self._start(address, namespace, task_queue), self._loop).result(
            30
        )

    async def _start(self, address: str, namespace: str, task_queue: str) -> Worker:
        client = await connect(target_host=address, namespace=namespace)
        worker = Worker(
            client, task_queue=task_queue, workflows=[HeldTrip], workflow_runner=UnsandboxedWorkflowRunner()
        )
        self._running = asyncio.ensure_future(worker.run())
        return worker

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._worker.shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def worker(dev_client: Client, task_queue: str) -> Iterator[ThreadedWorker]:
    running = ThreadedWorker(dev_client.service_client.config.target_host, dev_client.namespace, task_queue)
    yield running
    running.stop()


def book(client: FlaskClient, **fields: str) -> str:
    response = client.post("/bookings", data={**demo_trip(date.today()), **form_tokens(client), **fields})
    assert response.status_code == 303, response.get_data(as_text=True)
    return str(response.headers["Location"])


def csrf(client: FlaskClient, location: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(location).get_data(as_text=True))
    assert found
    return found.group(1)


async def status_of(client: FlaskClient, location: str, wanted: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def reached() -> bool:
        seen.append(client.get(f"{location}/status").get_json())
        return bool(seen[-1]["status"] == wanted)

    await wait_until(reached, what=f"{location} to be {wanted}", timeout=20)
    return seen[-1]


def action_error(page: str) -> str:
    found = re.search(r'<p class="action-error" role="alert" id="action-error">([^<]*)</p>', page)
    assert found, "the rejection is not shown on the page"
    return html.unescape(found.group(1))


def test_a_fresh_form_offers_hold_and_confirm_unticked_with_ten_minutes(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    checkbox = re.search(r'<input id="hold" name="hold" type="checkbox" value="on"\s*([^>]*)>', page)
    assert checkbox and "checked" not in checkbox.group(1)
    assert re.search(r'id="confirm_within_minutes" name="confirm_within_minutes"[^>]*\s+value="10"', page)
    assert "Hold and let me confirm" in page


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"hold": "on", "confirm_within_minutes": "2"}, timedelta(minutes=2)),
        ({"hold": "on", "confirm_within_minutes": " 0.5 "}, timedelta(seconds=30)),
        # Unticked, the minutes are ignored (even nonsense): booked outright, as before.
        ({"confirm_within_minutes": "nonsense"}, None),
        ({"confirm_within": "600"}, None),  # only the checkbox holds a trip
        ({}, None),
    ],
)
async def test_the_form_sends_confirm_within_only_when_hold_is_ticked(
    dev_client: Client, client: FlaskClient, worker: ThreadedWorker, fields: dict[str, str], expected: timedelta | None
) -> None:
    location = book(client, **fields)
    handle = dev_client.get_workflow_handle(location.rsplit("/", 1)[1])
    status: BookingStatus = await handle.query(HeldTrip.status)
    assert status.trip is not None and status.trip.confirm_within == expected
    page = client.get(location).get_data(as_text=True)
    assert ('id="confirmation"' in page) is (expected is not None)


@pytest.mark.parametrize("minutes", ["", "ten", "0", "-5", "nan", "inf", "10081", "1e300"])
def test_a_bad_confirm_within_is_shown_next_to_the_field_and_nothing_starts(
    app: Flask, client: FlaskClient, task_queue: str, minutes: str
) -> None:
    response = client.post(
        "/bookings",
        data={**demo_trip(date.today()), **form_tokens(client), "hold": "on", "confirm_within_minutes": minutes},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    message = re.search(r'<p class="error" id="confirm_within_minutes-error">([^<]+)</p>', page)
    assert message and message.group(1).startswith("Confirm within must be")
    # The user's choice is kept for the second try.
    assert re.search(r'name="hold" type="checkbox" value="on"\s*checked', page)
    assert f'value="{html.escape(minutes)}"' in page
    assert started_besides_a_control(app, client, task_queue) == set()


async def test_a_held_trip_shows_the_banner_and_counts_down(
    app: Flask, client: FlaskClient, worker: ThreadedWorker
) -> None:
    location = book(client, hold="on", confirm_within_minutes="5")
    data = await status_of(client, location, "AWAITING_CONFIRMATION")
    assert data["confirmation"]["decision"] is None
    assert 280 < data["confirmation"]["remaining_s"] <= 300
    assert data["past_pivot"] is False and data["ticket"] is None
    assert [(s["name"], s["kind"]) for s in data["steps"]][3] == ("ticket_flight", "pivot")
    # The server writes the time left; each poll's fragment brings it anew, so the page counts down.
    for path in (location, f"{location}/fragment"):
        page = client.get(path).get_data(as_text=True)
        countdown = re.search(r'<strong id="countdown" role="timer">([^<]+)</strong>', page)
        assert countdown, "no countdown in the banner"
        assert re.fullmatch(r"[45] min \d\d s", countdown.group(1))
        assert 'id="confirm-button"' in page and 'id="decline-button"' in page
        assert 'id="pivot" class="pivot" hidden' in page and 'id="ticket" class="ticket" hidden' in page
    # A step's kind is the operator's word: the traveller is not told about "compensatable" steps.
    assert "compensatable" not in page and "kind-pivot" not in page
    operator = app.test_client()
    log_in(operator)
    assert '<td class="kind kind-pivot">pivot</td>' in operator.get(location).get_data(as_text=True)


async def test_a_terminated_held_trip_reports_no_time_left_to_confirm(
    dev_client: Client, client: FlaskClient, worker: ThreadedWorker
) -> None:
    # The status query replays to the last state, still "awaiting", but nobody can confirm a closed run.
    location = book(client, hold="on", confirm_within_minutes="5")
    await status_of(client, location, "AWAITING_CONFIRMATION")
    await dev_client.get_workflow_handle(location.rsplit("/", 1)[1]).terminate(reason="test")
    data = await status_of(client, location, "TERMINATED")
    assert data["closed"] is True
    assert data["confirmation"] is not None and data["confirmation"]["remaining_s"] is None
    assert 'id="countdown"' not in client.get(location).get_data(as_text=True)


async def test_the_traveller_confirms_without_logging_in_and_sees_the_ticket(
    dev_client: Client, client: FlaskClient, worker: ThreadedWorker
) -> None:
    location = book(client, hold="on", confirm_within_minutes="5")
    await status_of(client, location, "AWAITING_CONFIRMATION")
    token = csrf(client, location)
    response = client.post(f"{location}/confirm", data={"csrf_token": token, "note": "  price ok  "})
    assert response.status_code == 303 and response.headers["Location"] == location
    page = client.get(location).get_data(as_text=True)
    assert "Confirmed: the flight is being ticketed" in page
    assert 'id="confirmation"' not in page  # the banner and its buttons are gone
    assert "You confirmed this trip." in page and "<q>price ok</q>" in page
    assert re.search(r'<p id="pivot" class="pivot"\s*>', page), "past the point of no return is not shown"
    assert f'<strong id="ticket-number">{TICKET}</strong>' in page
    data = client.get(f"{location}/status").get_json()
    assert (data["past_pivot"], data["ticket"], data["confirmation"]["decision"]) == (True, TICKET, "confirmed")

    # A second answer: the workflow's validator refuses it, and the page says why.
    again = client.post(f"{location}/decline", data={"csrf_token": token})
    assert again.status_code == 409
    assert action_error(again.get_data(as_text=True)) == "the trip is not waiting for confirmation (it is RUNNING)"

    await dev_client.get_workflow_handle(location.rsplit("/", 1)[1]).signal(HeldTrip.finish)
    done = await status_of(client, location, "COMPLETED")
    assert done["ticket"] == TICKET
    await wait_until(lambda: client.get(f"{location}/status").get_json()["closed"], what="the run to close")
    # Completed: nothing will be undone, so the page does not say what would be.
    page = client.get(location).get_data(as_text=True)
    assert "Completed" in page and TICKET in page
    assert "Would undo" not in page and "compensatable" not in page
    # A closed run's fragment asks for no further poll.
    fragment = client.get(f"{location}/fragment").get_data(as_text=True)
    assert 'data-polling="stopped"' in fragment and "hx-get" not in fragment and "hx-trigger" not in fragment
    # With no worker left to answer the query, the ticket comes from the run's result.
    worker.stop()
    closed = client.get(f"{location}/status").get_json()
    assert "no worker" in closed["note"] and closed["ticket"] == TICKET
    # Once the run has closed the Update cannot reach it: still a 409 with a plain reason.
    late = client.post(f"{location}/confirm", data={"csrf_token": token})
    assert late.status_code == 409
    assert action_error(late.get_data(as_text=True)) == "This trip is no longer waiting for your answer."


async def test_the_traveller_declines_and_every_hold_is_released(client: FlaskClient, worker: ThreadedWorker) -> None:
    location = book(client, hold="on", confirm_within_minutes="5")
    await status_of(client, location, "AWAITING_CONFIRMATION")
    response = client.post(f"{location}/decline", data={"csrf_token": csrf(client, location)})
    assert response.status_code == 303
    assert "Declined: every hold is being released." in client.get(location).get_data(as_text=True)
    data = await status_of(client, location, "ROLLED_BACK")
    assert data["confirmation"]["decision"] == "declined" and data["ticket"] is None
    page = client.get(location).get_data(as_text=True)
    assert "You declined this trip, so every hold is released." in page
    assert 'id="confirm-button"' not in page


async def test_no_answer_by_the_deadline_shows_expired(client: FlaskClient, worker: ThreadedWorker) -> None:
    location = book(client, hold="on", confirm_within_minutes="0.02")  # 1.2 s
    data = await status_of(client, location, "ROLLED_BACK")
    assert data["confirmation"]["decision"] == "expired"
    page = client.get(location).get_data(as_text=True)
    assert "the confirmation window expired and every hold is released" in page


async def test_an_answer_without_the_csrf_token_changes_nothing(client: FlaskClient, worker: ThreadedWorker) -> None:
    location = book(client, hold="on", confirm_within_minutes="5")
    await status_of(client, location, "AWAITING_CONFIRMATION")
    for action in ("confirm", "decline"):
        assert client.post(f"{location}/{action}", data={"csrf_token": "forged"}).status_code == 400
    data = client.get(f"{location}/status").get_json()
    assert data["status"] == "AWAITING_CONFIRMATION" and data["confirmation"]["decision"] is None


@pytest.mark.parametrize("action", ["confirm", "decline"])
def test_answering_an_unknown_booking_is_a_404_for_an_operator_and_a_403_for_anyone_else(
    client: FlaskClient, action: str
) -> None:
    stranger = client.post(f"/bookings/trip-doesnotexist/{action}", data={"csrf_token": csrf(client, "/")})
    assert stranger.status_code == 403  # whether it exists is not a stranger's business
    log_in(client)
    response = client.post(f"/bookings/trip-doesnotexist/{action}", data={"csrf_token": csrf(client, "/")})
    assert response.status_code == 404


async def test_a_stranger_with_the_link_sees_the_held_trip_but_cannot_answer_for_it(
    app: Flask, client: FlaskClient, worker: ThreadedWorker
) -> None:
    location = book(client, hold="on", confirm_within_minutes="5")
    await status_of(client, location, "AWAITING_CONFIRMATION")
    stranger = app.test_client()
    page = stranger.get(location).get_data(as_text=True)
    # The link still reads: the banner and countdown, but no buttons and no cancel.
    assert 'id="countdown"' in page and 'id="decision-not-yours"' in page
    assert 'id="confirm-button"' not in page and 'id="cancel-form"' not in page
    for action in ("confirm", "decline", "cancel"):
        response = stranger.post(f"{location}/{action}", data={"csrf_token": csrf(stranger, "/")})
        assert response.status_code == 403, action
        assert "Not your booking" in response.get_data(as_text=True)
    data = stranger.get(f"{location}/status").get_json()
    assert data["status"] == "AWAITING_CONFIRMATION" and data["confirmation"]["decision"] is None
    assert data["closed"] is False
    # The browser that booked it sees the buttons, and its answer goes through.
    own = client.get(location).get_data(as_text=True)
    assert 'id="confirm-button"' in own and 'id="cancel-form"' in own and 'id="decision-not-yours"' not in own
    assert client.post(f"{location}/confirm", data={"csrf_token": csrf(client, location)}).status_code == 303
    assert client.get(f"{location}/status").get_json()["confirmation"]["decision"] == "confirmed"


async def test_an_operator_may_answer_for_a_traveller(app: Flask, client: FlaskClient, worker: ThreadedWorker) -> None:
    location = book(client, hold="on", confirm_within_minutes="5")
    await status_of(client, location, "AWAITING_CONFIRMATION")
    operator = app.test_client()
    refused = operator.post(f"{location}/decline", data={"csrf_token": csrf(operator, "/")})
    assert refused.status_code == 403  # not before logging in
    log_in(operator)
    assert 'id="confirm-button"' in operator.get(location).get_data(as_text=True)
    response = operator.post(f"{location}/decline", data={"csrf_token": csrf(operator, location), "note": "by phone"})
    assert response.status_code == 303
    data = await status_of(operator, location, "ROLLED_BACK")
    assert data["confirmation"]["decision"] == "declined"


async def test_a_cancel_after_the_traveller_confirmed_says_it_is_too_late(
    dev_client: Client, client: FlaskClient, worker: ThreadedWorker
) -> None:
    location = book(client, hold="on", confirm_within_minutes="5")
    await status_of(client, location, "AWAITING_CONFIRMATION")
    assert client.post(f"{location}/confirm", data={"csrf_token": csrf(client, location)}).status_code == 303
    response = client.post(f"{location}/cancel", data={"csrf_token": csrf(client, location)})
    assert response.status_code == 303
    page = html.unescape(client.get(location).get_data(as_text=True))
    assert "Too late to cancel: the trip was already confirmed" in page and "being undone" not in page
    # ... and it is true: the trip goes on forward to its ticket.
    await dev_client.get_workflow_handle(location.rsplit("/", 1)[1]).signal(HeldTrip.finish)
    done = await status_of(client, location, "COMPLETED")
    assert done["ticket"] == TICKET


async def test_a_cancel_before_the_traveller_answers_says_everything_is_being_undone(
    client: FlaskClient, worker: ThreadedWorker
) -> None:
    location = book(client, hold="on", confirm_within_minutes="5")
    await status_of(client, location, "AWAITING_CONFIRMATION")
    response = client.post(f"{location}/cancel", data={"csrf_token": csrf(client, location)})
    assert response.status_code == 303
    assert "everything booked so far is being undone" in client.get(location).get_data(as_text=True)
    await wait_until(lambda: client.get(f"{location}/status").get_json()["closed"], what="the cancel to end it")
