"""A compensation stack for any Temporal workflow.

Usage inside a workflow::

    saga = Saga(parallel_compensation=False)
    try:
        await saga.run("debit", "debit", req, undo=Compensation("refund", req))
        await saga.run("ship", "ship", order, undo=Compensation("cancel_shipment", order))
    except BaseException:
        await saga.compensate()   # survives cancellation; raises SagaCompensationError
        raise

Rules it enforces, each a defect we have seen in sagas elsewhere:

* The undo is registered *before* the step is attempted: a call that timed out
  may still have booked, so its undo must run.
* A step that the activity itself refused with a non-retryable error is known
  not to have happened; its undo is dropped (configurable).
* Unwinding continues past a failed undo; every failure is collected into one
  ``SagaCompensationError``.
* The unwind runs in its own task behind ``asyncio.shield``: cancelling the
  workflow cannot skip it, and the cancellation is re-raised once it is done.
* A stuck undo is not the end: the steps whose undo failed stay
  ``outstanding``, and an operator can ``retry_compensation`` (a fresh budget)
  or ``resolve`` them (released outside the system). Every such action is kept
  in ``actions``, an audit trail the workflow can show.
* A step may be the *pivot*, the point of no return (``StepKind``). A pivot
  whose outcome is unknown (timeouts, a lost worker, 503s) is retried with the
  same argument until it answers; only a refusal from the activity itself
  lets the saga unwind. Once the pivot has succeeded the stack is sealed:
  ``compensate`` refuses, and a *retriable* step that runs out of budget
  becomes ``outstanding`` for an operator, exactly like a stuck undo.

This module knows nothing about what the steps do. It must only be imported
from workflow code (it calls ``temporalio.workflow``), and it does no I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    RetryState,
    is_cancelled_exception,
)

COMPENSATION_FAILED_TYPE = "CompensationFailed"
#: ``StepRecord.error_type`` of a step cancelled while it ran.
CANCELLED = "Cancelled"

#: Undos must eventually succeed, so they retry longer than forward steps; but
#: the budget is bounded, so a stuck undo surfaces instead of hiding forever.
DEFAULT_UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)
DEFAULT_UNDO_TIMEOUT = timedelta(seconds=30)


class StepState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation-failed"
    #: An operator said the step's effect was undone outside the saga.
    RESOLVED = "resolved"
    SKIPPED = "skipped"


class StepKind(str, Enum):
    """Where a step stands relative to the point of no return.

    Before the pivot every step is *compensatable*: it has an undo, and a
    failure unwinds. The *pivot* is the step that cannot be undone; once it has
    succeeded the stack is sealed. Steps after it are *retriable*: they have no
    undo, and a failure past its retry budget waits for an operator instead of
    unwinding.
    """

    COMPENSATABLE = "compensatable"
    PIVOT = "pivot"
    RETRIABLE = "retriable"


@dataclass(frozen=True)
class Compensation:
    """An undo: an activity (name or function) and its argument."""

    activity: str | Callable[..., Any]
    arg: Any
    summary: str | None = None
    #: ``None``: the saga's ``undo_retry_policy`` (for an undo).
    retry_policy: RetryPolicy | None = None
    start_to_close_timeout: timedelta | None = None
    result_type: type | None = None


#: A forward call kept so an operator can run a retriable step again: the same
#: shape as an undo.
Call = Compensation


@dataclass
class StepRecord:
    name: str
    state: StepState = StepState.PENDING
    kind: StepKind = StepKind.COMPENSATABLE
    #: Attempts of the forward activity; 0 while unknown (e.g. still running).
    attempts: int = 0
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    undo_attempts: int = 0
    undo_result: Any = None
    undo_error: str | None = None
    undo_error_type: str | None = None
    undo: Compensation | None = field(default=None, repr=False)
    #: True while the undo is on the stack and has not run yet.
    undo_pending: bool = False
    #: A retriable step's own call, for an operator's retry.
    forward: Call | None = field(default=None, repr=False)


@dataclass
class SagaAction:
    """One operator action on a stuck unwind: the audit trail's row."""

    #: Workflow time at which the action was accepted.
    at: datetime
    operator: str
    #: ``retry_compensation`` or ``resolve``.
    action: str
    steps: list[str]
    note: str
    #: Each step's state once the action finished (empty while a retry runs).
    outcomes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UndoFailure:
    step: str
    error_type: str | None
    message: str


class SagaSealedError(RuntimeError):
    """A programming error: unwinding, or adding an undo, past the pivot.

    A ``RuntimeError`` fails the workflow *task*, not the workflow: Temporal
    retries the task, so the run stays open for a fix instead of ending wrong.
    """


class SagaCompensationError(ApplicationError):
    """One or more undos did not succeed within their budget."""

    def __init__(self, failures: Sequence[UndoFailure], *, cancelled: bool = False) -> None:
        self.failures = list(failures)
        #: The workflow was also cancelled while it unwound.
        self.cancelled = cancelled
        summary = "; ".join(f"{f.step}: {f.message}" for f in self.failures)
        super().__init__(
            f"{len(self.failures)} compensation(s) failed: {summary}",
            *[{"step": f.step, "type": f.error_type, "message": f.message} for f in self.failures],
            type=COMPENSATION_FAILED_TYPE,
            non_retryable=True,
        )


def _root_message(err: BaseException) -> tuple[str | None, str]:
    """The innermost Temporal failure's type and message: what a person needs."""
    cause: BaseException = err
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.type, cause.message
    if isinstance(cause, FailureError):
        return type(cause).__name__, cause.message
    return type(cause).__name__, str(cause) or type(cause).__name__


#: Reads the attempt count an activity reported, from its failure or its
#: result; ``None`` when it did not say. How activities report it is their own
#: convention, so the workflow passes readers in (``Saga(attempts_from_...)``).
FailureAttempts = Callable[[ActivityError], "int | None"]
ResultAttempts = Callable[[Any], "int | None"]


def _attempts_from_failure(err: ActivityError, policy: RetryPolicy | None, reader: FailureAttempts | None) -> int:
    reported = reader(err) if reader is not None else None
    if reported is not None:
        return reported
    if err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED and policy and policy.maximum_attempts:
        return policy.maximum_attempts
    return 0


def _refused(err: ActivityError) -> bool:
    """Did the activity itself say "no, and trying again will not help"?"""
    return (
        err.retry_state == RetryState.NON_RETRYABLE_FAILURE
        and isinstance(err.cause, ApplicationError)
        and err.cause.non_retryable
    )


class Saga:
    def __init__(
        self,
        *,
        parallel_compensation: bool = False,
        undo_retry_policy: RetryPolicy = DEFAULT_UNDO_RETRY,
        undo_timeout: timedelta = DEFAULT_UNDO_TIMEOUT,
        keep_undo_when_refused: bool = False,
        on_change: Callable[[], None] | None = None,
        stable_undo_ids: bool = False,
        attempts_from_failure: FailureAttempts | None = None,
        attempts_from_result: ResultAttempts | None = None,
        undo_priority: Priority | None = None,
    ) -> None:
        self.parallel_compensation = parallel_compensation
        #: Task-queue priority of every undo activity (``None``: inherit the
        #: workflow's). A rollback behind a backlog of new work should not wait
        #: its turn: the resources it holds are what the new work may need.
        self.undo_priority = undo_priority
        #: Give each undo the activity id ``undo-<step>``, so that operator
        #: tools (``temporal activity pause/reset -a undo-book_car``) can name
        #: it. Off by default only because histories recorded without it would
        #: no longer replay: turn it on behind ``workflow.patched``.
        self.stable_undo_ids = stable_undo_ids
        self.undo_retry_policy = undo_retry_policy
        self.undo_timeout = undo_timeout
        self.keep_undo_when_refused = keep_undo_when_refused
        self._on_change = on_change
        self._records: dict[str, StepRecord] = {}
        #: Records whose undo is registered, in registration order.
        self._stack: list[StepRecord] = []
        self._actions: list[SagaAction] = []
        self._attempts_from_failure = attempts_from_failure
        self._attempts_from_result = attempts_from_result
        #: Forward steps running now, by name: ``compensate`` cancels and drains them.
        self._in_flight: dict[str, asyncio.Task[Any]] = {}
        self._first_failure: str | None = None
        self._pivot: str | None = None
        self._sealed = False

    # --- introspection, for queries --------------------------------------

    @property
    def records(self) -> list[StepRecord]:
        return list(self._records.values())

    def record(self, name: str) -> StepRecord:
        return self._records[name]

    @property
    def first_failure(self) -> str | None:
        """The step whose failure came first (not a cancellation): what started the unwind."""
        return self._first_failure

    @property
    def past_pivot(self) -> bool:
        """The pivot succeeded: the saga can only go forward from here."""
        return self._sealed

    def outstanding(self) -> list[StepRecord]:
        """Steps an operator must settle.

        Before the pivot: steps whose undo ran out of budget (their effect may
        still be in place). After it: retriable steps that ran out of budget
        (their effect is still missing).
        """
        stuck_undos = [r for r in self._stack if r.state is StepState.COMPENSATION_FAILED]
        stuck_forward = [
            r for r in self._records.values() if r.kind is StepKind.RETRIABLE and r.state is StepState.FAILED
        ]
        return stuck_undos + stuck_forward

    @property
    def actions(self) -> list[SagaAction]:
        """Every operator action, oldest first."""
        return list(self._actions)

    def plan(self) -> list[str]:
        """Steps whose undo would run if the saga unwound now, in run order."""
        pending = [r.name for r in self._stack if r.undo_pending]
        return pending if self.parallel_compensation else list(reversed(pending))

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    # --- forward steps ----------------------------------------------------

    def declare(self, *names: str, kind: StepKind = StepKind.COMPENSATABLE) -> None:
        """Show steps as ``pending`` before they start (status queries list them)."""
        for name in names:
            self._records.setdefault(name, StepRecord(name, kind=kind))

    def add_compensation(self, name: str, undo: Compensation) -> StepRecord:
        """Push ``undo`` for step ``name``. ``run`` calls this before its activity."""
        if self._sealed:
            raise SagaSealedError(f"cannot register an undo for {name!r}: the saga is past its pivot {self._pivot!r}")
        record = self._records.setdefault(name, StepRecord(name))
        if record.undo_pending:
            raise ValueError(f"step {name!r} already has a registered compensation")
        record.undo = undo
        record.undo_pending = True
        self._stack.append(record)
        return record

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
        refusals: Collection[str] | None = None,
    ) -> Any:
        """Run one forward step as an activity, with ``undo`` registered first.

        ``kind`` says where the step stands (see ``StepKind``): a pivot or a
        retriable step has no undo; a retriable step runs only past the pivot.
        ``refusals`` (pivot only): the error types that mean "no". Any other
        non-retryable failure (an unreadable answer, say) leaves the outcome
        unknown, so the pivot runs again. ``None``: every non-retryable
        failure from the activity is a refusal.
        """
        self._check_kind(name, kind, undo)
        record = (
            self.add_compensation(name, undo) if undo is not None else self._records.setdefault(name, StepRecord(name))
        )
        record.kind = kind
        if kind is StepKind.RETRIABLE:
            record.forward = Call(activity, arg, summary, retry_policy, start_to_close_timeout, result_type)
        if kind is StepKind.PIVOT:
            self._pivot = name
            return await self._run_pivot(
                record, activity, arg, start_to_close_timeout, retry_policy, summary, result_type, refusals
            )
        return await self._run_step(record, activity, arg, start_to_close_timeout, retry_policy, summary, result_type)

    def _check_kind(self, name: str, kind: StepKind, undo: Compensation | None) -> None:
        if kind is not StepKind.COMPENSATABLE and undo is not None:
            raise ValueError(f"step {name!r} is {kind.value}: it cannot have an undo")
        if kind is StepKind.PIVOT and self._pivot is not None and self._pivot != name:
            raise ValueError(f"the saga already has a pivot, {self._pivot!r}")
        if kind is StepKind.RETRIABLE and not self._sealed:
            raise ValueError(f"retriable step {name!r} may only run after the pivot has succeeded")

    async def _run_pivot(
        self,
        record: StepRecord,
        activity: str | Callable[..., Any],
        arg: Any,
        timeout: timedelta,
        policy: RetryPolicy | None,
        summary: str | None,
        result_type: type | None,
        refusals: Collection[str] | None,
    ) -> Any:
        # The pivot's outcome must be known before the saga may decide
        # anything: "it may have happened, so undo" would undo the steps around
        # a ticket that was in fact issued. So only a refusal from the activity
        # ends it; timeouts, a lost worker and transient errors are retried,
        # with the same argument (the activity makes it idempotent), without a
        # cap. ``temporal activity pause`` stops a pivot that never answers.
        unbounded = dataclasses.replace(policy or RetryPolicy(), maximum_attempts=0)
        while True:
            try:
                result = await self._run_step(record, activity, arg, timeout, unbounded, summary, result_type)
                break
            except ActivityError as err:
                if is_cancelled_exception(err) or (
                    _refused(err) and (refusals is None or getattr(err.cause, "type", None) in refusals)
                ):
                    raise
                # Not a "no": the answer could not be read, so the outcome is
                # still unknown. Ask again after the policy's longest wait.
                record.state = StepState.RUNNING
                if self._first_failure == record.name:
                    self._first_failure = None
                self._changed()
                await workflow.sleep(unbounded.maximum_interval or timedelta(minutes=1))
        self._sealed = True
        # Nothing before the pivot can be undone any more.
        for r in self._stack:
            r.undo_pending = False
        self._changed()
        return result

    async def _run_step(
        self,
        record: StepRecord,
        activity: str | Callable[..., Any],
        arg: Any,
        start_to_close_timeout: timedelta,
        retry_policy: RetryPolicy | None,
        summary: str | None,
        result_type: type | None,
    ) -> Any:
        name = record.name
        record.state = StepState.RUNNING
        self._changed()
        task = asyncio.current_task()
        if task is not None:
            self._in_flight[name] = task
        try:
            result = await workflow.execute_activity(
                activity,  # type: ignore[arg-type]  # a name or an @activity.defn function
                arg,
                start_to_close_timeout=start_to_close_timeout,
                retry_policy=retry_policy,
                summary=summary,
                result_type=result_type,
            )
        except ActivityError as err:
            record.state = StepState.FAILED
            record.attempts = _attempts_from_failure(err, retry_policy, self._attempts_from_failure)
            if is_cancelled_exception(err):
                record.error_type, record.error = CANCELLED, "cancelled before it finished"
            else:
                record.error_type, record.error = _root_message(err)
                # Recorded where it is raised: with concurrent steps, scan order says nothing.
                self._first_failure = self._first_failure or name
            if _refused(err) and not self.keep_undo_when_refused:
                record.undo_pending = False
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
        if record.state is StepState.RUNNING:
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
            results = await asyncio.gather(*(self._undo(r) for r in todo))
        else:
            results = [await self._undo(r) for r in reversed(todo)]
        return [f for f in results if f is not None]

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
        self, steps: Sequence[str] | None, *, operator: str, note: str
    ) -> dict[str, StepState]:
        """Run the undos of outstanding ``steps`` again, each with a fresh budget.

        Returns each step's new state (``compensated`` or ``compensation-failed``).
        Failures are not raised: the steps simply stay outstanding.
        """
        names = self.check_retry(steps)
        action = SagaAction(workflow.now(), operator, "retry_compensation", names, note)
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

    def resolve(self, step: str, *, operator: str, note: str) -> None:
        """Record that ``step`` was settled outside the saga.

        Before the pivot: its effect was undone by hand. After it: the
        retriable step's effect was achieved by hand.
        """
        self.check_resolve(step)
        record = self._records[step]
        record.state = StepState.RESOLVED
        self._actions.append(
            SagaAction(workflow.now(), operator, "resolve", [step], note, {step: StepState.RESOLVED.value})
        )
        self._changed()

    async def _redo(self, record: StepRecord) -> None:
        """An operator's retry of a retriable step: its own call, a fresh budget."""
        call = record.forward
        assert call is not None
        try:
            await self._run_step(
                record,
                call.activity,
                call.arg,
                call.start_to_close_timeout or self.undo_timeout,
                call.retry_policy,
                call.summary,
                call.result_type,
            )
        except ActivityError:
            pass  # recorded as FAILED by _run_step: still outstanding

    async def _undo(self, record: StepRecord) -> UndoFailure | None:
        undo = record.undo
        assert undo is not None
        record.state = StepState.COMPENSATING
        record.undo_pending = False  # the plan lists only undos not yet started
        self._changed()
        policy = undo.retry_policy or self.undo_retry_policy
        try:
            result = await workflow.execute_activity(
                undo.activity,  # type: ignore[arg-type]  # a name or an @activity.defn function
                undo.arg,
                start_to_close_timeout=undo.start_to_close_timeout or self.undo_timeout,
                retry_policy=policy,
                summary=undo.summary,
                result_type=undo.result_type,
                activity_id=f"undo-{record.name}" if self.stable_undo_ids else None,
                priority=self.undo_priority or Priority.default,
            )
        except ActivityError as err:
            record.state = StepState.COMPENSATION_FAILED
            record.undo_attempts = _attempts_from_failure(err, policy, self._attempts_from_failure)
            error_type, record.undo_error = _root_message(err)
            if is_cancelled_exception(err):
                error_type = CANCELLED
            record.undo_error_type = error_type
            self._changed()
            return UndoFailure(record.name, error_type, record.undo_error)
        record.state = StepState.COMPENSATED
        record.undo_result = result
        # A retried undo that succeeded: its earlier failure no longer describes the step.
        record.undo_error = record.undo_error_type = None
        record.undo_attempts = (self._attempts_from_result(result) if self._attempts_from_result else None) or 0
        self._changed()
        return None
