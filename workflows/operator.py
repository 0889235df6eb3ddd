"""The operator's Updates: retry and resolve (NEEDS_ATTENTION), approve_undo and keep (AWAITING_UNDO_APPROVAL).

A mixin of ``BookingWorkflow``: the Temporal CLI, ``run_operator.py`` and the
web app call these handlers by name (``retry_compensation``, ``resolve``,
``approve_undo``, ``keep``), and
the workflow class inherits them. What they change is the saga's record of
each outstanding step; the workflow's wait for operators sees it. Workflow
code: deterministic, no I/O.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from saga import Saga, StepState
    from trip import UPDATE_APPROVE_UNDO, UPDATE_KEEP, UPDATE_RESOLVE, UPDATE_RETRY_COMPENSATION
    from trip.models import Kind
    from trip.status import (
        OperatorActionResult,
        ResolveInput,
        RetryCompensationInput,
        SagaStatus,
        UndoDecisionInput,
    )
    from trip.steps import step
    from workflows import messages, render


class OperatorUpdates:
    #: Set by the workflow: the saga whose outstanding steps the operator settles, and the run's status.
    _saga: Saga
    _status: SagaStatus

    @workflow.update(name=UPDATE_RETRY_COMPENSATION)
    async def retry_compensation(self, req: RetryCompensationInput) -> OperatorActionResult:
        """Run the undos of outstanding steps again with a fresh budget; return when they finish."""
        outcomes = await self._saga.retry_compensation(req.steps, operator=req.operator, note=req.note, batch=req.batch)
        return render.action_result(self._saga, {name: state.value for name, state in outcomes.items()})

    @retry_compensation.validator
    def _validate_retry(self, req: RetryCompensationInput) -> None:
        self._check_operator_action(req, "retry")
        try:
            self._saga.check_retry(req.steps)
        except ValueError as err:  # the saga core says why in plain Python
            raise messages.update_rejected(str(err)) from None

    @workflow.update(name=UPDATE_RESOLVE)
    def resolve(self, req: ResolveInput) -> OperatorActionResult:
        """Record that an outstanding step's reservation was released outside the system."""
        self._saga.resolve(req.step, operator=req.operator, note=req.note, batch=req.batch)
        return render.action_result(self._saga, {req.step: StepState.RESOLVED.value})

    @resolve.validator
    def _validate_resolve(self, req: ResolveInput) -> None:
        self._check_operator_action(req, "resolve")
        if not req.step:
            raise messages.update_rejected(
                f"step must name the outstanding step to resolve, e.g. {step(Kind.CAR).book}"
            )
        try:
            self._saga.check_resolve(req.step)
        except ValueError as err:
            raise messages.update_rejected(str(err)) from None

    @workflow.update(name=UPDATE_APPROVE_UNDO)
    async def approve_undo(self, req: UndoDecisionInput) -> OperatorActionResult:
        """Run a costly undo the unwind holds, accepting its fee; return once it has run."""
        state = await self._saga.approve_undo(req.step, operator=req.operator, note=req.note)
        return render.action_result(self._saga, {req.step: state.value})

    @approve_undo.validator
    def _validate_approve_undo(self, req: UndoDecisionInput) -> None:
        self._check_undo_decision(req, "approve")

    @workflow.update(name=UPDATE_KEEP)
    def keep(self, req: UndoDecisionInput) -> OperatorActionResult:
        """Do not cancel: the reservation stays, recorded as kept, and the unwind goes on."""
        state = self._saga.keep(req.step, operator=req.operator, note=req.note)
        return render.action_result(self._saga, {req.step: state.value})

    @keep.validator
    def _validate_keep(self, req: UndoDecisionInput) -> None:
        self._check_undo_decision(req, "keep")

    def _check_undo_decision(self, req: UndoDecisionInput, what: str) -> None:
        reason = messages.unknown_fields(req.model_extra, list(type(req).model_fields)) or messages.operator_refusal(
            what,
            status=self._status,
            operator=req.operator,
            note=req.note,
            expected=SagaStatus.AWAITING_UNDO_APPROVAL,
        )
        if reason:
            raise messages.update_rejected(reason)
        if not req.step:
            held = ", ".join(r.name for r in self._saga.awaiting_approval())
            raise messages.update_rejected(f"step must name the step whose undo awaits approval: {held}")
        try:
            self._saga.check_decision(req.step)
        except ValueError as err:
            raise messages.update_rejected(str(err)) from None

    def _check_operator_action(self, req: RetryCompensationInput | ResolveInput, what: str) -> None:
        reason = messages.unknown_fields(req.model_extra, list(type(req).model_fields)) or messages.operator_refusal(
            what, status=self._status, operator=req.operator, note=req.note
        )
        if reason:
            raise messages.update_rejected(reason)
