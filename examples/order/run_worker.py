"""Run the order example's worker: ``python -m examples.order.run_worker``.

Start a dev server first (``temporal server start-dev``), then start an order
with ``python -m examples.order.run_workflow`` from another shell. The shop is
in memory in this process: restart the worker and the stock is full again.
"""

from __future__ import annotations

import argparse
import asyncio

from temporalio.client import Client
from temporalio.worker import Worker

from examples.order.activities import TASK_QUEUE, OrderActivities, Shop
from examples.order.run_workflow import exit_past_the_sdk
from examples.order.workflows import OrderWorkflow


async def main(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    acts = OrderActivities(Shop(stock={"apple": 10, "pear": 10, "plum": 10}))
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[OrderWorkflow],
        activities=[acts.reserve_stock, acts.release_stock, acts.charge_payment, acts.ship_order],
    )
    print(f"order worker polling {task_queue!r} on {address}; Ctrl-C stops it", flush=True)
    await worker.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="localhost:7233", help="Temporal frontend (default: %(default)s)")
    parser.add_argument("--task-queue", default=TASK_QUEUE, help="(default: %(default)s)")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.address, args.task_queue))
    except KeyboardInterrupt:
        pass
    exit_past_the_sdk(0)
