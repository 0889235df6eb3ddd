"""The order workflow: reserve each line's stock, charge the card, ship.

Charging is the pivot: before it every reservation can be released, after it
the order only goes forward, and a shipment that keeps failing waits for an
operator instead of unwinding. The saga core does all of that: adopting it
takes the ``Saga(...)`` line, ``saga.run`` in place of ``execute_activity``
(with the undo and the step's kind), ``compensate()`` on failure, and one wait
for the operator. A release that costs a restocking fee waits for an
operator's ``approve_undo`` or ``keep`` (the ``undo_gate``). Workflow code: no
I/O here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from examples.order.activities import Decide, Order, OrderActivities, Receipt, Reservation, Settle
    from saga import ApprovalNeeded, Compensation, Saga, StepKind, StepRecord

TIMEOUT = timedelta(seconds=10)
#: Small budgets so that a stuck step surfaces within seconds of (skipped) time.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
#: Each step's policy says which answers are a "no" (the activities only name
#: them): those end the step at once, and the saga drops a refused step's undo.
#: The pivot keeps its list but loses the attempt cap, so only a "no" unwinds.
RESERVE = dataclasses.replace(RETRY, non_retryable_error_types=["OutOfStock", "Voided"])
CHARGE = dataclasses.replace(RETRY, non_retryable_error_types=["CardDeclined"])
PIVOT, RETRIABLE = StepKind.PIVOT, StepKind.RETRIABLE


@workflow.defn
class OrderWorkflow:
    @workflow.init
    def __init__(self, order: Order) -> None:
        # Built here, not in run, so that the operator's Updates always find it.
        fee = Decimal(order.restock_fee_cents) / 100

        def costly(record: StepRecord) -> ApprovalNeeded | None:
            return ApprovalNeeded(fee, "EUR", "restocking fee") if fee > 0 else None

        self.saga = Saga(parallel_compensation=order.parallel_unwind, undo_retry_policy=RETRY, undo_gate=costly)

    @workflow.run
    async def run(self, order: Order) -> Receipt:
        saga = self.saga
        step = functools.partial(saga.run, start_to_close_timeout=TIMEOUT)
        try:
            for line in order.lines:
                held = Reservation(order.order_id, line.sku, line.qty)
                undo = Compensation(OrderActivities.release_stock, held)
                await step(f"reserve {line.sku}", OrderActivities.reserve_stock, held, undo=undo, retry_policy=RESERVE)
            payment = await step(
                "charge", OrderActivities.charge_payment, order, undo=None, kind=PIVOT, retry_policy=CHARGE
            )
        except (ActivityError, asyncio.CancelledError):
            await saga.compensate()  # raises SagaCompensationError, listing every stuck undo
            raise
        try:
            tracking = await step(
                "ship", OrderActivities.ship_order, order, undo=None, kind=RETRIABLE, retry_policy=RETRY
            )
        except ActivityError:
            # Past the pivot nothing unwinds: wait until an operator has retried or resolved it.
            await workflow.wait_condition(lambda: not saga.outstanding() and workflow.all_handlers_finished())
            tracking = saga.record("ship").result  # None if it was resolved by hand
        return Receipt(order.order_id, payment, tracking)

    # --- the operator's controls: the core does the work, these only expose it ---

    @workflow.update
    async def retry(self, req: Settle) -> dict[str, str]:
        states = await self.saga.retry_compensation(req.steps, operator=req.operator, note=req.note)
        return {name: state.value for name, state in states.items()}

    @retry.validator
    def _check_retry(self, req: Settle) -> None:
        self.saga.check_retry(req.steps)

    @workflow.update
    def resolve(self, req: Settle) -> None:
        for step in req.steps or []:
            self.saga.resolve(step, operator=req.operator, note=req.note)

    @resolve.validator
    def _check_resolve(self, req: Settle) -> None:
        if not req.steps:
            raise ValueError("name the steps settled by hand")
        for step in req.steps:
            self.saga.check_resolve(step)

    @workflow.update
    async def approve_undo(self, req: Decide) -> str:
        return (await self.saga.approve_undo(req.step, operator=req.operator, note=req.note)).value

    @workflow.update
    def keep(self, req: Decide) -> str:
        return self.saga.keep(req.step, operator=req.operator, note=req.note).value

    @approve_undo.validator
    def _check_approve(self, req: Decide) -> None:
        self.saga.check_decision(req.step)

    @keep.validator
    def _check_keep(self, req: Decide) -> None:
        self.saga.check_decision(req.step)

    @workflow.query
    def steps(self) -> dict[str, str]:
        return {r.name: r.state.value for r in self.saga.records}
