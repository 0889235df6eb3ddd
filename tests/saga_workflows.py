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
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from workflows.saga import Compensation, Saga


@dataclass
class Step:
    name: str
    #: ok | fail | book_then_hang | block
    behaviour: str = "ok"
    #: ok | fail | gate
    undo: str = "ok"


@dataclass
class Plan:
    steps: list[Step]
    parallel_compensation: bool = False
    undo_attempts: int = 3
    step_timeout_s: float = 5.0
    #: Run the steps concurrently instead of one after another.
    concurrent_steps: bool = False
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

        async def one(step: Step) -> None:
            await saga.run(
                step.name,
                "do_step",
                step,
                undo=Compensation("undo_step", step),
                start_to_close_timeout=timedelta(seconds=plan.step_timeout_s),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )

        try:
            if plan.concurrent_steps:
                await asyncio.gather(*(one(s) for s in plan.steps))
            else:
                for step in plan.steps:
                    await one(step)
        except (FailureError, asyncio.CancelledError):
            await saga.compensate()
            raise
        return [r.name for r in saga.records]

    @workflow.query
    def states(self) -> dict[str, str]:
        return {r.name: r.state.value for r in self._saga.records} if self._saga else {}

    @workflow.query
    def plan(self) -> list[str]:
        return self._saga.plan() if self._saga else []
