"""A workflow that holds costly undos for approval with the generic saga (no booking code).

Each step says whether its undo costs something; the gate holds those. Kept in
its own small module so the sandbox imports it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from saga import ApprovalNeeded, Compensation, Saga, StepRecord, UndoDecision


@dataclass
class CostlyStep:
    name: str
    #: What undoing it costs; 0: nothing, the undo runs at once.
    undo_cost: str = "0"
    #: ok | fail (the step is refused, which starts the unwind)
    behaviour: str = "ok"


@dataclass
class ApprovalPlan:
    steps: list[CostlyStep]
    parallel_compensation: bool = False
    approval_timeout_s: float | None = None
    approval_default: str = UndoDecision.APPROVE.value


@dataclass
class Decision:
    step: str
    operator: str = "ops"
    note: str = "checked with the customer"


@dataclass
class Outcome:
    states: dict[str, str]
    actions: list[dict[str, str]] = field(default_factory=list)


@workflow.defn
class ApprovalTestWorkflow:
    def __init__(self) -> None:
        self._saga: Saga | None = None

    @workflow.run
    async def run(self, plan: ApprovalPlan) -> Outcome:
        costs = {s.name: Decimal(s.undo_cost) for s in plan.steps}

        def gate(record: StepRecord) -> ApprovalNeeded | None:
            cost = costs[record.name]
            return ApprovalNeeded(cost, "EUR", f"undoing {record.name} costs {cost}") if cost > 0 else None

        timeout = plan.approval_timeout_s
        saga = self._saga = Saga(
            parallel_compensation=plan.parallel_compensation,
            undo_retry_policy=RetryPolicy(maximum_attempts=1),
            undo_timeout=timedelta(seconds=10),
            undo_gate=gate,
            approval_timeout=None if timeout is None else timedelta(seconds=timeout),
            approval_default=plan.approval_default,
        )
        try:
            for step in plan.steps:
                await saga.run(
                    step.name,
                    "costly_step",
                    step,
                    undo=Compensation("undo_costly_step", step),
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
        except FailureError:
            await saga.compensate()
        return self.outcome()

    @workflow.query
    def outcome(self) -> Outcome:
        assert self._saga is not None
        actions = [
            {
                "operator": a.operator,
                "action": a.action,
                "steps": ",".join(a.steps),
                "note": a.note,
                "cost": str(a.cost),
                "currency": a.currency or "",
                "outcomes": repr(a.outcomes),
            }
            for a in self._saga.actions
        ]
        return Outcome({r.name: r.state.value for r in self._saga.records}, actions)

    @workflow.update
    async def approve_undo(self, d: Decision) -> str:
        assert self._saga is not None
        return (await self._saga.approve_undo(d.step, operator=d.operator, note=d.note)).value

    @approve_undo.validator
    def _check_approve(self, d: Decision) -> None:
        self._check(d)

    @workflow.update
    def keep(self, d: Decision) -> str:
        assert self._saga is not None
        return self._saga.keep(d.step, operator=d.operator, note=d.note).value

    @keep.validator
    def _check_keep(self, d: Decision) -> None:
        self._check(d)

    def _check(self, d: Decision) -> None:
        assert self._saga is not None
        try:
            self._saga.check_decision(d.step)
        except ValueError as err:
            raise ApplicationError(str(err), type="Rejected", non_retryable=True) from None
