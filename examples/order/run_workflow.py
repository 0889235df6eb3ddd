"""Start one order and print its receipt: ``python -m examples.order.run_workflow``.

Needs the worker (``python -m examples.order.run_worker``) on the same server.
``--sku`` adds a line per use; an SKU the shop does not stock (``--sku fig``)
is refused, and the reservations before it are released: the saga unwinds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid

from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError

from examples.order.activities import TASK_QUEUE, Line, Order
from examples.order.workflows import OrderWorkflow


def exit_past_the_sdk(code: int) -> None:
    """Exit with ``code`` without the interpreter's finalisation.

    A process that used the SDK can crash while the interpreter shuts down
    (its native threads outlive Python's; temporalio/sdk-python#300), turning
    a clean exit code into a signal. Flushing and leaving at once avoids it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def main(address: str, task_queue: str, skus: list[str]) -> int:
    client = await Client.connect(address)
    order = Order(f"order-{uuid.uuid4().hex[:8]}", [Line(sku) for sku in skus], amount_cents=1250)
    try:
        receipt = await client.execute_workflow(OrderWorkflow.run, order, id=order.order_id, task_queue=task_queue)
    except WorkflowFailureError as err:
        # A refused step fails the order with that step's own error; show it.
        cause = err.cause.cause if isinstance(err.cause, ActivityError) else err.cause
        print(f"order {order.order_id} failed, every reservation released: {cause}")
        return 1
    print(f"order {receipt.order_id}: paid {receipt.payment_id}, shipped {receipt.tracking}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="localhost:7233", help="Temporal frontend (default: %(default)s)")
    parser.add_argument("--task-queue", default=TASK_QUEUE, help="(default: %(default)s)")
    parser.add_argument("--sku", action="append", help="a line of the order (default: apple and pear)")
    args = parser.parse_args()
    code = asyncio.run(main(args.address, args.task_queue, args.sku or ["apple", "pear"]))
    exit_past_the_sdk(code)
