"""The booking workflow: car, hotel and flight as one saga.

The workflow decides *what* to book and *what to undo*; the providers'
behaviour is only ever seen through activity results and typed errors. Workflow
code must stay deterministic: no I/O, no clocks, no randomness here.

Outcomes, as the Temporal Web UI shows them:

* Completed: returns ``BookingResult`` with the three confirmations.
* Failed, ``BookingRolledBack``: a step failed and every booking was undone.
* Open, ``NEEDS_ATTENTION``: an undo ran out of budget. The workflow waits for
  an operator's ``retry_compensation`` or ``resolve`` Update; once nothing is
  outstanding it ends Failed ``BookingRolledBack`` with the operator actions in
  its details. If the attention deadline passes first it ends Failed
  ``RollbackIncomplete``, listing the reservations still held.
* Canceled: someone cancelled it; everything booked was undone first (what
  could not be undone is listed by the ``status`` query).

Hold and confirm (``BookingRequest.confirm_within``): the three bookings are
holds; the run waits in ``AWAITING_CONFIRMATION`` for the traveller's
``confirm`` or ``decline`` Update. ``decline`` or the deadline unwinds (Failed
``BookingRolledBack``, cause ``Declined`` / ``ConfirmationTimeout``).
``confirm`` issues the flight's ticket, the pivot: from then on nothing is
undone. ``finalize_car`` and ``finalize_hotel`` turn the holds into bookings;
one that runs out of budget waits for an operator (NEEDS_ATTENTION), and the
run completes once nothing is outstanding, or fails ``TripIncomplete`` at the
attention deadline. A cancel that arrives after the traveller confirmed is
too late: the run goes on forward. Only once it waits for an operator past the
pivot does a cancel end it (Canceled, listing the steps left undone).

Runs started before NEEDS_ATTENTION existed keep their old ending (Failed
``RollbackIncomplete`` as soon as an undo fails): ``PATCH_NEEDS_ATTENTION``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from saga import (
        DEFAULT_UNDO_RETRY,
        DEFAULT_UNDO_TIMEOUT,
        Compensation,
        Saga,
        SagaCompensationError,
        StepKind,
        StepRecord,
        StepState,
    )
    from trip import (
        SA_BOOKING_STATUS,
        UPDATE_CONFIRM,
        UPDATE_DECLINE,
        UPDATE_HOLDS,
        UPDATE_RESOLVE,
        UPDATE_RETRY_COMPENSATION,
        WORKFLOW_TYPE,
    )
    from trip.errors import NON_RETRYABLE_BUSINESS_ERRORS, ErrorType
    from trip.models import (
        DEFAULT_ATTENTION_DEADLINE,
        HOLD_MARGIN,
        BookingRequest,
        CancelRequest,
        CancelResult,
        CarRequest,
        FinalizeRequest,
        FinalizeResult,
        FlightRequest,
        HotelRequest,
        Kind,
        Mode,
        Reservation,
        ReserveRequest,
        RetryOverrides,
        Ticket,
        TicketRequest,
    )
    from trip.status import (
        Attention,
        BookingResult,
        BookingStatus,
        ConfirmationView,
        ConfirmInput,
        ConfirmResult,
        FailureView,
        OperatorAction,
        OperatorActionResult,
        OutstandingStep,
        ResolveInput,
        RetryCompensationInput,
        SagaStatus,
        StepView,
    )

#: Marks runs that wait for an operator (NEEDS_ATTENTION) when an undo is stuck
#: and give undos stable activity ids. Runs recorded without it replay the old
#: way: they close as RollbackIncomplete at once.
PATCH_NEEDS_ATTENTION = "needs-attention"


@dataclass(frozen=True)
class StepPolicy:
    """A forward step's own retry policy and per-attempt timeout."""

    initial_interval: timedelta
    backoff: float
    maximum_interval: timedelta
    maximum_attempts: int
    timeout: timedelta

    def retry_policy(self, overrides: RetryOverrides | None) -> RetryPolicy:
        own = RetryPolicy(
            initial_interval=self.initial_interval,
            backoff_coefficient=self.backoff,
            maximum_interval=self.maximum_interval,
            maximum_attempts=self.maximum_attempts,
            non_retryable_error_types=list(NON_RETRYABLE_BUSINESS_ERRORS),
        )
        return with_overrides(own, overrides)


def with_overrides(policy: RetryPolicy, overrides: RetryOverrides | None, *, undo: bool = False) -> RetryPolicy:
    """``policy`` with a booking's ``RetryOverrides`` applied: the one place they are merged.

    A forward step takes ``max_interval_s`` / ``max_attempts``; an undo
    (``undo=True``) takes ``undo_max_interval_s`` / ``undo_max_attempts``. The
    first interval and the backoff apply to both.
    """
    o = overrides or RetryOverrides()
    initial = _seconds(o.initial_interval_s) or policy.initial_interval
    longest = _seconds(o.undo_max_interval_s if undo else o.max_interval_s) or policy.maximum_interval or initial
    return dataclasses.replace(
        policy,
        initial_interval=initial,
        backoff_coefficient=o.backoff or policy.backoff_coefficient,
        # An override of one bound alone must not undercut the other's
        # default: Temporal rejects the policy, and every workflow task fails.
        maximum_interval=max(initial, longest),
        maximum_attempts=(o.undo_max_attempts if undo else o.max_attempts) or policy.maximum_attempts,
    )


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


#: Each provider gets its own policy: airlines are the flakiest, so the flight
#: waits longer between attempts before giving up.
STEP_POLICIES: dict[Kind, StepPolicy] = {
    Kind.CAR: StepPolicy(timedelta(seconds=1), 2.0, timedelta(seconds=10), 5, timedelta(seconds=10)),
    Kind.HOTEL: StepPolicy(timedelta(seconds=1), 2.0, timedelta(seconds=10), 5, timedelta(seconds=10)),
    Kind.FLIGHT: StepPolicy(timedelta(seconds=1), 2.0, timedelta(seconds=20), 5, timedelta(seconds=15)),
}
STEP_ORDER: tuple[Kind, ...] = (Kind.CAR, Kind.HOTEL, Kind.FLIGHT)
#: Hold and confirm. Ticketing is retried without a cap until the airline
#: answers (the saga core sees to that); its intervals grow to a minute.
TICKET_POLICY = StepPolicy(timedelta(seconds=1), 2.0, timedelta(seconds=60), 0, timedelta(seconds=15))
TICKET_STEP = "ticket_flight"
#: The holds that become bookings once the ticket is issued, and their policies.
FINALIZE_POLICIES: dict[Kind, StepPolicy] = {kind: STEP_POLICIES[kind] for kind in (Kind.CAR, Kind.HOTEL)}

#: Undos run ahead of bookings (which keep the server's default, 3) when the
#: task queue has a backlog: a rollback releases what new bookings may need,
#: and a traveller waits on it (``make bench``: rollback_under_backlog).
UNDO_PRIORITY_KEY = 1


def step_name(kind: Kind) -> str:
    return f"book_{kind.value}"


def finalize_name(kind: Kind) -> str:
    return f"finalize_{kind.value}"


def _describe(kind: Kind, details: Any) -> str:
    if isinstance(details, CarRequest):
        return f"car in {details.city}, {details.pickup} to {details.dropoff}"
    if isinstance(details, HotelRequest):
        return f"hotel in {details.city}, {details.check_in} to {details.check_out}"
    assert isinstance(details, FlightRequest)
    return f"flight {details.origin} to {details.destination} on {details.date}"


@workflow.defn(name=WORKFLOW_TYPE)
class BookingWorkflow:
    @workflow.init
    def __init__(self, req: BookingRequest) -> None:
        self._req = req
        self._status = SagaStatus.RUNNING
        #: Why the saga is unwinding; set before any undo runs.
        self._failure: FailureView | None = None
        retry = req.retry or RetryOverrides()
        self._saga = Saga(
            # Undos are independent, so in parallel mode they unwind together.
            parallel_compensation=req.mode is Mode.PARALLEL,
            # The saga core's own undo budget, tuned by the booking's overrides.
            undo_retry_policy=with_overrides(DEFAULT_UNDO_RETRY, retry, undo=True),
            undo_timeout=_seconds(retry.activity_timeout_s) or DEFAULT_UNDO_TIMEOUT,
            on_change=self._publish_details,
            attempts_from_failure=_reported_attempt,
            attempts_from_result=lambda result: getattr(result, "attempt", None),
            undo_priority=Priority(priority_key=retry.undo_priority_key or UNDO_PRIORITY_KEY),
        )
        self._saga.declare(*(step_name(k) for k in STEP_ORDER))
        if req.confirm_within is not None:
            self._saga.declare(TICKET_STEP, kind=StepKind.PIVOT)
            self._saga.declare(*(finalize_name(k) for k in FINALIZE_POLICIES), kind=StepKind.RETRIABLE)
        self._attention: Attention | None = None
        #: Whether this run may wait for an operator; decided once, in ``run``.
        self._operator_enabled = False
        #: Hold and confirm: the window, and the traveller's answer.
        self._confirmation: ConfirmationView | None = None
        #: A cancel request that arrived once the traveller had confirmed.
        self._cancel_too_late = False

    @workflow.run
    async def run(self, req: BookingRequest) -> BookingResult:
        self._operator_enabled = workflow.patched(PATCH_NEEDS_ATTENTION)
        self._saga.stable_undo_ids = self._operator_enabled
        try:
            if req.mode is Mode.PARALLEL:
                await self._book_parallel()
            else:
                for kind in STEP_ORDER:
                    await self._book(kind)
            if req.confirm_within is not None:
                await self._await_confirmation(req.confirm_within)
                await self._past_confirmation(self._ticket())
        except (FailureError, asyncio.CancelledError) as err:
            await self._unwind(err)  # always raises
        if self._saga.past_pivot:
            await self._past_confirmation(self._finalize())
            if self._saga.outstanding():
                await self._wait_forward()  # returns once nothing is outstanding
        self._set_status(SagaStatus.COMPLETED)
        view = self.status()
        return BookingResult(confirmations=view.confirmations, steps=view.steps, ticket=view.ticket)

    @workflow.query(name="status")
    def status(self) -> BookingStatus:
        records = self._saga.records
        return BookingStatus(
            status=self._status,
            mode=self._req.mode,
            scenario=self._req.scenario,
            traveller=self._req.traveller.name,
            steps=[_view(r) for r in records],
            compensation_plan=self._saga.plan(),
            failure=self._failure,
            confirmations={
                r.name.removeprefix("book_"): r.result.confirmation
                for r in records
                if isinstance(r.result, Reservation) and r.state is StepState.SUCCEEDED
            },
            outstanding=[r.name for r in self._saga.outstanding()],
            trip=self._req,
            # What is held changes as operators act, so it is read live.
            attention=self._attention.model_copy(update={"outstanding": self._held()}) if self._attention else None,
            audit=[OperatorAction(**vars(a)) for a in self._saga.actions],
            confirmation=self._confirmation,
            past_pivot=self._saga.past_pivot,
            ticket=self._ticket_number(),
        )

    def _ticket_number(self) -> str | None:
        if self._req.confirm_within is None:
            return None
        ticket = self._saga.record(TICKET_STEP).result
        return ticket.ticket_number if isinstance(ticket, Ticket) else None

    # --- traveller Updates (AWAITING_CONFIRMATION) --------------------------

    @workflow.update(name=UPDATE_CONFIRM)
    def confirm(self, req: ConfirmInput) -> ConfirmResult:
        """Accept the held trip: ticketing and finalizing start at once."""
        return self._decide("confirmed", req.note)

    @confirm.validator
    def _validate_confirm(self, req: ConfirmInput) -> None:
        self._check_decision(req, "confirm")

    @workflow.update(name=UPDATE_DECLINE)
    def decline(self, req: ConfirmInput) -> ConfirmResult:
        """Refuse the held trip: every hold is released."""
        return self._decide("declined", req.note)

    @decline.validator
    def _validate_decline(self, req: ConfirmInput) -> None:
        self._check_decision(req, "decline")

    def _check_decision(self, req: ConfirmInput, what: str) -> None:
        if req.model_extra:
            raise ValueError(f"unknown field(s) {', '.join(sorted(req.model_extra))}; the only field is: note")
        if self._confirmation is None:
            if self._req.confirm_within is None:
                raise ValueError(f"this booking was not held for confirmation: there is nothing to {what}")
            if self._status is SagaStatus.RUNNING:
                raise ValueError(
                    f"this booking's holds are not all placed yet: {what} once it is awaiting confirmation"
                )
            raise ValueError(f"this booking is {self._status.value}: there is nothing to {what}")
        if self._confirmation.decision is not None:
            raise ValueError(f"this booking was already {self._confirmation.decision}: there is nothing to {what}")
        if self._status is not SagaStatus.AWAITING_CONFIRMATION:
            # e.g. cancelled while it waited: the holds are being released.
            raise ValueError(f"this booking is {self._status.value}: there is nothing to {what}")

    def _decide(self, decision: str, note: str) -> ConfirmResult:
        assert self._confirmation is not None
        self._confirmation = self._confirmation.model_copy(update={"decision": decision, "note": note})
        self._publish_details()
        status = SagaStatus.RUNNING if decision == "confirmed" else SagaStatus.COMPENSATING
        return ConfirmResult(status=status, decision=decision)

    async def _await_confirmation(self, within: timedelta) -> None:
        """AWAITING_CONFIRMATION until ``confirm``, ``decline`` or the deadline (a durable timer)."""
        since = workflow.now()
        self._confirmation = ConfirmationView(since=since, deadline=since + within)
        self._set_status(SagaStatus.AWAITING_CONFIRMATION)
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=within)
        except asyncio.TimeoutError:
            # The timer and a confirm can land in one activation: an answer wins.
            if self._decision is None:
                self._confirmation = self._confirmation.model_copy(update={"decision": "expired"})
        except asyncio.CancelledError:
            # A cancel in the same activation as the confirm: the traveller was
            # already told "confirmed", so the cancel is too late.
            if self._decision != "confirmed":
                raise
            self._cancel_too_late = True
        decision = self._decision
        if decision == "declined":
            note = f": {self._confirmation.note}" if self._confirmation.note else ""
            raise ApplicationError(
                f"the traveller declined the held trip{note}", type=ErrorType.DECLINED.value, non_retryable=True
            )
        if decision == "expired":
            raise ApplicationError(
                f"nobody confirmed the held trip within {within}",
                type=ErrorType.CONFIRMATION_TIMEOUT.value,
                non_retryable=True,
            )
        self._set_status(SagaStatus.RUNNING)

    @property
    def _decision(self) -> str | None:
        return self._confirmation.decision if self._confirmation else None

    async def _past_confirmation(self, step: Any) -> Any:
        """Run ``step`` to its end even if the workflow is cancelled meanwhile.

        Once the traveller has confirmed, ticketing may already have happened
        at the airline: a cancel then must not cut the saga short, so it is
        recorded and the saga goes on forward.
        """
        task = asyncio.ensure_future(step)
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                self._cancel_too_late = True
                self._publish_details()
        return task.result()

    async def _ticket(self) -> Ticket:
        info = workflow.info()
        request = TicketRequest(
            booking_id=info.workflow_id,
            idempotency_key=f"{info.workflow_id}:{Kind.FLIGHT.value}",
            scenario=self._req.scenario,
        )
        what = f"Issue the ticket: {_describe(Kind.FLIGHT, self._req.flight)} (cannot be undone)"
        ticket: Ticket = await self._forward(TICKET_STEP, StepKind.PIVOT, request, TICKET_POLICY, what, Ticket)
        return ticket

    async def _forward(
        self, name: str, kind: StepKind, request: Any, policy: StepPolicy, summary: str, result_type: type
    ) -> Any:
        """A step with no undo (the pivot, or a retriable step after it)."""
        return await self._saga.run(
            name,
            name,
            request,
            undo=None,
            kind=kind,
            # Only a business answer is a "no" from the airline; an unreadable
            # one may hide an issued ticket, so the pivot asks again.
            refusals=NON_RETRYABLE_BUSINESS_ERRORS if kind is StepKind.PIVOT else None,
            start_to_close_timeout=_seconds(self._retry.activity_timeout_s) or policy.timeout,
            retry_policy=policy.retry_policy(self._req.retry),
            summary=summary,
            result_type=result_type,
        )

    async def _finalize(self) -> None:
        """Turn the car and hotel holds into bookings; failures become outstanding, never an unwind."""
        info = workflow.info()

        async def finalize(kind: Kind) -> None:
            request = FinalizeRequest(
                kind=kind,
                booking_id=info.workflow_id,
                idempotency_key=f"{info.workflow_id}:{kind.value}",
                scenario=self._req.scenario,
            )
            policy, what = FINALIZE_POLICIES[kind], f"Confirm the held {kind.value}"
            try:
                await self._forward(finalize_name(kind), StepKind.RETRIABLE, request, policy, what, FinalizeResult)
            except ActivityError:
                pass  # the saga lists the step as outstanding

        if self._req.mode is Mode.PARALLEL:
            await asyncio.gather(*(finalize(kind) for kind in FINALIZE_POLICIES))
        else:
            for kind in FINALIZE_POLICIES:
                await finalize(kind)

    async def _wait_forward(self) -> None:
        """Past the pivot, NEEDS_ATTENTION until operators settle every outstanding step.

        Returns once nothing is outstanding; raises ``TripIncomplete`` at the
        attention deadline, or ``CancelledError`` if the run is cancelled.
        """
        deadline = self._req.attention_deadline or DEFAULT_ATTENTION_DEADLINE
        since = workflow.now()
        self._attention = Attention(since=since, deadline=since + deadline, outstanding=self._held())
        self._set_status(SagaStatus.NEEDS_ATTENTION)
        try:
            settled = await self._until_settled(deadline)
        except asyncio.CancelledError:
            await self._end_cancelled()
        if settled:
            return
        held = ", ".join(f"{h.step} ({h.error_type}: {h.error})" for h in self._held())
        self._failure = FailureView(step=None, type=ErrorType.TRIP_INCOMPLETE.value, message=f"not done: {held}")
        self._set_status(SagaStatus.TRIP_INCOMPLETE)
        raise ApplicationError(
            f"Trip incomplete: the ticket {self._ticket_number()} is issued, but these steps were still not done "
            f"at the attention deadline: {held}. An operator must finish them by hand.",
            {"outstanding": [h.model_dump(mode="json") for h in self._held()], "ticket": self._ticket_number()},
            type=ErrorType.TRIP_INCOMPLETE.value,
            non_retryable=True,
        )

    async def _until_settled(self, deadline: timedelta) -> bool:
        """Wait until nothing is outstanding (and no operator Update runs); ``False`` at the deadline."""
        try:
            # A retry in flight keeps its step COMPENSATING (or RUNNING), not
            # outstanding: wait for the handlers too, so its outcome decides.
            await workflow.wait_condition(
                lambda: not self._saga.outstanding() and workflow.all_handlers_finished(), timeout=deadline
            )
        except asyncio.TimeoutError:
            await workflow.wait_condition(workflow.all_handlers_finished)
            return not self._saga.outstanding()
        return True

    @workflow.update(name=UPDATE_HOLDS, unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    async def holds(self) -> BookingStatus:
        """Return once the forward phase is over: every hold placed, or the unwind begun.

        Sent with the start (Update-with-Start) it lets a caller answer with
        the outcome of the bookings instead of "started" (``make bench``
        measures it against a plain start).
        """
        await workflow.wait_condition(lambda: self._status is not SagaStatus.RUNNING)
        return self.status()

    # --- operator Updates (NEEDS_ATTENTION) ---------------------------------

    @workflow.update(name=UPDATE_RETRY_COMPENSATION)
    async def retry_compensation(self, req: RetryCompensationInput) -> OperatorActionResult:
        """Run the undos of outstanding steps again with a fresh budget; return when they finish."""
        outcomes = await self._saga.retry_compensation(req.steps, operator=req.operator, note=req.note)
        return self._action_result({name: state.value for name, state in outcomes.items()})

    @retry_compensation.validator
    def _validate_retry(self, req: RetryCompensationInput) -> None:
        self._check_operator_action(req, "retry")
        self._saga.check_retry(req.steps)

    @workflow.update(name=UPDATE_RESOLVE)
    def resolve(self, req: ResolveInput) -> OperatorActionResult:
        """Record that an outstanding step's reservation was released outside the system."""
        self._saga.resolve(req.step, operator=req.operator, note=req.note)
        return self._action_result({req.step: StepState.RESOLVED.value})

    @resolve.validator
    def _validate_resolve(self, req: ResolveInput) -> None:
        self._check_operator_action(req, "resolve")
        if not req.step:
            raise ValueError("step must name the outstanding step to resolve, e.g. book_car")
        self._saga.check_resolve(req.step)

    def _check_operator_action(self, req: RetryCompensationInput | ResolveInput, what: str) -> None:
        if req.model_extra:
            known = ", ".join(type(req).model_fields)
            raise ValueError(f"unknown field(s) {', '.join(sorted(req.model_extra))}; the fields are: {known}")
        if self._status is not SagaStatus.NEEDS_ATTENTION:
            raise ValueError(
                f"this booking is {self._status.value}, not {SagaStatus.NEEDS_ATTENTION.value}: "
                f"there is nothing to {what}"
            )
        if not req.operator:
            raise ValueError("operator must name who is acting")
        if not req.note:
            raise ValueError("note must say why: it goes into the audit trail")

    def _action_result(self, outcomes: dict[str, str]) -> OperatorActionResult:
        outstanding = [r.name for r in self._saga.outstanding()]
        # The status this action leads to: the run closes as rolled back once
        # nothing is outstanding (and every Update has finished).
        done = SagaStatus.COMPLETED if self._saga.past_pivot else SagaStatus.ROLLED_BACK
        status = SagaStatus.NEEDS_ATTENTION if outstanding else done
        return OperatorActionResult(status=status, outcomes=outcomes, outstanding=outstanding)

    # --- forward ------------------------------------------------------------

    async def _book(self, kind: Kind) -> Reservation:
        details = {Kind.CAR: self._req.car, Kind.HOTEL: self._req.hotel, Kind.FLIGHT: self._req.flight}[kind]
        info = workflow.info()
        # The same key books and undoes, so a retried booking never books
        # twice and the undo can find (or void) exactly this reservation.
        key = f"{info.workflow_id}:{kind.value}"
        policy = STEP_POLICIES[kind]
        what = _describe(kind, details)
        result: Reservation = await self._saga.run(
            step_name(kind),
            step_name(kind),
            ReserveRequest(
                kind=kind,
                booking_id=info.workflow_id,
                idempotency_key=key,
                scenario=self._req.scenario,
                traveller=self._req.traveller,
                details=details,
                # A hold outlives the confirmation window (see HOLD_MARGIN).
                hold_ttl_s=(self._req.confirm_within + HOLD_MARGIN).total_seconds()
                if self._req.confirm_within is not None
                else None,
            ),
            undo=Compensation(
                f"undo_book_{kind.value}",
                CancelRequest(kind=kind, booking_id=info.workflow_id, idempotency_key=key, scenario=self._req.scenario),
                summary=f"Undo {what}",
                result_type=CancelResult,
            ),
            start_to_close_timeout=_seconds(self._retry.activity_timeout_s) or policy.timeout,
            retry_policy=policy.retry_policy(self._req.retry),
            summary=f"Book {what}",
            result_type=Reservation,
        )
        return result

    @property
    def _retry(self) -> RetryOverrides:
        return self._req.retry or RetryOverrides()

    async def _book_parallel(self) -> None:
        # The providers are independent, so all three book at once. On the
        # first failure the siblings still in flight are cancelled: their
        # undos are already registered, so nothing they booked is lost.
        tasks = [asyncio.ensure_future(self._book(kind)) for kind in STEP_ORDER]
        try:
            await workflow.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            await _cancel_and_drain(tasks)
            raise
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
        if failed:
            await _cancel_and_drain(tasks)
            exc = failed[0].exception()
            assert exc is not None
            raise exc

    # --- backward -----------------------------------------------------------

    async def _unwind(self, err: BaseException) -> None:
        cancelled = is_cancelled_exception(err)
        failed_step = self._saga.first_failure
        if cancelled:
            self._failure = FailureView(step=None, type="Cancelled", message="the booking was cancelled")
        else:
            record = self._saga.record(failed_step) if failed_step else None
            # No failed step: the saga itself decided (declined, or no answer in time).
            own = err if isinstance(err, ApplicationError) and record is None else None
            self._failure = FailureView(
                step=failed_step,
                type=(record.error_type if record else None) or (own.type if own else None) or type(err).__name__,
                message=(record.error if record else None) or (own.message if own else None) or str(err),
            )
        self._set_status(SagaStatus.COMPENSATING)
        try:
            undone = await self._saga.compensate()
        except SagaCompensationError as comp_err:
            if not self._operator_enabled:
                self._set_status(SagaStatus.ROLLBACK_INCOMPLETE)
                raise self._incomplete_error([self._saga.record(f.step) for f in comp_err.failures]) from err
            if cancelled or comp_err.cancelled:
                await self._end_cancelled()
            await self._wait_for_operator(err)
        except asyncio.CancelledError:
            # Cancelled while unwinding: the unwind finished regardless.
            cancelled, undone = True, [r.name for r in self._saga.records if r.state is StepState.COMPENSATED]
            self._failure = FailureView(
                step=failed_step,
                type="Cancelled",
                message="the booking was cancelled while it was being undone" + _after(self._failure),
            )
        if cancelled:
            self._set_status(SagaStatus.CANCELLED)
            raise asyncio.CancelledError()
        self._set_status(SagaStatus.ROLLED_BACK)
        failure = self._failure
        assert failure is not None
        released, not_booked = self._split_undone(undone)
        raise self._saga_error(
            ErrorType.BOOKING_ROLLED_BACK,
            f"Trip not booked: {failure.step or 'the booking'} failed ({failure.type}: {failure.message}). "
            f"Cancelled: {', '.join(released) or 'nothing'}; "
            f"nothing to undo (never booked, or the hold had lapsed): {', '.join(not_booked) or 'none'}.",
            compensated=undone,
            cancelled=released,
            not_booked=not_booked,
        ) from err

    async def _wait_for_operator(self, err: BaseException) -> None:
        """NEEDS_ATTENTION: wait for operators to settle every outstanding step, or the deadline. Always raises."""
        deadline = self._req.attention_deadline or DEFAULT_ATTENTION_DEADLINE
        since = workflow.now()
        self._attention = Attention(since=since, deadline=since + deadline, outstanding=self._held())
        self._set_status(SagaStatus.NEEDS_ATTENTION)
        try:
            settled = await self._until_settled(deadline)
        except asyncio.CancelledError:
            await self._end_cancelled()
        if not settled:
            self._set_status(SagaStatus.ROLLBACK_INCOMPLETE)
            raise self._incomplete_error(self._saga.outstanding()) from err
        self._set_status(SagaStatus.ROLLED_BACK)
        actions = [OperatorAction(**vars(a)).model_dump(mode="json") for a in self._saga.actions]
        compensated = [r.name for r in self._saga.records if r.state is StepState.COMPENSATED]
        resolved = [r.name for r in self._saga.records if r.state is StepState.RESOLVED]
        who = ", ".join(f"{a['action']} by {a['operator']} ({a['note']})" for a in actions)
        failure = self._failure
        assert failure is not None
        released, not_booked = self._split_undone(compensated)
        raise self._saga_error(
            ErrorType.BOOKING_ROLLED_BACK,
            f"Trip not booked: {failure.step or 'the booking'} failed ({failure.type}: {failure.message}). "
            f"Cancelled: {', '.join(released) or 'nothing'}; "
            f"nothing to undo (never booked): {', '.join(not_booked) or 'none'}; "
            f"resolved by an operator: {', '.join(resolved) or 'none'}. "
            f"Operator actions: {who}.",
            compensated=compensated,
            cancelled=released,
            not_booked=not_booked,
            resolved=resolved,
            operator_actions=actions,
        ) from err

    async def _end_cancelled(self) -> None:
        """End Canceled, keeping what is still held in the ``status`` query. Always raises."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        held = self._held()
        if held and self._saga.past_pivot:
            listing = ", ".join(h.step for h in held)
            self._failure = FailureView(
                step=None,
                type="Cancelled",
                message=f"cancelled past the point of no return: ticket {self._ticket_number()} stands; "
                f"not done, an operator must finish: {listing}",
            )
        elif held:
            listing = ", ".join(h.step for h in held)
            self._failure = FailureView(
                step=self._failure.step if self._failure else None,
                type="Cancelled",
                message=f"the booking was cancelled; still held, an operator must release: {listing}"
                + _after(self._failure),
            )
        self._set_status(SagaStatus.CANCELLED)
        raise asyncio.CancelledError()

    def _split_undone(self, names: Sequence[str]) -> tuple[list[str], list[str]]:
        """Undone steps: those whose reservation was cancelled, and those the provider never booked."""
        never = [n for n in names if _undo_outcome(self._saga.record(n)) in NOTHING_TO_RELEASE]
        return [n for n in names if n not in never], never

    def _held(self) -> list[OutstandingStep]:
        return [self._outstanding_view(r) for r in self._saga.outstanding()]

    def _outstanding_view(self, r: StepRecord) -> OutstandingStep:
        if r.kind is StepKind.RETRIABLE:
            # A finalize step: the hold it should turn into a booking.
            hold = self._saga.record(r.name.replace("finalize_", "book_", 1)).result
            return OutstandingStep(
                step=r.name,
                kind=r.kind,
                confirmation=hold.confirmation if isinstance(hold, Reservation) else None,
                error_type=r.error_type,
                error=r.error,
                attempts=r.attempts,
            )
        return OutstandingStep(
            step=r.name,
            confirmation=r.result.confirmation if isinstance(r.result, Reservation) else None,
            undo_error_type=r.undo_error_type,
            undo_error=r.undo_error,
            undo_attempts=r.undo_attempts,
        )

    def _incomplete_error(self, records: Sequence[StepRecord]) -> ApplicationError:
        held = [
            {
                "step": r.name,
                "confirmation": r.result.confirmation if isinstance(r.result, Reservation) else None,
                "undo_error_type": r.undo_error_type,
                "undo_error": r.undo_error,
            }
            for r in records
        ]
        listing = "; ".join(
            f"{h['step']}{' (' + h['confirmation'] + ')' if h['confirmation'] else ''}: {h['undo_error']}" for h in held
        )
        assert self._failure is not None
        details: dict[str, Any] = {"outstanding": held}
        if self._saga.actions:
            details["operator_actions"] = [
                OperatorAction(**vars(a)).model_dump(mode="json") for a in self._saga.actions
            ]
        return self._saga_error(
            ErrorType.ROLLBACK_INCOMPLETE,
            f"Rollback incomplete after {self._failure.step or 'cancellation'} failed: still held: {listing}. "
            "An operator must release these reservations.",
            **details,
        )

    def _saga_error(self, error: ErrorType, message: str, **details: Any) -> ApplicationError:
        """The typed, non-retryable failure a saga ends with; details name the first failure."""
        failure = self._failure
        assert failure is not None, "a saga error needs the failure that started the unwind"
        cause = {"failed_step": failure.step, "cause_type": failure.type, "cause": failure.message}
        return ApplicationError(message, {**cause, **details}, type=error.value, non_retryable=True)

    # --- visibility ---------------------------------------------------------

    def _set_status(self, status: SagaStatus) -> None:
        self._status = status
        # Upsert only where the starter set the attribute: then the namespace
        # has it registered, and a server without it keeps working.
        current = workflow.info().typed_search_attributes.get(SA_BOOKING_STATUS)
        if current is not None and current != status.value:
            workflow.upsert_search_attributes([SA_BOOKING_STATUS.value_set(status.value)])
        self._publish_details()

    def _publish_details(self) -> None:
        lines = [f"**{self._status.value}** ({self._req.mode.value}, scenario `{self._req.scenario.value}`)", ""]
        for record in self._saga.records:
            line = f"- {record.name}: {record.state.value}"
            if record.attempts > 1:
                line += f" after {record.attempts} attempts"
            confirmation = _confirmation_of(record)
            if confirmation:
                line += f", confirmation {confirmation}"
            if record.error:
                line += f" ({record.error_type}: {record.error})"
            if record.undo_error:
                line += f"; undo failed: {record.undo_error}"
            lines.append(line)
        if self._confirmation is not None:
            c = self._confirmation
            if c.decision is None:
                lines += [
                    "",
                    f"Held until the traveller confirms, by {c.deadline.isoformat(timespec='seconds')}: "
                    f"send the `{UPDATE_CONFIRM}` or `{UPDATE_DECLINE}` Update.",
                ]
            else:
                lines += ["", f"Traveller's answer: {c.decision}{' (' + c.note + ')' if c.note else ''}"]
        if self._saga.past_pivot:
            lines.append(
                f"Ticket {self._ticket_number()} issued: past the point of no return, recovering forward only."
            )
        if self._cancel_too_late and self._saga.past_pivot:
            lines.append("A cancel request came after the traveller confirmed: too late, the saga goes on forward.")
        if self._failure is not None:
            lines += ["", f"Failure: {self._failure.type}: {self._failure.message}"]
        if self._attention is not None and self._status is SagaStatus.NEEDS_ATTENTION:
            held = ", ".join(r.name for r in self._saga.outstanding()) or "none"
            lines += [
                "",
                f"Waiting for an operator until {self._attention.deadline.isoformat(timespec='seconds')}; "
                f"outstanding: {held}. Send the `{UPDATE_RETRY_COMPENSATION}` or `{UPDATE_RESOLVE}` Update.",
            ]
        for action in self._saga.actions:
            lines.append(
                f"- {action.at.isoformat(timespec='seconds')} {action.operator}: {action.action} "
                f"{', '.join(action.steps)} ({action.note})"
            )
        workflow.set_current_details("\n".join(lines))


def _reported_attempt(err: ActivityError) -> int | None:
    """Our activities put the attempt in their error's first detail (``activities.booking._fail``)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details:
        first = cause.details[0]
        if isinstance(first, dict) and isinstance(first.get("attempt"), int):
            return int(first["attempt"])
    return None


async def _cancel_and_drain(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _confirmation_of(record: StepRecord) -> str | None:
    result = record.result
    if isinstance(result, Ticket):
        return result.ticket_number
    if isinstance(result, (Reservation, FinalizeResult)):
        return result.confirmation
    return None


#: A provider's answers to an undo that had nothing to release: never booked,
#: or a hold that had already lapsed.
NOT_BOOKED = "not_booked"
NOTHING_TO_RELEASE = frozenset({NOT_BOOKED, "expired"})


def _undo_outcome(record: StepRecord) -> str | None:
    undo = record.undo_result
    return undo.outcome if isinstance(undo, CancelResult) else None


def _after(failure: FailureView | None) -> str:
    """The failure that started an unwind, for a message about what ended it."""
    if failure is None or failure.type == "Cancelled":
        return ""
    return f", after {failure.step or 'a step'} failed ({failure.type}: {failure.message})"


def _view(record: StepRecord) -> StepView:
    undo = record.undo_result
    return StepView(
        name=record.name,
        state=record.state,
        kind=record.kind,
        attempts=record.attempts,
        confirmation=_confirmation_of(record),
        error_type=record.error_type,
        error=record.error,
        undo_attempts=record.undo_attempts,
        undo_outcome=undo.outcome if isinstance(undo, CancelResult) else None,
        undo_error=record.undo_error,
    )
