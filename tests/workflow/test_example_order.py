"""The order example (examples/order) on the time-skipping server.

It proves the saga core is generic: a workflow that knows nothing of bookings
gets the reverse and parallel unwind, the collected undo failures, the pivot
and the operator's retry from the core alone.
"""

from __future__ import annotations

import ast
import asyncio
import re
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

import examples
from examples.order import Line, Order, OrderActivities, OrderWorkflow, Receipt, Settle, Shop
from examples.order.activities import Decide, Reservation
from examples.order.workflows import RESERVE
from tests.conftest import wait_until


@dataclass
class Harness:
    env: WorkflowEnvironment
    shop: Shop
    task_queue: str

    async def start(self, order: Order) -> WorkflowHandle[OrderWorkflow, Receipt]:
        return await self.env.client.start_workflow(
            OrderWorkflow.run, order, id=f"order-{uuid.uuid4().hex}", task_queue=self.task_queue
        )

    async def fails_with(self, order: Order) -> ApplicationError:
        """Run ``order`` to its end; the application error it failed with (a step's, or the saga's own)."""
        with pytest.raises(WorkflowFailureError) as caught:
            await (await self.start(order)).result()
        cause = caught.value.cause
        if isinstance(cause, ActivityError):
            cause = cause.cause
        assert isinstance(cause, ApplicationError), cause
        return cause


@pytest_asyncio.fixture
async def harness(ts_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    shop = Shop(stock={"apple": 5, "pear": 5, "plum": 5, "fig": 0})
    acts = OrderActivities(shop)
    activities = [acts.reserve_stock, acts.release_stock, acts.charge_payment, acts.ship_order]
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[OrderWorkflow], activities=activities):
        yield Harness(ts_env, shop, task_queue)


def order(*skus: str, parallel: bool = False) -> Order:
    return Order(f"o-{uuid.uuid4().hex[:8]}", [Line(sku) for sku in skus], amount_cents=1250, parallel_unwind=parallel)


async def wait_for_step(handle: WorkflowHandle[Any, Any], step: str, state: str) -> dict[str, str]:
    """Poll the ``steps`` query (the worker owns the state) until ``step`` is in ``state``."""
    steps: dict[str, str] = await wait_until(
        lambda: handle.query(OrderWorkflow.steps), lambda steps: steps.get(step) == state, what=f"{step} to be {state}"
    )
    return steps


async def test_a_happy_order_is_charged_and_shipped(harness: Harness) -> None:
    o = order("apple", "pear")
    receipt = await (await harness.start(o)).result()
    assert receipt == Receipt(o.order_id, f"pay-{o.order_id}", f"trk-{o.order_id}")
    assert harness.shop.log == ["reserve apple", "reserve pear", f"charge {o.order_id}", f"ship {o.order_id}"]
    assert harness.shop.stock == {"apple": 4, "pear": 4, "plum": 5, "fig": 0}


async def test_an_out_of_stock_line_releases_the_others_in_reverse_order(harness: Harness) -> None:
    error = await harness.fails_with(order("apple", "pear", "plum", "fig"))
    assert error.type == "OutOfStock"
    assert harness.shop.log == [
        "reserve apple", "reserve pear", "reserve plum",
        "release plum", "release pear", "release apple",
    ]  # fmt: skip
    assert harness.shop.stock == {"apple": 5, "pear": 5, "plum": 5, "fig": 0}
    assert harness.shop.payments == {}


@pytest.mark.parametrize("parallel", [False, True], ids=["reverse", "parallel"])
async def test_the_parallel_option_starts_every_release_at_once(harness: Harness, parallel: bool) -> None:
    o = order("apple", "pear", "plum", parallel=parallel)
    harness.shop.card_declined = True
    handle = await harness.start(o)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    # The history says when each release was scheduled and when it came back.
    events = []
    releases: set[int] = set()
    for e in (await handle.fetch_history()).events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if e.activity_task_scheduled_event_attributes.activity_type.name == "release_stock":
                releases.add(e.event_id)
                events.append("scheduled")
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            if e.activity_task_completed_event_attributes.scheduled_event_id in releases:
                events.append("completed")
    if parallel:
        assert events == ["scheduled"] * 3 + ["completed"] * 3
    else:
        assert events == ["scheduled", "completed"] * 3
        assert harness.shop.log[-3:] == ["release plum", "release pear", "release apple"]
    assert sorted(harness.shop.log[-3:]) == ["release apple", "release pear", "release plum"]


async def test_stuck_releases_are_collected_and_the_others_still_run(harness: Harness) -> None:
    harness.shop.stuck_releases = {"apple", "plum"}
    error = await harness.fails_with(order("apple", "pear", "plum", "fig"))
    assert error.type == "CompensationFailed"
    assert [(d["step"], d["type"]) for d in error.details] == [
        ("reserve plum", "WarehouseOffline"),
        ("reserve apple", "WarehouseOffline"),
    ]
    # plum's release failed first, and pear's was still run.
    assert harness.shop.log[3:] == ["release pear"]
    assert harness.shop.stock == {"apple": 4, "pear": 5, "plum": 4, "fig": 0}


async def test_a_release_with_a_restocking_fee_waits_for_approve_or_keep(harness: Harness) -> None:
    o = order("apple", "pear", "fig")
    o.restock_fee_cents = 500
    handle = await harness.start(o)
    await wait_for_step(handle, "reserve pear", "awaiting-approval")
    await handle.execute_update(OrderWorkflow.keep, Decide("reserve pear", "ops", "the customer still wants it"))
    await wait_for_step(handle, "reserve apple", "awaiting-approval")
    assert (
        await handle.execute_update(OrderWorkflow.approve_undo, Decide("reserve apple", "ops", "fee ok"))
        == "compensated"
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.query(OrderWorkflow.steps))["reserve pear"] == "kept"
    assert harness.shop.stock == {"apple": 5, "pear": 4, "plum": 5, "fig": 0}  # the pear stays reserved


async def test_a_declined_card_releases_the_stock_and_never_ships(harness: Harness) -> None:
    harness.shop.card_declined = True
    error = await harness.fails_with(order("apple", "pear"))
    assert error.type == "CardDeclined"
    assert harness.shop.log == ["reserve apple", "reserve pear", "release pear", "release apple"]
    assert harness.shop.payments == {} and harness.shop.shipments == {}


async def test_a_stuck_shipment_after_the_charge_waits_for_an_operator_and_releases_nothing(
    harness: Harness,
) -> None:
    harness.shop.carrier_down = True
    o = order("apple", "pear")
    handle = await harness.start(o)
    steps = await wait_for_step(handle, "ship", "failed")
    assert steps == {"reserve apple": "succeeded", "reserve pear": "succeeded", "charge": "succeeded", "ship": "failed"}
    # The charge is the point of no return: no release ran, nothing was refunded.
    assert harness.shop.log == ["reserve apple", "reserve pear", f"charge {o.order_id}"]
    assert harness.shop.payments == {o.order_id: 1250}

    harness.shop.carrier_down = False  # the carrier is back
    states = await handle.execute_update(OrderWorkflow.retry, Settle(None, "ops", "carrier is back"))
    assert states == {"ship": "succeeded"}
    assert (await handle.result()).tracking == f"trk-{o.order_id}"
    assert harness.shop.log[-1] == f"ship {o.order_id}"
    assert not any(entry.startswith("release") for entry in harness.shop.log)


async def test_a_pivot_whose_outcome_is_unknown_is_asked_again_not_unwound(harness: Harness) -> None:
    # Five 503s: more than the step's budget of 3 attempts, which a pivot does not have.
    harness.shop.gateway_errors = 5
    o = order("apple")
    receipt = await (await harness.start(o)).result()
    assert receipt.payment_id == f"pay-{o.order_id}" and harness.shop.gateway_errors == 0
    assert harness.shop.log == ["reserve apple", f"charge {o.order_id}", f"ship {o.order_id}"]


async def test_a_reservation_released_before_it_landed_can_never_land() -> None:
    """The undo of a call still in flight (its step was cancelled) voids it: the late call is refused."""
    shop = Shop(stock={"apple": 1})
    acts = OrderActivities(shop)
    held = Reservation("o-1", "apple", 1)
    await ActivityEnvironment().run(acts.release_stock, held)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(acts.reserve_stock, held)
    # Named, not flagged: the reserve step's policy is what ends it.
    assert refused.value.type == "Voided" and not refused.value.non_retryable
    assert "Voided" in (RESERVE.non_retryable_error_types or [])
    assert shop.stock == {"apple": 1} and shop.log == []


EXAMPLES = Path(examples.__file__).parent
#: What the example may import besides the standard library: Temporal, itself and the saga core.
ALLOWED = {"temporalio", "examples", "saga"}


def test_the_example_imports_only_the_saga_core_and_temporal() -> None:
    imported: set[str] = set()
    for path in EXAMPLES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
    outside = {
        name
        for name in imported
        if name.split(".")[0] not in sys.stdlib_module_names | {"__future__"}
        and name not in ALLOWED
        and name.split(".")[0] not in {"temporalio", "examples"}
    }
    assert "temporalio.workflow" in imported or "temporalio" in imported
    assert outside == set()


def test_the_code_shown_in_docs_saga_md_is_the_example_itself() -> None:
    doc = (EXAMPLES.parent / "docs" / "saga.md").read_text()
    source = (EXAMPLES / "order" / "workflows.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    shown = [b for b in blocks if "class OrderWorkflow" in b]
    assert len(shown) == 1 and shown[0] in source


async def test_the_worker_and_the_starter_run_an_order_on_a_dev_server(dev_env: WorkflowEnvironment) -> None:
    """What a reader runs: ``run_worker`` in one shell, ``run_workflow`` in another."""
    address = dev_env.client.service_client.config.target_host
    queue = ["--address", address, "--task-queue", f"order-{uuid.uuid4().hex}"]
    root = EXAMPLES.parent
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.order.run_worker", *queue, cwd=root, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert worker.stdout is not None
        assert b"polling" in await worker.stdout.readline()

        async def start(*skus: str) -> tuple[int | None, str]:
            lines = [arg for sku in skus for arg in ("--sku", sku)]
            starter = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "examples.order.run_workflow",
                *queue,
                *lines,
                cwd=root,
                stdout=asyncio.subprocess.PIPE,
            )
            # A guard against a hang, not a speed test: the order takes well under a second.
            out, _ = await asyncio.wait_for(starter.communicate(), timeout=120)
            return starter.returncode, out.decode()

        code, out = await start()
        assert code == 0, out
        assert re.fullmatch(r"order (order-\w+): paid pay-\1, shipped trk-\1\n", out), out
        code, out = await start("apple", "fig")  # the shop has no figs: the apple is released
        assert code == 1 and "OutOfStock" in out and "every reservation released" in out, out
    finally:
        worker.terminate()
        await worker.wait()
