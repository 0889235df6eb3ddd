"""The compensation stack: ``Saga`` runs the steps, unwinds them and takes operators' fixes.

Usage inside a workflow::

    saga = Saga(parallel_compensation=False)
    try:
        await saga.run("debit", "debit", req, undo=Compensation("refund", req),
                       start_to_close_timeout=timedelta(seconds=10))
        await saga.run("ship", "ship", order, undo=Compensation("cancel_shipment", order),
                       start_to_close_timeout=timedelta(seconds=10))
    except BaseException:
        await saga.compensate()   # survives cancellation; raises SagaCompensationError
        raise

Rules it enforces, each a defect we have seen in sagas elsewhere:

* The undo is registered *before* the step is attempted: a call that timed out
  may still have booked, so its undo must run.
* A step that was refused (its retry policy, or the activity, said the error
  is not worth retrying) is known not to have happened; its undo is dropped
  (configurable).
* Unwinding continues past a failed undo; every failure is collected into one
  ``SagaCompensationError``.
* The unwind runs in its own task behind ``asyncio.shield``: cancelling the
  workflow cannot skip it, and the cancellation is re-raised once it is done.
* A stuck undo is not the end: the steps whose undo failed stay
  ``outstanding``, and an operator can ``retry_compensation`` (a fresh budget)
  or ``resolve`` them (released outside the system). Every such action is kept
  in ``actions``, an audit trail the workflow can show.
* An undo may need a person's approval first (``undo_gate``): the unwind
  holds it (``AWAITING_APPROVAL``) until ``approve_undo`` runs it or ``keep``
  leaves its effect in place (``KEPT``), or until ``approval_timeout``, when
  ``approval_default`` applies, audited as the deadline's decision. Meanwhile
  a parallel unwind runs every other undo; a sequential one waits at the held
  undo, since reverse order is its contract. Either decision completes the
  unwind: a kept step is not a failed undo.
* A step may be the *pivot*, the point of no return (``StepKind``). A pivot
  whose outcome is unknown (timeouts, a lost worker, 503s) is retried with the
  same argument until it answers; only a refusal lets the saga unwind. Once
  the pivot has succeeded the stack is sealed: ``compensate`` refuses, and a
  *retriable* step that runs out of budget becomes ``outstanding`` for an
  operator, exactly like a stuck undo.

This module knows nothing about what the steps do. It must only be imported
from workflow code (it calls ``temporalio.workflow``), and it does no I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from saga.failures import attempts_from_failure, flagged_refusal, refused, root_message
from saga.records import (
    CANCELLED,
    ApprovalNeeded,
    Call,
    Compensation,
    SagaAction,
    SagaCompensationError,
    SagaSealedError,
    StepKind,
    StepRecord,
    StepState,
    UndoDecision,
    UndoFailure,
    UndoGate,
)
from saga.stack import Stack

#: Marks runs whose pivot is one activity call with unlimited attempts, its
#: policy saying which errors are a "no". Runs recorded before it replay the
#: older way, a loop that slept and asked again (``Saga._ask_until_answered``).
PATCH_PIVOT_ONE_CALL = "saga-pivot-one-call"


#: The ``operator`` of a decision that nobody took: the approval deadline's default.
DEADLINE_OPERATOR = "deadline"


class Saga(Stack):
    """One per workflow run: runs the steps, unwinds them, and takes operators' fixes."""

    def __init__(
        self,
        *,
        undo_gate: UndoGate | None = None,
        approval_timeout: timedelta | None = None,
        approval_default: UndoDecision | Literal["approve", "keep"] = UndoDecision.APPROVE,
        **options: Any,
    ) -> None:
        """``options`` are ``Stack``'s; the three here hold costly undos for a decision.

        ``undo_gate(record)`` is asked when the unwind reaches a step's undo:
        ``ApprovalNeeded`` holds it until ``approve_undo`` or ``keep``; past
        ``approval_timeout`` (``None``: wait as long as it takes)
        ``approval_default`` is applied and audited with operator ``"deadline"``.
        """
        super().__init__(**options)
        self.undo_gate = undo_gate
        self.approval_timeout = approval_timeout
        self.approval_default = UndoDecision(approval_default)

    async def run(
        self,
        name: str,
        activity: str | Callable[..., Any],
        arg: Any,
        *,
        undo: Compensation | None,
        start_to_close_timeout: timedelta,
        retry_policy: RetryPolicy | None = None,
        summary: str | None = None,
        result_type: type | None = None,
        kind: StepKind = StepKind.COMPENSATABLE,
        completion: Callable[[Any], Awaitable[Any] | None] | None = None,
    ) -> Any:
        """Run one forward step as an activity, with ``undo`` registered first.

        ``kind`` says where the step stands (see ``StepKind``): a pivot or a
        retriable step has no undo; a retriable step runs only past the pivot.
        ``retry_policy`` decides which failures end the step: list the error
        types that mean "no" in its ``non_retryable_error_types``.

        ``completion`` is for a step the other side finishes later (a 202 and a
        callback): given the activity's result, it returns ``None`` when that
        result is final, or an awaitable of the final result. Meanwhile the
        step is ``WAITING``; an ``ApplicationError`` from it (a deadline) fails
        the step like a refusal would, except that its undo stays registered.
        """
        self._check_kind(name, kind, undo)
        record = (
            self.add_compensation(name, undo) if undo is not None else self._records.setdefault(name, StepRecord(name))
        )
        record.kind = kind
        call = Call(activity, arg, summary, retry_policy, start_to_close_timeout, result_type)
        if kind is StepKind.RETRIABLE:
            record.forward = call
        if kind is StepKind.PIVOT:
            self._pivot = name
            return await self._run_pivot(record, call)
        return await self._run_step(record, call, completion)

    def _check_kind(self, name: str, kind: StepKind, undo: Compensation | None) -> None:
        if kind is not StepKind.COMPENSATABLE and undo is not None:
            raise ValueError(f"step {name!r} is {kind.value}: it cannot have an undo")
        if kind is StepKind.PIVOT and self._pivot is not None and self._pivot != name:
            raise ValueError(f"the saga already has a pivot, {self._pivot!r}")
        if kind is StepKind.RETRIABLE and not self._sealed:
            raise ValueError(f"retriable step {name!r} may only run after the pivot has succeeded")

    async def _run_pivot(self, record: StepRecord, call: Call) -> Any:
        # The pivot's outcome must be known before the saga may decide
        # anything: "it may have happened, so undo" would undo the steps around
        # a pivot that in fact happened. So it has no attempt cap: timeouts, a
        # lost worker and every error its policy does not list as
        # non-retryable are retried by the server with the same argument (the
        # activity makes it idempotent). Only a refusal ends it. ``temporal
        # activity pause`` stops a pivot that never answers.
        policy = dataclasses.replace(call.retry_policy or RetryPolicy(), maximum_attempts=0)
        unbounded = dataclasses.replace(call, retry_policy=policy)
        if workflow.patched(PATCH_PIVOT_ONE_CALL):
            result = await self._run_step(record, unbounded)
        else:
            result = await self._ask_until_answered(record, unbounded)
        self._sealed = True
        # Nothing before the pivot can be undone any more.
        for r in self._stack:
            r.undo_pending = False
        self._changed()
        return result

    async def _ask_until_answered(self, record: StepRecord, call: Call) -> Any:
        """The pivot as runs recorded before ``PATCH_PIVOT_ONE_CALL`` ran it; kept so they replay.

        Activities then flagged their refusals non-retryable themselves, so a
        failure the policy did not list could still end the call: the saga
        slept for the policy's longest wait and asked again.
        """
        policy = call.retry_policy or RetryPolicy()
        refusals = policy.non_retryable_error_types or None
        while True:
            try:
                return await self._run_step(record, call)
            except ActivityError as err:
                if is_cancelled_exception(err) or flagged_refusal(err, refusals):
                    raise
                record.state = StepState.RUNNING
                if self._first_failure == record.name:
                    self._first_failure = None
                self._changed()
                await workflow.sleep(policy.maximum_interval or timedelta(minutes=1))

    async def _run_step(
        self, record: StepRecord, call: Call, completion: Callable[[Any], Awaitable[Any] | None] | None = None
    ) -> Any:
        name = record.name
        record.state = StepState.RUNNING
        self._changed()
        task = asyncio.current_task()
        if task is not None:
            self._in_flight[name] = task
        try:
            result = await workflow.execute_activity(
                call.activity,  # type: ignore[arg-type]  # a name or an @activity.defn function
                call.arg,
                start_to_close_timeout=call.start_to_close_timeout or self.undo_timeout,
                retry_policy=call.retry_policy,
                summary=call.summary,
                result_type=call.result_type,
            )
            later = completion(result) if completion is not None else None
            if later is not None:
                record.result = result
                record.attempts = (self._attempts_from_result(result) if self._attempts_from_result else None) or 0
                record.state = StepState.WAITING
                self._changed()
                result = await later
        except ActivityError as err:
            record.state = StepState.FAILED
            record.attempts = attempts_from_failure(err, call.retry_policy, self._attempts_from_failure)
            if is_cancelled_exception(err):
                record.error_type, record.error = CANCELLED, "cancelled before it finished"
            else:
                record.error_type, record.error = root_message(err)
                # Recorded where it is raised: with concurrent steps, scan order says nothing.
                self._first_failure = self._first_failure or name
            if refused(err) and not self.keep_undo_when_refused:
                record.undo_pending = False
            self._changed()
            raise
        except ApplicationError as err:
            # The completion gave up (its deadline passed): the other side may
            # still hold what the call asked for, so the undo stays.
            record.state = StepState.FAILED
            record.error_type, record.error = err.type or type(err).__name__, err.message
            self._first_failure = self._first_failure or name
            self._changed()
            raise
        except asyncio.CancelledError:
            # Cancelled in flight: the provider may or may not have acted, so
            # the undo stays on the stack.
            record.state = StepState.FAILED
            record.error_type, record.error = CANCELLED, "cancelled before it finished"
            self._changed()
            raise
        finally:
            self._in_flight.pop(name, None)
        record.result = result
        record.attempts = (self._attempts_from_result(result) if self._attempts_from_result else None) or 0
        # An operator's retry that succeeded: the earlier failure no longer describes the step.
        record.error = record.error_type = None
        # A terminal state is never overwritten by a late answer.
        if record.state in (StepState.RUNNING, StepState.WAITING):
            record.state = StepState.SUCCEEDED
        self._changed()
        return result

    # --- unwinding ----------------------------------------------------------

    async def compensate(self) -> list[str]:
        """Run every registered undo; return the names compensated.

        Raises ``SagaCompensationError`` if any undo failed, after trying all.
        If the workflow was cancelled while unwinding, the unwind still
        finishes and ``asyncio.CancelledError`` is raised afterwards. Steps
        still in flight (concurrent steps) are cancelled and drained first, so
        no undo runs while its step might still answer. Past the pivot it
        raises ``SagaSealedError``: nothing may be unwound any more.
        """
        if self._sealed:
            raise SagaSealedError(f"the saga is past its pivot {self._pivot!r}: it can only recover forward")
        await self._cancel_in_flight()
        for record in self._records.values():
            if record.state is StepState.PENDING:
                record.state = StepState.SKIPPED
        self._changed()
        unwind = asyncio.ensure_future(self._unwind())
        cancelled = False
        while not unwind.done():
            try:
                await asyncio.shield(unwind)
            except asyncio.CancelledError:
                # The shield lets the unwind task run on; keep waiting for it.
                cancelled = True
        failures = unwind.result()
        self._changed()
        if failures:
            raise SagaCompensationError(failures, cancelled=cancelled)
        if cancelled:
            raise asyncio.CancelledError()
        return [r.name for r in self._stack if r.state is StepState.COMPENSATED]

    async def _cancel_in_flight(self) -> None:
        current = asyncio.current_task()
        running = [t for t in self._in_flight.values() if t is not current and not t.done()]
        if not running:
            return  # no await: the common case adds nothing to the workflow's history
        for task in running:
            task.cancel()
        await workflow.wait_condition(lambda: all(t.done() for t in running))

    async def _unwind(self) -> list[UndoFailure]:
        todo = [r for r in self._stack if r.undo_pending]
        if self.parallel_compensation:
            # A held undo waits alone: the others are independent, so they run at once.
            results = await asyncio.gather(*(self._gated_undo(r) for r in todo))
        else:
            # Reverse order is the contract: the undos after a held one wait for its decision.
            results = [await self._gated_undo(r) for r in reversed(todo)]
        return [f for f in results if f is not None]

    async def _gated_undo(self, record: StepRecord) -> UndoFailure | None:
        """Run ``record``'s undo, first holding it for a decision if the gate says so."""
        needed = self.undo_gate(record) if self.undo_gate is not None else None
        if needed is None:
            return await self._undo(record)
        await self._await_decision(record, needed)
        if record.decision is UndoDecision.KEEP:
            record.state = StepState.KEPT
            self._changed()
            return None
        return await self._undo(record)

    async def _await_decision(self, record: StepRecord, needed: ApprovalNeeded) -> None:
        now = workflow.now()
        record.state = StepState.AWAITING_APPROVAL
        record.undo_pending = False  # the plan lists only undos not yet started
        record.approval, record.approval_since = needed, now
        record.approval_deadline = now + self.approval_timeout if self.approval_timeout is not None else None
        self._changed()
        try:
            await workflow.wait_condition(lambda: record.decision is not None, timeout=self.approval_timeout)
        except TimeoutError:
            # A decision and the timer can land in one activation: the person's wins.
            if record.decision is None:
                self._decide(
                    record,
                    self.approval_default,
                    operator=DEADLINE_OPERATOR,
                    note=f"no decision within {self.approval_timeout}: the default, {self.approval_default.value}",
                )

    # --- decisions on a held undo -------------------------------------------

    def awaiting_approval(self) -> list[StepRecord]:
        """Steps whose undo is held for a decision now."""
        return [r for r in self._stack if r.state is StepState.AWAITING_APPROVAL and r.decision is None]

    def check_decision(self, step: str) -> None:
        """``ValueError`` unless ``approve_undo(step)`` / ``keep(step)`` is allowed now (for a validator)."""
        record = self._records.get(step)
        if record is None:
            raise ValueError(f"unknown step {step!r}; the steps are: {', '.join(self._records)}")
        if record.decision is not None:
            raise ValueError(f"step {step!r} was already decided: {record.decision.value}")
        if record not in self.awaiting_approval():
            held = ", ".join(r.name for r in self.awaiting_approval())
            raise ValueError(
                f"step {step!r} is not awaiting approval (it is {record.state.value})"
                + (f"; awaiting approval: {held}" if held else "")
            )

    async def approve_undo(self, step: str, *, operator: str, note: str) -> StepState:
        """Run ``step``'s held undo, accepting its cost; return its state once the undo has finished.

        The undo runs in the unwind, with its usual budget; it may still fail
        (``compensation-failed``, outstanding as any stuck undo).
        """
        self.check_decision(step)
        record = self._records[step]
        action = self._decide(record, UndoDecision.APPROVE, operator=operator, note=note)
        await workflow.wait_condition(lambda: record.state not in (StepState.AWAITING_APPROVAL, StepState.COMPENSATING))
        action.outcomes = {step: record.state.value}
        self._changed()
        return record.state

    def keep(self, step: str, *, operator: str, note: str) -> StepState:
        """Do not run ``step``'s held undo: its effect stays, and the step ends ``kept``."""
        self.check_decision(step)
        record = self._records[step]
        self._decide(record, UndoDecision.KEEP, operator=operator, note=note)
        return StepState.KEPT

    def _decide(self, record: StepRecord, decision: UndoDecision, *, operator: str, note: str) -> SagaAction:
        record.decision = decision
        needed = record.approval
        action = SagaAction(
            workflow.now(),
            operator,
            "approve_undo" if decision is UndoDecision.APPROVE else "keep",
            [record.name],
            note,
            {record.name: StepState.KEPT.value} if decision is UndoDecision.KEEP else {},
            cost=needed.cost if needed else None,
            currency=needed.currency if needed else None,
        )
        self._actions.append(action)
        self._changed()
        return action

    # --- operator actions on a stuck unwind ---------------------------------

    def check_retry(self, steps: Sequence[str] | None) -> list[str]:
        """The steps a ``retry_compensation(steps)`` would retry; ``ValueError`` says why not.

        ``None`` means every outstanding step. Call it from an Update validator.
        """
        outstanding = [r.name for r in self.outstanding()]
        if steps is None:
            if not outstanding:
                raise ValueError("no step is outstanding: there is nothing to retry")
            return outstanding
        if not steps:
            raise ValueError("name at least one step, or pass null for every outstanding step")
        for name in steps:
            self._check_outstanding(name)
        return list(dict.fromkeys(steps))

    def check_resolve(self, step: str) -> None:
        """``ValueError`` unless ``resolve(step)`` is allowed now."""
        self._check_outstanding(step)

    def _check_outstanding(self, name: str) -> None:
        record = self._records.get(name)
        if record is None:
            raise ValueError(f"unknown step {name!r}; the steps are: {', '.join(self._records)}")
        if record.state is StepState.COMPENSATING:
            raise ValueError(f"step {name!r} is not outstanding: its undo is running right now")
        if record.kind is StepKind.RETRIABLE and record.state is StepState.RUNNING:
            raise ValueError(f"step {name!r} is not outstanding: it is being retried right now")
        if record not in self.outstanding():
            raise ValueError(f"step {name!r} is not outstanding (it is {record.state.value})")

    async def retry_compensation(
        self, steps: Sequence[str] | None, *, operator: str, note: str, batch: str | None = None
    ) -> dict[str, StepState]:
        """Run the undos of outstanding ``steps`` again, each with a fresh budget.

        Returns each step's new state (``compensated`` or ``compensation-failed``).
        Failures are not raised: the steps simply stay outstanding.
        """
        names = self.check_retry(steps)
        action = SagaAction(workflow.now(), operator, "retry_compensation", names, note, batch=batch)
        self._actions.append(action)
        records = [self._records[n] for n in names]
        forward = [r for r in records if r.kind is StepKind.RETRIABLE]
        undos = [r for r in records if r.kind is not StepKind.RETRIABLE]
        if self.parallel_compensation:
            await asyncio.gather(*(self._undo(r) for r in undos), *(self._redo(r) for r in forward))
        else:
            # Reverse registration order, as the unwind itself.
            for record in sorted(undos, key=self._stack.index, reverse=True):
                await self._undo(record)
            for record in forward:
                await self._redo(record)
        action.outcomes = {r.name: r.state.value for r in records}
        self._changed()
        return {r.name: r.state for r in records}

    def resolve(self, step: str, *, operator: str, note: str, batch: str | None = None) -> None:
        """Record that ``step`` was settled outside the saga.

        Before the pivot: its effect was undone by hand. After it: the
        retriable step's effect was achieved by hand.
        """
        self.check_resolve(step)
        record = self._records[step]
        record.state = StepState.RESOLVED
        self._actions.append(
            SagaAction(workflow.now(), operator, "resolve", [step], note, {step: StepState.RESOLVED.value}, batch)
        )
        self._changed()

    async def _redo(self, record: StepRecord) -> None:
        """An operator's retry of a retriable step: its own call, a fresh budget."""
        assert record.forward is not None
        try:
            await self._run_step(record, record.forward)
        except ActivityError:
            pass  # recorded as FAILED by _run_step: still outstanding
