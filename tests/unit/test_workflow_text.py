"""The booking workflow's words, views, arguments and step names, as pure functions: no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from saga import Compensation, Saga, StepKind, StepState
from tests.conftest import make_request
from trip.errors import NON_RETRYABLE_BUSINESS_ERRORS, ErrorType
from trip.models import CancelResult, Kind, Reservation, Scenario
from trip.status import (
    Attention,
    ConfirmationView,
    Decision,
    FailureView,
    OperatorAction,
    OutstandingStep,
    SagaStatus,
)
from trip.steps import ALL_ACTIVITIES, STEPS, TICKET, saga_step_of, step
from workflows import messages, render, requests
from workflows.policies import FINALIZE_POLICIES, STEP_POLICIES, TICKET_POLICY

SOLD_OUT = FailureView(step="book_flight", type="SoldOut", message="no seats")
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_a_rollback_with_nothing_never_booked_says_so_without_a_dangling_none() -> None:
    text = messages.rolled_back(SOLD_OUT, cancelled=["book_car", "book_hotel"], not_booked=[])
    assert text == "Trip not booked: book_flight failed (SoldOut: no seats). Cancelled: book_car, book_hotel."
    assert "none" not in text


def test_a_rollback_lists_what_was_never_booked_resolved_and_who_acted() -> None:
    action = OperatorAction(at=NOW, operator="ops", action="resolve", steps=["book_car"], note="by phone")
    text = messages.rolled_back(
        SOLD_OUT, cancelled=[], not_booked=["book_hotel"], resolved=["book_car"], actions=[action]
    )
    assert text == (
        "Trip not booked: book_flight failed (SoldOut: no seats). Cancelled: nothing; "
        "nothing to undo (never booked, or the hold had lapsed): book_hotel; resolved by an operator: book_car. "
        "Operator actions: resolve by ops (by phone)."
    )


def _compensated(saga: Saga, name: str, outcome: str) -> None:
    record = saga.record(name)
    record.state = StepState.COMPENSATED
    record.undo_result = CancelResult(kind=Kind.CAR, idempotency_key="k", outcome=outcome)


def test_the_rolled_back_error_separates_cancelled_from_never_booked() -> None:
    saga = Saga()
    saga.declare("book_car", "book_hotel", "book_flight")
    _compensated(saga, "book_car", "cancelled")
    _compensated(saga, "book_hotel", "not_booked")
    err = messages.rolled_back_error(SOLD_OUT, saga.records, [])
    assert err.type == ErrorType.BOOKING_ROLLED_BACK.value and err.non_retryable
    details = err.details[0]
    assert details["cancelled"] == ["book_car"] and details["not_booked"] == ["book_hotel"]
    assert details["failed_step"] == "book_flight" and "operator_actions" not in details


def test_rollback_incomplete_names_each_held_reservation() -> None:
    held = [OutstandingStep(step="book_car", confirmation="CAR-1", undo_error="provider down")]
    err = messages.rollback_incomplete_error(SOLD_OUT, held, [])
    assert err.type == ErrorType.ROLLBACK_INCOMPLETE.value
    assert "still held: book_car (CAR-1): provider down" in err.message
    assert err.details[0]["outstanding"] == [
        {"step": "book_car", "confirmation": "CAR-1", "undo_error_type": None, "undo_error": "provider down"}
    ]


@pytest.mark.parametrize(
    ("decision", "note", "error_type", "words"),
    [
        (Decision.DECLINED, "too dear", ErrorType.DECLINED, "the traveller declined the held trip: too dear"),
        (Decision.EXPIRED, "", ErrorType.CONFIRMATION_TIMEOUT, "nobody confirmed the held trip within 0:10:00"),
    ],
)
def test_an_unconfirmed_trip_ends_with_its_cause(
    decision: Decision, note: str, error_type: ErrorType, words: str
) -> None:
    err = messages.unanswered(decision, note, timedelta(minutes=10))
    assert err.type == error_type.value and err.message == words


def test_a_decision_is_refused_with_the_reason() -> None:
    window = ConfirmationView(since=NOW, deadline=NOW + timedelta(minutes=5))
    awaiting = SagaStatus.AWAITING_CONFIRMATION
    assert messages.decision_refusal("confirm", held=True, status=awaiting, confirmation=window) is None
    assert "not held for confirmation" in str(
        messages.decision_refusal("confirm", held=False, status=SagaStatus.RUNNING, confirmation=None)
    )
    assert "not all placed yet" in str(
        messages.decision_refusal("confirm", held=True, status=SagaStatus.RUNNING, confirmation=None)
    )
    decided = window.model_copy(update={"decision": Decision.DECLINED})
    assert messages.decision_refusal("confirm", held=True, status=awaiting, confirmation=decided) == (
        "this booking was already declined: there is nothing to confirm"
    )


def test_an_operator_action_is_refused_with_the_reason() -> None:
    attention = SagaStatus.NEEDS_ATTENTION
    assert messages.operator_refusal("retry", status=attention, operator="ops", note="why") is None
    assert "not NEEDS_ATTENTION" in str(
        messages.operator_refusal("retry", status=SagaStatus.RUNNING, operator="ops", note="why")
    )
    assert messages.operator_refusal("retry", status=attention, operator="", note="why") == (
        "operator must name who is acting"
    )
    assert messages.unknown_fields({"x": 1}, ["note"]) == "unknown field(s) x; the only field is: note"
    assert messages.unknown_fields(None, ["note"]) is None


def _facts(saga: Saga, status: SagaStatus, **kw: object) -> render.Facts:
    values: dict[str, object] = {
        "status": status,
        "request": make_request(Scenario.FLIGHT_SOLD_OUT),
        "saga": saga,
        "failure": None,
        "attention": None,
        "confirmation": None,
        "cancel_too_late": False,
    }
    values.update(kw)
    return render.Facts(**values)  # type: ignore[arg-type]


def test_the_details_show_each_step_the_failure_and_the_wait_for_an_operator() -> None:
    saga = Saga()
    saga.declare("book_car", "book_flight")
    saga.add_compensation("book_car", Compensation("undo_book_car", None))
    car = saga.record("book_car")
    car.state, car.attempts = StepState.COMPENSATION_FAILED, 3
    car.result = Reservation(kind=Kind.CAR, reservation_id="r", confirmation="CAR-1", attempt=3)
    car.undo_error = "provider down"
    attention = Attention(since=NOW, deadline=NOW + timedelta(hours=1), outstanding=[])
    text = render.details(_facts(saga, SagaStatus.NEEDS_ATTENTION, failure=SOLD_OUT, attention=attention))
    lines = text.splitlines()
    assert lines[0] == "**NEEDS_ATTENTION** (parallel, scenario `flight-sold-out`)"
    assert "- book_car: compensation-failed after 3 attempts, confirmation CAR-1; undo failed: provider down" in lines
    assert "Failure: SoldOut: no seats" in lines
    assert any(
        line.startswith("Waiting for an operator until 2030-01-01T13:00:00+00:00; outstanding: book_car.")
        for line in lines
    )


def test_the_audit_trail_names_the_batch_of_a_bulk_action(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("saga.core.workflow.now", lambda: NOW)  # the saga stamps actions with workflow time
    saga = Saga()
    saga.declare("book_car", "book_hotel")
    for name in ("book_car", "book_hotel"):
        saga.add_compensation(name, Compensation(f"undo_{name}", None))
        saga.record(name).state = StepState.COMPENSATION_FAILED
    saga.resolve("book_car", operator="ops", note="by phone", batch="bulk-1")
    saga.resolve("book_hotel", operator="ops", note="one at a time")
    facts = _facts(saga, SagaStatus.NEEDS_ATTENTION)
    assert [a.batch for a in facts.audit()] == ["bulk-1", None]
    lines = render.details(facts).splitlines()
    assert "- 2030-01-01T12:00:00+00:00 ops: resolve book_car (by phone) [batch bulk-1]" in lines
    assert "- 2030-01-01T12:00:00+00:00 ops: resolve book_hotel (one at a time)" in lines


def test_the_details_show_the_travellers_answer_as_a_word() -> None:
    saga = Saga()
    answered = ConfirmationView(since=NOW, deadline=NOW, decision=Decision.DECLINED, note="too dear")
    text = render.details(_facts(saga, SagaStatus.COMPENSATING, confirmation=answered))
    assert "Traveller's answer: declined (too dear)" in text


def test_an_outstanding_finalize_names_the_hold_it_should_confirm() -> None:
    saga = Saga()
    saga.declare("book_hotel")
    saga.declare("finalize_hotel", kind=StepKind.RETRIABLE)
    hold = saga.record("book_hotel")
    hold.result = Reservation(kind=Kind.HOTEL, reservation_id="r", confirmation="HTL-1", attempt=1)
    finalize = saga.record("finalize_hotel")
    finalize.state, finalize.error_type = StepState.FAILED, "ProviderUnavailable"
    [view] = _facts(saga, SagaStatus.NEEDS_ATTENTION).held()
    assert view.step == "finalize_hotel" and view.confirmation == "HTL-1" and view.kind is StepKind.RETRIABLE


def test_every_call_of_a_step_carries_the_same_key() -> None:
    req = make_request()
    booking = "trip-1"
    keys = {
        requests.reserve(req, Kind.HOTEL, booking).idempotency_key,
        requests.cancel(req, Kind.HOTEL, booking).idempotency_key,
        requests.finalize(req, Kind.HOTEL, booking).idempotency_key,
    }
    assert keys == {"trip-1:hotel"}
    assert requests.ticket(req, booking).idempotency_key == requests.reserve(req, Kind.FLIGHT, booking).idempotency_key
    assert requests.reserve(req, Kind.CAR, booking).hold_ttl_s is None  # no confirmation window: no hold


def test_the_step_names_are_the_ones_every_recorded_history_uses() -> None:
    assert [(s.book, s.undo, s.finalize) for s in STEPS] == [
        ("book_car", "undo_book_car", "finalize_car"),
        ("book_hotel", "undo_book_hotel", "finalize_hotel"),
        ("book_flight", "undo_book_flight", None),
    ]
    assert TICKET == "ticket_flight" and len(ALL_ACTIVITIES) == 9
    assert saga_step_of("undo_book_car") == "book_car" and saga_step_of("finalize_hotel") == "finalize_hotel"
    assert saga_step_of("ticket_flight") == "ticket_flight" and saga_step_of("something_else") is None
    assert step(Kind.FLIGHT).finalize is None


def test_only_the_pivot_asks_again_after_an_answer_nobody_could_read() -> None:
    protocol = ErrorType.PROVIDER_PROTOCOL.value
    for policy in [*STEP_POLICIES.values(), *FINALIZE_POLICIES.values()]:
        assert protocol in (policy.retry_policy(None).non_retryable_error_types or [])
    ticket = TICKET_POLICY.retry_policy(None)
    assert list(ticket.non_retryable_error_types or []) == list(NON_RETRYABLE_BUSINESS_ERRORS)
    assert ticket.maximum_attempts == 0
