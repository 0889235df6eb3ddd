"""The saga's state: records, the undo stack, the audit trail, and running one undo.

``saga.core.Saga`` is the class a workflow uses; this is its lower half, kept
apart so that each file has one job: here what the saga knows, there how it
moves. Workflow code only: ``_undo`` calls ``temporalio.workflow``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

from saga.failures import attempts_from_failure, root_message
from saga.records import (
    CANCELLED,
    DEFAULT_UNDO_RETRY,
    DEFAULT_UNDO_TIMEOUT,
    Compensation,
    FailureAttempts,
    ResultAttempts,
    SagaAction,
    SagaSealedError,
    StepKind,
    StepRecord,
    StepState,
    UndoFailure,
)


class Stack:
    """A saga's state: its options, one record per step, the undo stack and the audit trail.

    ``Saga`` builds on it; everything here is what a query reads, plus the one
    way an undo is run.
    """

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
        undo_task_queue: str | None = None,
    ) -> None:
        self.parallel_compensation = parallel_compensation
        #: Task-queue priority of every undo activity (``None``: inherit the
        #: workflow's). A rollback behind a backlog of new work should not wait
        #: its turn: the resources it holds are what the new work may need.
        self.undo_priority = undo_priority
        #: Task queue of every undo activity (``None``: the workflow's own). A
        #: queue of their own, polled by a worker with its own slots, keeps
        #: undos out of the line of new work rather than only ahead in it.
        self.undo_task_queue = undo_task_queue
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

    # --- the stack ------------------------------------------------------------

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
                task_queue=self.undo_task_queue or workflow.info().task_queue,
            )
        except ActivityError as err:
            record.state = StepState.COMPENSATION_FAILED
            record.undo_attempts = attempts_from_failure(err, policy, self._attempts_from_failure)
            error_type, record.undo_error = root_message(err)
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
