"""The benchmark's independent baseline: a booking saga written the way the
well-known sample writes one, and a worker with the SDK's defaults.

The workflow books car, hotel and flight one after another with
``execute_activity``, appends each undo's name to a list *before* its step,
and on any exception runs the undos in reverse and **returns** a string (it
never fails). It calls our activities by name against the same providers, so
the only differences from ours are the workflow's shape and the worker's
settings: the strict sandbox, five pollers, the default cache. Its one
departure from the SDK's defaults is the retry policy that lets a provider's
refusal end a step (``REFUSALS_END_A_STEP``), which every caller of our
activities needs.

``python -m bench.seed_style --task-queue Q`` runs its worker (TEMPORAL_ADDRESS
and PROVIDERS_URL from the environment). Never used outside the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client

with workflow.unsafe.imports_passed_through():
    from bench.activity_inputs import REFUSALS_END_A_STEP, cancel_request, reserve_request
    from trip.models import BookingRequest
    from trip.steps import STEPS, Step

WORKFLOW_NAME = "SeedStyleBooking"
TIMEOUT = timedelta(seconds=10)


@workflow.defn(name=WORKFLOW_NAME)
class SeedStyleBooking:
    @workflow.run
    async def run(self, req: BookingRequest) -> str:
        booking_id = workflow.info().workflow_id
        compensations: list[Step] = []
        try:
            for step in STEPS:
                compensations.append(step)
                await workflow.execute_activity(
                    step.book,
                    reserve_request(req, booking_id, step.kind),
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=REFUSALS_END_A_STEP,
                )
            return "Voyage booked"
        except Exception:
            for step in reversed(compensations):
                try:
                    await workflow.execute_activity(
                        step.undo,
                        cancel_request(req, booking_id, step.kind),
                        start_to_close_timeout=TIMEOUT,
                    )
                except Exception:
                    workflow.logger.exception("undo of %s failed", step.label)
            return "Voyage cancelled"


async def serve(task_queue: str) -> None:
    from temporalio.worker import Worker

    from activities import BookingActivities, make_http_client
    from bench.floor import FloorEmpty, FloorLocal, FloorNoop, FloorNoopSequential, floor_noop
    from wiring.codec import data_converter

    # The same converter (and encryption) as every client here: both sides pay for it.

    client = await Client.connect(os.environ["TEMPORAL_ADDRESS"], data_converter=data_converter())
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with make_http_client(os.environ["PROVIDERS_URL"]) as http:
        async with Worker(
            client,
            task_queue=task_queue,
            # The floor workflows (bench.floor) share this worker, so only the workflow differs.
            workflows=[SeedStyleBooking, FloorEmpty, FloorLocal, FloorNoop, FloorNoopSequential],
            activities=[*BookingActivities(http).all(), floor_noop],
        ):
            await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the seed-style baseline worker (benchmark only).")
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.task_queue))


if __name__ == "__main__":
    main()
