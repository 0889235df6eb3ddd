"""The booking workflow: car, hotel and flight as one saga. Orchestration only.

It decides *what* to book, *what to undo* and *when to wait for people*; the
words it ends with are in ``messages``, what it shows in ``render``, each
activity's argument in ``requests`` and each step's retry policy in
``policies``, the operator's Updates in ``operator``. Providers are seen only
through activity results and typed errors. Workflow code: deterministic, no
I/O, no clocks, no randomness. How a run can end is the README's "Outcomes and
exit codes" table; holds, the pivot and what a cancel does past it are in
docs/hold-and-pivot.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from saga import Compensation, SagaCompensationError, StepKind, StepRecord
    from trip import (
        SA_BOOKING_STATUS,
        UPDATE_CONFIRM,
        UPDATE_DECLINE,
        UPDATE_HOLDS,
        UPDATE_PROVIDER_CONFIRMED,
        WORKFLOW_TYPE,
    )
    from trip.callbacks import CallbackAccepted, CallbackRefusal, ProviderConfirmation
    from trip.errors import ErrorType
    from trip.models import (
        DEFAULT_ATTENTION_DEADLINE,
        BookingRequest,
        CancelResult,
        FinalizeResult,
        Kind,
        Mode,
        Reservation,
        RetryOverrides,
        Ticket,
    )
    from trip.status import (
        Attention,
        BookingResult,
        BookingStatus,
        ConfirmationView,
        ConfirmInput,
        ConfirmResult,
        Decision,
        FailureView,
        OutstandingStep,
        SagaStatus,
        WaitingView,
    )
    from trip.steps import FINALIZING, STEP_ORDER, TICKET, step
    from workflows import approval, messages, policies, render, requests, tasks
    from workflows.operator import OperatorUpdates
    from workflows.policies import FINALIZE_POLICIES, STEP_POLICIES, TICKET_POLICY, StepPolicy, seconds

#: Marks runs that wait for an operator (NEEDS_ATTENTION) when an undo is stuck
#: and give undos stable activity ids. Runs recorded without it replay the old
#: way: they close as RollbackIncomplete at once.
PATCH_NEEDS_ATTENTION = "needs-attention"
#: Marks runs that waited for a provider's callback (a booking answered 202).
#: No run recorded before it ever got such an answer, so none can reach the
#: wait; the marker makes a worker without this code fail such a run loudly.
PATCH_ASYNC_CONFIRMATION = "async-confirmation"


#: PINNED: a run finishes on the build it started on, so a change to this
#: code reaches only runs that start after its build became current
#: (docs/deploying.md, "Worker Versioning", says what that costs). A versioned
#: worker applies it (``wiring.versioning.deployment_config``). It is not
#: named in ``@workflow.defn``: the server then refuses every workflow task
#: an unversioned worker completes ("versioning behavior cannot be specified
#: without deployment options"), and the in-process test workers, the
#: time-skipping server and ``run_worker.py --no-versioning`` are unversioned.
VERSIONING_BEHAVIOR = VersioningBehavior.PINNED


@workflow.defn(name=WORKFLOW_TYPE)
class BookingWorkflow(OperatorUpdates):
    @workflow.init
    def __init__(self, req: BookingRequest) -> None:
        self._req = req
        self._status = SagaStatus.RUNNING
        #: Why the saga is unwinding; set before any undo runs.
        self._failure: FailureView | None = None
        self._saga = policies.saga_for(req, on_change=self._saga_changed)
        approval.configure(self._saga, req)
        self._saga.declare(*(step(k).book for k in STEP_ORDER))
        if req.confirm_within is not None:
            self._saga.declare(TICKET, kind=StepKind.PIVOT)
            self._saga.declare(*(s.finalize for s in FINALIZING if s.finalize), kind=StepKind.RETRIABLE)
        self._attention: Attention | None = None
        #: Whether this run may wait for an operator; decided once, in ``run``.
        self._operator_enabled = False
        #: Hold and confirm: the window, and the traveller's answer.
        self._confirmation: ConfirmationView | None = None
        #: A cancel request that arrived once the traveller had confirmed.
        self._cancel_too_late = False
        #: Steps whose provider answered 202, while they wait for its callback.
        self._waiting: dict[Kind, WaitingView] = {}
        #: Waits that ended, and how.
        self._waited: dict[Kind, WaitingView] = {}
        #: The callbacks accepted (``provider_confirmed``), by kind.
        self._callbacks: dict[Kind, ProviderConfirmation] = {}
        #: Kinds whose wait ended at the deadline: a callback now is too late.
        self._timed_out: set[Kind] = set()

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
            if self._saga.outstanding() and not await self._wait_for_operators():
                raise self._trip_incomplete()
        self._set_status(SagaStatus.COMPLETED)
        view = self.status()
        return BookingResult(confirmations=view.confirmations, steps=view.steps, ticket=view.ticket)

    @workflow.query(name="status")
    def status(self) -> BookingStatus:
        return render.booking_status(self._facts())

    def _facts(self) -> render.Facts:
        return render.Facts(
            status=self._status,
            request=self._req,
            saga=self._saga,
            failure=self._failure,
            attention=self._attention,
            confirmation=self._confirmation,
            cancel_too_late=self._cancel_too_late,
            waiting=tuple(self._waiting.values()),
            waited=tuple(self._waited.values()),
        )

    # --- traveller Updates (AWAITING_CONFIRMATION) --------------------------

    @workflow.update(name=UPDATE_CONFIRM)
    def confirm(self, req: ConfirmInput) -> ConfirmResult:
        """Accept the held trip: ticketing and finalizing start at once."""
        return self._decide(Decision.CONFIRMED, req.note)

    @confirm.validator
    def _validate_confirm(self, req: ConfirmInput) -> None:
        self._check_decision(req, "confirm")

    @workflow.update(name=UPDATE_DECLINE)
    def decline(self, req: ConfirmInput) -> ConfirmResult:
        """Refuse the held trip: every hold is released."""
        return self._decide(Decision.DECLINED, req.note)

    @decline.validator
    def _validate_decline(self, req: ConfirmInput) -> None:
        self._check_decision(req, "decline")

    def _check_decision(self, req: ConfirmInput, what: str) -> None:
        reason = messages.unknown_fields(req.model_extra, list(type(req).model_fields)) or messages.decision_refusal(
            what, held=self._req.confirm_within is not None, status=self._status, confirmation=self._confirmation
        )
        if reason:
            raise messages.update_rejected(reason)

    def _decide(self, decision: Decision, note: str) -> ConfirmResult:
        assert self._confirmation is not None
        self._confirmation = self._confirmation.model_copy(update={"decision": decision, "note": note})
        self._publish_details()
        status = SagaStatus.RUNNING if decision is Decision.CONFIRMED else SagaStatus.COMPENSATING
        return ConfirmResult(status=status, decision=decision)

    async def _await_confirmation(self, within: timedelta) -> None:
        """AWAITING_CONFIRMATION until ``confirm``, ``decline`` or the deadline (a durable timer)."""
        since = workflow.now()
        self._confirmation = ConfirmationView(since=since, deadline=since + within)
        self._set_status(SagaStatus.AWAITING_CONFIRMATION)
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=within)
        except TimeoutError:
            # The timer and a confirm can land in one activation: an answer wins.
            if self._decision is None:
                self._confirmation = self._confirmation.model_copy(update={"decision": Decision.EXPIRED})
        except asyncio.CancelledError:
            # A cancel in the same activation as the confirm: the traveller was
            # already told "confirmed", so the cancel is too late.
            if self._decision is not Decision.CONFIRMED:
                raise
            self._cancel_too_late = True
        if self._decision is not Decision.CONFIRMED:
            assert self._decision is not None
            raise messages.unanswered(self._decision, self._confirmation.note, within)
        self._set_status(SagaStatus.RUNNING)

    @property
    def _decision(self) -> Decision | None:
        return self._confirmation.decision if self._confirmation else None

    async def _past_confirmation(self, work: Any) -> Any:
        """Run ``work`` to its end even if cancelled: once confirmed, the ticket may exist, so the saga goes on."""
        return await tasks.run_to_end(work, self._cancel_arrived_too_late)

    def _cancel_arrived_too_late(self) -> None:
        self._cancel_too_late = True
        self._publish_details()

    # --- forward ------------------------------------------------------------

    @property
    def _timeout_override(self) -> timedelta | None:
        return seconds((self._req.retry or RetryOverrides()).activity_timeout_s)

    async def _book(self, kind: Kind) -> Reservation:
        booking_id = workflow.info().workflow_id
        policy, names = STEP_POLICIES[kind], step(kind)
        what = messages.describe(requests.details(self._req, kind))
        return await self._saga.run(
            names.book,
            names.book,
            requests.reserve(self._req, kind, booking_id),
            undo=Compensation(
                names.undo,
                requests.cancel(self._req, kind, booking_id),
                summary=f"Undo {what}",
                result_type=CancelResult,
            ),
            start_to_close_timeout=self._timeout_override or policy.timeout,
            retry_policy=policy.retry_policy(self._req.retry),
            summary=f"Book {what}",
            result_type=Reservation,
            completion=lambda reservation: self._confirmed_later(kind, reservation),
        )

    # --- a provider that confirms later (202, then a signed callback) -------

    def _confirmed_later(self, kind: Kind, reservation: Reservation) -> Any:
        """``None`` for a confirmed reservation; for a pending one, the wait for its callback."""
        return self._await_callback(kind, reservation) if reservation.pending else None

    async def _await_callback(self, kind: Kind, reservation: Reservation) -> Reservation:
        """WAITING until ``provider_confirmed`` brings the confirmation, or the deadline (a durable timer)."""
        workflow.patched(PATCH_ASYNC_CONFIRMATION)
        within = seconds(self._req.async_deadline_s) or STEP_POLICIES[kind].confirm_within
        since = workflow.now()
        self._waiting[kind] = WaitingView(
            step=step(kind).book,
            kind=kind,
            reference=reservation.reference or reservation.confirmation,
            since=since,
            deadline=since + within,
        )
        self._publish_details()
        try:
            await workflow.wait_condition(lambda: kind in self._callbacks, timeout=within)
        except TimeoutError:
            # The timer and the callback can land in one activation: the callback wins.
            if kind not in self._callbacks:
                self._timed_out.add(kind)
                workflow.metric_meter().create_counter(
                    "booking_confirmations_timed_out_total", "Steps whose provider did not call back in time"
                ).with_additional_attributes({"step": step(kind).book}).add(1)
                raise messages.confirmation_timed_out(kind, within) from None
        finally:
            # Cancelled (a sibling failed) leaves it ``cancelled``.
            outcome = (
                "confirmed" if kind in self._callbacks else "timed out" if kind in self._timed_out else "cancelled"
            )
            ended = self._waiting.pop(kind)
            self._waited[kind] = ended.model_copy(update={"outcome": outcome, "ended": workflow.now()})
        callback = self._callbacks[kind]
        return reservation.model_copy(update={"pending": False, "confirmation": callback.confirmation})

    @workflow.update(name=UPDATE_PROVIDER_CONFIRMED)
    def provider_confirmed(self, callback: ProviderConfirmation) -> CallbackAccepted:
        """A provider's verified callback: the waiting step succeeds with its confirmation.

        The receiver sends it with the kind, delivery id and body digest as the
        Update id, so a replayed delivery is answered by the server from the first one's
        outcome and never reaches this handler twice.
        """
        waiting = self._waiting[callback.kind]
        self._callbacks[callback.kind] = callback
        return CallbackAccepted(step=waiting.step, waited_s=(workflow.now() - waiting.since).total_seconds())

    @provider_confirmed.validator
    def _validate_provider_confirmed(self, callback: ProviderConfirmation) -> None:
        waiting = self._waiting.get(callback.kind)
        # Once the wait is over its reference is still known: a callback naming
        # another is for another booking's step, however late it comes.
        known = waiting or self._waited.get(callback.kind)
        if known is not None and callback.reference != known.reference:
            raise messages.callback_refused(
                CallbackRefusal.WRONG_REFERENCE,
                f"reference {callback.reference!r} is not the one the {callback.kind.value} step waits for",
            )
        if waiting is None or callback.kind in self._callbacks:
            if callback.kind in self._timed_out:
                raise messages.callback_refused(
                    CallbackRefusal.PAST_DEADLINE, f"the {callback.kind.value} step's deadline passed; it was undone"
                )
            raise messages.callback_refused(
                CallbackRefusal.NOT_WAITING, f"no {callback.kind.value} step waits for a callback now"
            )
        if workflow.now() >= waiting.deadline:
            raise messages.callback_refused(
                CallbackRefusal.PAST_DEADLINE, f"the {callback.kind.value} step's deadline passed"
            )

    async def _book_parallel(self) -> None:
        # The providers are independent, so all three book at once. On the
        # first failure the siblings still in flight are cancelled: their
        # undos are already registered, so nothing they booked is lost.
        pending = [asyncio.ensure_future(self._book(kind)) for kind in STEP_ORDER]
        try:
            await workflow.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            await tasks.cancel_and_drain(pending)
            raise
        failed = [t for t in pending if t.done() and not t.cancelled() and t.exception() is not None]
        if failed:
            await tasks.cancel_and_drain(pending)
            exc = failed[0].exception()
            assert exc is not None
            raise exc

    async def _ticket(self) -> Ticket:
        request = requests.ticket(self._req, workflow.info().workflow_id)
        what = f"Issue the ticket: {messages.describe(self._req.flight)} (cannot be undone)"
        return await self._forward(TICKET, StepKind.PIVOT, request, TICKET_POLICY, what)

    async def _forward(self, name: str | None, kind: StepKind, request: Any, policy: StepPolicy, summary: str) -> Any:
        """A step with no undo (the pivot, or a retriable step after it); its policy says what ends it."""
        assert name is not None
        timeout = self._timeout_override or policy.timeout
        return await self._saga.run(
            name,
            name,
            request,
            undo=None,
            kind=kind,
            start_to_close_timeout=timeout,
            retry_policy=policy.retry_policy(self._req.retry),
            summary=summary,
            result_type=Ticket if kind is StepKind.PIVOT else FinalizeResult,
        )

    async def _finalize(self) -> None:
        """Turn the car and hotel holds into bookings; failures become outstanding, never an unwind."""
        booking_id = workflow.info().workflow_id

        async def finalize(kind: Kind) -> None:
            request, what = requests.finalize(self._req, kind, booking_id), f"Confirm the held {step(kind).label}"
            try:
                await self._forward(step(kind).finalize, StepKind.RETRIABLE, request, FINALIZE_POLICIES[kind], what)
            except ActivityError:
                pass  # the saga lists the step as outstanding

        if self._req.mode is Mode.PARALLEL:
            await asyncio.gather(*(finalize(kind) for kind in FINALIZE_POLICIES))
        else:
            for kind in FINALIZE_POLICIES:
                await finalize(kind)

    @workflow.update(name=UPDATE_HOLDS, unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    async def holds(self) -> BookingStatus:
        """Return once every hold is placed or the unwind has begun (sent with the start: Update-with-Start)."""
        await workflow.wait_condition(lambda: self._status is not SagaStatus.RUNNING)
        return self.status()

    # --- backward -----------------------------------------------------------

    async def _unwind(self, err: BaseException) -> NoReturn:
        cancelled = is_cancelled_exception(err)
        failed_step = self._saga.first_failure
        if cancelled:
            self._failure = FailureView(step=None, type="Cancelled", message="the booking was cancelled")
        else:
            self._failure = messages.failure_of(err, self._saga.record(failed_step) if failed_step else None)
        self._set_status(SagaStatus.COMPENSATING)
        try:
            await self._saga.compensate()
        except SagaCompensationError as comp_err:
            if not self._operator_enabled:
                self._set_status(SagaStatus.ROLLBACK_INCOMPLETE)
                raise self._incomplete_error([self._saga.record(f.step) for f in comp_err.failures]) from err
            if cancelled or comp_err.cancelled:
                await self._end_cancelled()
            if not await self._wait_for_operators():
                self._set_status(SagaStatus.ROLLBACK_INCOMPLETE)
                raise self._incomplete_error(self._saga.outstanding()) from err
        except asyncio.CancelledError:
            # Cancelled while unwinding: the unwind finished regardless.
            cancelled = True
            self._failure = FailureView(
                step=failed_step, type="Cancelled", message=messages.cancelled_while_undoing(self._failure)
            )
        if cancelled:
            self._set_status(SagaStatus.CANCELLED)
            raise asyncio.CancelledError()
        self._set_status(SagaStatus.ROLLED_BACK)
        assert self._failure is not None
        raise messages.rolled_back_error(self._failure, self._saga.records, self._facts().audit()) from err

    async def _wait_for_operators(self) -> bool:
        """NEEDS_ATTENTION until operators settle every outstanding step: ``False`` at the deadline.

        Before the pivot they settle stuck undos, after it unfinished steps. A
        cancel meanwhile ends the run (``_end_cancelled``).
        """
        deadline = self._req.attention_deadline or DEFAULT_ATTENTION_DEADLINE
        since = workflow.now()
        self._attention = Attention(since=since, deadline=since + deadline, outstanding=self._held())
        self._set_status(SagaStatus.NEEDS_ATTENTION)
        try:
            # A retry in flight keeps its step COMPENSATING (or RUNNING), not
            # outstanding: wait for the handlers too, so its outcome decides.
            await workflow.wait_condition(
                lambda: not self._saga.outstanding() and workflow.all_handlers_finished(), timeout=deadline
            )
        except TimeoutError:
            await workflow.wait_condition(workflow.all_handlers_finished)
            return not self._saga.outstanding()
        except asyncio.CancelledError:
            await self._end_cancelled()
        return True

    async def _end_cancelled(self) -> NoReturn:
        """End Canceled, keeping what is still held in the ``status`` query."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        held = self._held()
        if held:
            past_pivot = self._saga.past_pivot
            self._failure = FailureView(
                step=None if past_pivot or self._failure is None else self._failure.step,
                type="Cancelled",
                message=messages.cancelled_with_steps_left(past_pivot, self._facts().ticket, held)
                + ("" if past_pivot else messages.after(self._failure)),
            )
        self._set_status(SagaStatus.CANCELLED)
        raise asyncio.CancelledError()

    def _held(self) -> list[OutstandingStep]:
        return self._facts().held()

    def _incomplete_error(self, records: Sequence[StepRecord]) -> ApplicationError:
        assert self._failure is not None
        held = [render.outstanding_view(r, None) for r in records]
        return messages.rollback_incomplete_error(self._failure, held, self._facts().audit())

    def _trip_incomplete(self) -> ApplicationError:
        held = self._held()
        self._failure = FailureView(
            step=None, type=ErrorType.TRIP_INCOMPLETE.value, message=f"not done: {messages.not_done(held)}"
        )
        self._set_status(SagaStatus.TRIP_INCOMPLETE)
        return messages.trip_incomplete_error(self._facts().ticket, held)

    # --- visibility ---------------------------------------------------------

    def _set_status(self, status: SagaStatus) -> None:
        self._status = status
        # Upsert only where the starter set the attribute: then the namespace
        # has it registered, and a server without it keeps working.
        current = workflow.info().typed_search_attributes.get(SA_BOOKING_STATUS)
        if current is not None and current != status.value:
            workflow.upsert_search_attributes([SA_BOOKING_STATUS.value_set(status.value)])
        self._publish_details()

    def _saga_changed(self) -> None:
        """Follow the unwind into AWAITING_UNDO_APPROVAL while an undo waits for a decision, and out of it."""
        if self._status in (SagaStatus.COMPENSATING, SagaStatus.AWAITING_UNDO_APPROVAL):
            held = self._saga.awaiting_approval()
            status = SagaStatus.AWAITING_UNDO_APPROVAL if held else SagaStatus.COMPENSATING
            if status is not self._status:
                self._set_status(status)
                return
        self._publish_details()

    def _publish_details(self) -> None:
        workflow.set_current_details(render.details(self._facts()))
