"""A versioned booking worker for the Worker Versioning tests: one build of one Worker Deployment.

``python -m tests.system.versioned_worker --variant v2 --build-id v2
--deployment D --task-queue Q --providers-url URL`` runs the shipped worker
(``wiring.worker.build_worker`` with ``wiring.versioning.deployment_config``),
except that the workflow class is the variant's
(``tests.system.versioned_workflows``) and the v2-like variants also register
the extra ``check_fare`` activity. The swap goes through the SDK's public
plugin hook on the client, so the worker itself is built exactly as
``run_worker.py`` builds it. It prints ``versioned worker ready`` on stderr
once it polls, and stops on SIGTERM. Connection: TEMPORAL_ADDRESS and
TEMPORAL_NAMESPACE, like every process here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from datetime import timedelta

from temporalio import activity
from temporalio.plugin import SimplePlugin

from activities import BookingActivities, make_http_client
from tests.system.versioned_workflows import CHECK_FARE, VARIANTS
from wiring.client import connect
from wiring.entry_point import run_entry_point
from wiring.versioning import deployment_config
from wiring.worker import build_worker

READY = "versioned worker ready"
#: The variants whose workflow calls ``check_fare``.
CHECKS_FARE = {"v2", "v2-patched", "v3", "v3-fixed"}

log = logging.getLogger("booking.versioned_worker")


@activity.defn(name=CHECK_FARE)
async def check_fare(booking_id: str) -> str:
    return f"fare checked for {booking_id}"


async def serve(args: argparse.Namespace) -> None:
    plugin = SimplePlugin(
        f"booking-{args.variant}",
        workflows=lambda _shipped: [VARIANTS[args.variant]],
        activities=[check_fare] if args.variant in CHECKS_FARE else None,
    )
    client = await connect(plugins=[plugin])
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with make_http_client(args.providers_url) as http:
        worker = build_worker(
            client,
            BookingActivities(http),
            task_queue=args.task_queue,
            graceful_shutdown_timeout=timedelta(seconds=1),
            deployment=deployment_config(args.build_id, args.deployment),
        )
        async with worker:
            log.warning("%s: %s build %s on %s", READY, args.deployment, args.build_id, args.task_queue)
            await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--build-id", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--providers-url", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    run_entry_point(main)
