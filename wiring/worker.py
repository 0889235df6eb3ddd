"""Builds and runs a booking worker. ``run_worker.py`` is its command line.

A worker holds no state of its own (sagas live in Temporal, bookings in the
providers), so any number of them can serve one task queue.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

from temporalio.client import Client
from temporalio.worker import (
    PollerBehavior,
    PollerBehaviorAutoscaling,
    PollerBehaviorSimpleMaximum,
    Worker,
    WorkerDeploymentConfig,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import BookingActivities, make_http_client
from trip import TASK_QUEUE
from wiring.metrics import SagaMetricsInterceptor
from wiring.settings import WorkerSettings
from wiring.tracing import instrument_http_client
from workflows.booking import BookingWorkflow
from workflows.policies import undo_task_queue

log = logging.getLogger("booking.worker")

#: How long in-flight activities get to finish after SIGINT/SIGTERM.
DEFAULT_GRACE = timedelta(seconds=10)


def workflow_runner(strict_sandbox: bool = False) -> SandboxedWorkflowRunner:
    """The sandbox our workflows run in.

    The SDK re-imports a workflow's module for every new run, to isolate module
    state; that costs about 7 ms of worker CPU per saga here (``make bench``).
    Our ``workflows`` package, the ``saga`` core and the ``trip`` vocabulary
    they import keep no module state and do no I/O at import, so by default
    they are passed through and imported once. ``strict_sandbox`` restores the
    SDK default, which also catches non-deterministic calls made from workflow
    code; the test suite runs the booking workflow that way too.
    """
    if strict_sandbox:
        return SandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows", "saga", "trip")
    )


@dataclass(frozen=True)
class WorkerTuning:
    """The knobs ``make bench`` measures; the defaults are what we ship."""

    #: Activities run at once (the SDK's default). Provider calls are I/O-bound,
    #: but each open call holds memory; ``make bench`` measures 200 against 100.
    max_concurrent_activities: int = 100
    #: Workflows kept in memory between tasks; 0 replays the history every task.
    max_cached_workflows: int = 1000
    #: Re-import the workflow module for every run (the SDK default).
    strict_sandbox: bool = False
    #: Let the SDK scale task pollers from server feedback instead of a fixed
    #: five. Off until ``make bench`` shows it pays for its extra open polls
    #: (docs/benchmarks.md has the latest figures).
    poller_autoscaling: bool = False
    #: Undo activities run at once on the undo queue, in slots of their own:
    #: a rollback never waits for a booking's slot (``make bench``:
    #: rollback_under_backlog).
    max_concurrent_undos: int = 20


class BookingWorker:
    """The two Workers of one booking worker process: the booking queue (workflows
    and every activity) and its undo queue (``workflows.policies.undo_task_queue``:
    undo activities only, in their own slots). Run it with ``async with``."""

    def __init__(self, main: Worker, undo: Worker) -> None:
        self.main = main
        self.undo = undo

    async def __aenter__(self) -> BookingWorker:
        await self.undo.__aenter__()
        try:
            await self.main.__aenter__()
        except BaseException:
            await self.undo.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Both drain at once: in-flight undos get the same grace as bookings.
        await asyncio.gather(self.main.__aexit__(exc_type, exc, tb), self.undo.__aexit__(exc_type, exc, tb))


def build_worker(
    client: Client,
    activities: BookingActivities,
    *,
    task_queue: str = TASK_QUEUE,
    graceful_shutdown_timeout: timedelta = DEFAULT_GRACE,
    tuning: WorkerTuning = WorkerTuning(),
    deployment: WorkerDeploymentConfig | None = None,
) -> BookingWorker:
    """``deployment``: the Worker Deployment version this worker polls as
    (``wiring.versioning.deployment_config``), on both queues; ``None`` polls
    unversioned, as the in-process test workers and the time-skipping server do."""
    # The SDK's default is a fixed five pollers per kind of task.
    pollers: PollerBehavior = (
        PollerBehaviorAutoscaling() if tuning.poller_autoscaling else PollerBehaviorSimpleMaximum(maximum=5)
    )
    main = Worker(
        client,
        task_queue=task_queue,
        workflows=[BookingWorkflow],
        activities=activities.all(),
        workflow_runner=workflow_runner(tuning.strict_sandbox),
        graceful_shutdown_timeout=graceful_shutdown_timeout,
        max_concurrent_activities=tuning.max_concurrent_activities,
        max_cached_workflows=tuning.max_cached_workflows,
        # After a worker dies its sticky queue is useless; fall back to the
        # shared queue sooner than the 10 s default so another worker resumes.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=5),
        workflow_task_poller_behavior=pollers,
        activity_task_poller_behavior=pollers,
        # Saga-level metrics (wiring.metrics); tracing comes with the client's interceptors.
        interceptors=[SagaMetricsInterceptor()],
        # The Worker Deployment version this worker polls as (wiring.versioning);
        # None: an unversioned worker.
        deployment_config=deployment,
    )
    undo = Worker(
        client,
        task_queue=undo_task_queue(task_queue),
        activities=[a for a in activities.all() if a.__name__.startswith("undo_")],
        graceful_shutdown_timeout=graceful_shutdown_timeout,
        max_concurrent_activities=tuning.max_concurrent_undos,
        activity_task_poller_behavior=pollers,
        interceptors=[SagaMetricsInterceptor()],
        deployment_config=deployment,
    )
    return BookingWorker(main, undo)


def describe_deployment(deployment: WorkerDeploymentConfig | None) -> str:
    """How the start-up line names what this worker polls as."""
    if deployment is None or not deployment.use_worker_versioning:
        return "unversioned"
    version = deployment.version
    return f"deployment {version.deployment_name!r} build id {version.build_id!r}"


async def run(
    client: Client,
    *,
    task_queue: str = TASK_QUEUE,
    providers_url: str | None = None,
    graceful_shutdown_timeout: timedelta = DEFAULT_GRACE,
    stop: asyncio.Event | None = None,
    tuning: WorkerTuning = WorkerTuning(),
    deployment: WorkerDeploymentConfig | None = None,
) -> None:
    providers_url = providers_url or WorkerSettings.load().providers_url
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with make_http_client(providers_url, max_connections=tuning.max_concurrent_activities) as http:
        instrument_http_client(http)
        worker = build_worker(
            client,
            BookingActivities(http),
            task_queue=task_queue,
            graceful_shutdown_timeout=graceful_shutdown_timeout,
            tuning=tuning,
            deployment=deployment,
        )
        async with worker:
            log.info(
                "worker ready: %s, task queues %r and %r on %s (namespace %s), providers at %s, %s",
                describe_deployment(deployment),
                task_queue,
                worker.undo.task_queue,
                client.service_client.config.target_host,
                client.namespace,
                providers_url,
                tuning,
            )
            await stop.wait()
            log.info(
                "shutting down: letting in-flight activities finish (up to %ss)",
                graceful_shutdown_timeout.total_seconds(),
            )
    log.info("worker stopped")
