"""A workflow that uses the generic saga with made-up steps (no booking code).

Kept in its own small module so the sandbox imports it cheaply. It proves the
saga core can be lifted into any workflow unchanged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from saga import Compensation, Saga, SagaCompensationError, SagaSealedError, StepKind


@dataclass
class Step:
    name: str
    #: ok | fail | refuse | flaky | book_then_hang | block
    behaviour: str = "ok"
    #: ok | fail | gate | fail_until_gate
    undo: str = "ok"


@dataclass
class Plan:
    steps: list[Step]
    parallel_compensation: bool = False
    undo_attempts: int = 3
    step_timeout_s: float = 5.0
    #: Run the steps concurrently instead of one after another.
    concurrent_steps: bool = False
    #: When undos fail, wait for ``retry``/``resolve`` Updates instead of failing at once.
    wait_for_operator: bool = False
    #: The step that cannot be undone: those before it are compensatable, those
    #: after it retriable (steps then run one after another).
    pivot: str | None = None
    #: The error types every step's retry policy ends at once.
    non_retryable: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


@workflow.defn
class SagaTestWorkflow:
    def __init__(self) -> None:
        self._saga: Saga | None = None

    @workflow.run
    async def run(self, plan: Plan) -> list[str]:
        saga = Saga(
            parallel_compensation=plan.parallel_compensation,
            undo_retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=plan.undo_attempts),
            undo_timeout=timedelta(seconds=10),
        )
        self._saga = saga
        saga.declare(*(s.name for s in plan.steps))
        names = [s.name for s in plan.steps]
        pivot_at = names.index(plan.pivot) if plan.pivot else len(names)

        def kind(step: Step) -> StepKind:
            at = names.index(step.name)
            return StepKind.COMPENSATABLE if at < pivot_at else StepKind.PIVOT if at == pivot_at else StepKind.RETRIABLE

        async def one(step: Step) -> None:
            k = kind(step)
            try:
                await saga.run(
                    step.name,
                    "do_step",
                    step,
                    undo=Compensation("undo_step", step) if k is StepKind.COMPENSATABLE else None,
                    start_to_close_timeout=timedelta(seconds=plan.step_timeout_s),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=1),
                        maximum_attempts=1,
                        non_retryable_error_types=plan.non_retryable,
                    ),
                    kind=k,
                )
            except FailureError:
                if k is not StepKind.RETRIABLE:
                    raise  # a retriable step's failure is outstanding, never an unwind

        try:
            if plan.concurrent_steps:
                await asyncio.gather(*(one(s) for s in plan.steps))
            else:
                for step in plan.steps:
                    await one(step)
        except (FailureError, asyncio.CancelledError):
            try:
                await saga.compensate()
            except SagaCompensationError:
                if not plan.wait_for_operator:
                    raise
                # The operator pattern, as any workflow adopts it: wait until
                # nothing is outstanding, with the Updates below doing the work.
                await workflow.wait_condition(lambda: not saga.outstanding() and workflow.all_handlers_finished())
                raise ApplicationError("rolled back with an operator's help", type="RolledBack") from None
            raise
        if saga.outstanding():
            await workflow.wait_condition(lambda: not saga.outstanding() and workflow.all_handlers_finished())
        if saga.past_pivot:
            try:
                await saga.compensate()
            except SagaSealedError:
                return [*(r.name for r in saga.records), "sealed"]
        return [r.name for r in saga.records]

    @workflow.update
    async def retry(self, steps: list[str] | None) -> dict[str, str]:
        assert self._saga is not None
        outcomes = await self._saga.retry_compensation(steps, operator="tester", note="retry")
        return {name: state.value for name, state in outcomes.items()}

    @retry.validator
    def _check_retry(self, steps: list[str] | None) -> None:
        if self._saga is None:
            raise ValueError("not started")
        self._saga.check_retry(steps)

    @workflow.update
    def resolve(self, step: str) -> None:
        assert self._saga is not None
        self._saga.resolve(step, operator="tester", note="by hand")

    @resolve.validator
    def _check_resolve(self, step: str) -> None:
        if self._saga is None:
            raise ValueError("not started")
        self._saga.check_resolve(step)

    @workflow.query
    def audit(self) -> list[tuple[str, list[str], dict[str, str]]]:
        return [(a.action, a.steps, a.outcomes) for a in self._saga.actions] if self._saga else []

    @workflow.query
    def states(self) -> dict[str, str]:
        return {r.name: r.state.value for r in self._saga.records} if self._saga else {}

    @workflow.query
    def plan(self) -> list[str]:
        return self._saga.plan() if self._saga else []
