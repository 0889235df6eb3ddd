"""Worker Versioning on the dev server, with real worker processes of several builds.

Each test owns a Worker Deployment and a task queue of its own on the
session's dev server, and runs builds of the booking workflow as separate
``tests.system.versioned_worker`` processes: ``v1`` is the shipped workflow,
the others are changed copies (``tests.system.versioned_workflows``). Builds
are made current and ramped with the ``temporal worker deployment`` commands
an operator runs, and every claim about which build ran a run is read from
``temporal workflow describe`` and from the run's history (the deployment
version on each WorkflowTaskCompleted event).

The figures docs/deploying.md quotes (how long the old build must stay up)
are printed with ``-s``; no assertion depends on time.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle

from tests.conftest import ROOT, WAIT_S, ProviderService, make_request, wait_for_saga_status, wait_until
from tests.system.conftest import temporal_cli
from tests.system.versioned_worker import READY
from tests.system.versioned_workflows import CHECK_FARE, V3_BUG
from trip.models import Mode, Scenario
from trip.status import SagaStatus
from wiring import updates
from wiring.local_stack import stop_process
from wiring.outcome import Outcome, await_outcome
from wiring.start import start_booking

#: Bookings started at a 50 % ramp: both builds are missed with probability 2**-19.
RAMPED_BOOKINGS = 20
#: Long enough that a held booking stays held for the whole test.
HOLD = timedelta(hours=1)

T = TypeVar("T")


async def bounded(waiting: Awaitable[T], what: str) -> T:
    """Await a run's answer, failing (not hanging) if it never comes: a run stuck
    in workflow-task retries answers neither an Update nor a result request."""
    try:
        return await asyncio.wait_for(waiting, 2 * WAIT_S)
    except TimeoutError:
        raise AssertionError(f"timed out after {2 * WAIT_S:g}s waiting for {what}") from None


async def ended(client: Client, *handles: WorkflowHandle[Any, Any]) -> list[Outcome]:
    """How each run ended; an AssertionError if one of them does not end."""
    return list(await asyncio.gather(*(bounded(await_outcome(client, h), f"{h.id} to close") for h in handles)))


class VersionedWorker:
    """One build of one Worker Deployment as its own process; ``ready()`` once it polls."""

    def __init__(self, client: Client, providers: ProviderService, deployment: str, queue: str, variant: str) -> None:
        self.build_id = variant
        env = dict(os.environ)
        env["TEMPORAL_ADDRESS"] = client.service_client.config.target_host
        env["TEMPORAL_NAMESPACE"] = client.namespace
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.system.versioned_worker",
                *("--variant", variant, "--build-id", variant, "--deployment", deployment),
                *("--task-queue", queue, "--providers-url", providers.url),
            ],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._ready = threading.Event()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            if READY in line:
                self._ready.set()

    async def ready(self) -> None:
        await wait_until(
            lambda: self._ready.is_set() or self.proc.poll() is not None,
            what=f"worker {self.build_id} to start",
            timeout=60,
        )
        assert self._ready.is_set(), f"worker {self.build_id} exited:\n" + "".join(self.log)

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class Deployment:
    """A test's own Worker Deployment and task queue, driven with the Temporal CLI."""

    client: Client
    providers: ProviderService
    name: str
    queue: str

    async def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(temporal_cli, self.client, *args)

    async def cli_json(self, *args: str) -> Any:
        done = await self.cli(*args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    async def set_current(self, build_id: str) -> None:
        """``set-current-version``, retried until the server has seen the version poll."""
        await self._until_accepted("set-current-version", "--build-id", build_id)

    async def set_ramping(self, build_id: str, percentage: int) -> None:
        await self._until_accepted("set-ramping-version", "--build-id", build_id, "--percentage", str(percentage))

    async def stop_ramping(self, build_id: str) -> None:
        await self._until_accepted("set-ramping-version", "--build-id", build_id, "--delete")

    async def _until_accepted(self, command: str, *args: str) -> None:
        await wait_until(
            lambda: self.cli("worker", "deployment", command, "--deployment-name", self.name, *args, "-y"),
            lambda done: done.returncode == 0,
            what=f"`temporal worker deployment {command} {' '.join(args)}` to be accepted",
        )

    async def drainage(self, build_id: str) -> str | None:
        info = await self.cli_json(
            "worker", "deployment", "describe-version", "--deployment-name", self.name, "--build-id", build_id
        )
        status: str | None = (info.get("drainageInfo") or {}).get("drainageStatus")
        return status

    async def wait_drained(self, build_id: str) -> None:
        await wait_until(
            lambda: self.drainage(build_id), lambda s: s == "drained", what=f"{build_id} to be reported drained"
        )

    async def versioning(self, workflow_id: str) -> dict[str, Any]:
        """``versioningInfo`` of ``temporal workflow describe``: behaviour, version, override."""
        described = await self.cli_json("workflow", "describe", "-w", workflow_id)
        info: dict[str, Any] = described["workflowExecutionInfo"].get("versioningInfo") or {}
        return info

    async def pinned_to(self, workflow_id: str) -> str | None:
        info = await self.versioning(workflow_id)
        if info.get("behavior") != "VERSIONING_BEHAVIOR_PINNED":
            return None
        build: str | None = (info.get("deploymentVersion") or {}).get("buildId")
        return build

    async def book(self, scenario: Scenario = Scenario.HAPPY, **update: Any) -> WorkflowHandle[Any, Any]:
        req = make_request(scenario, update.pop("mode", Mode.PARALLEL)).model_copy(update=update)
        return await start_booking(self.client, req, task_queue=self.queue)


@pytest.fixture
def deployment(dev_client: Client, providers: ProviderService) -> Deployment:
    unique = uuid.uuid4().hex[:10]
    return Deployment(dev_client, providers, f"booking-{unique}", f"tq-versioning-{unique}")


@contextmanager
def workers(deployment: Deployment, *variants: str) -> Iterator[dict[str, VersionedWorker]]:
    started = {
        v: VersionedWorker(deployment.client, deployment.providers, deployment.name, deployment.queue, v)
        for v in variants
    }
    try:
        yield started
    finally:
        for worker in started.values():
            worker.stop()


# --- reading histories ---------------------------------------------------------


@dataclass
class RunHistory:
    events: list[HistoryEvent]

    def builds(self, after: EventType.ValueType | None = None) -> list[str]:
        """The build id of every completed workflow task, in order (``after`` the first such event)."""
        start = 0
        if after is not None:
            start = next(i for i, e in enumerate(self.events) if e.event_type == after)
        return [
            e.workflow_task_completed_event_attributes.deployment_version.build_id
            for e in self.events[start:]
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        ]

    def count(self, event_type: EventType.ValueType, after: EventType.ValueType | None = None) -> int:
        start = 0
        if after is not None:
            start = next(i for i, e in enumerate(self.events) if e.event_type == after)
        return sum(1 for e in self.events[start:] if e.event_type == event_type)

    def activities(self) -> list[str]:
        return [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in self.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]

    def task_failures(self) -> list[HistoryEvent]:
        return [e for e in self.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]


async def history(handle: WorkflowHandle[Any, Any]) -> RunHistory:
    return RunHistory([e async for e in handle.fetch_history_events()])


def ran_only_on(run: RunHistory, build_id: str) -> bool:
    builds = run.builds()
    return bool(builds) and set(builds) == {build_id}


async def resolve_car(handle: WorkflowHandle[Any, Any]) -> None:
    """The operator says the stuck car reservation was cancelled by hand."""
    await updates.resolve(handle, step="book_car", operator="ops", note="cancelled by phone")


def seconds_since(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


# --- item: a new build beside runs that wait on the old one ---------------------------


async def test_v2_takes_new_bookings_while_waiting_runs_finish_on_v1(deployment: Deployment) -> None:
    """v1 current, v2 (replay-incompatible) beside it: a 50 % ramp reaches both; once v2
    is current, new bookings run on v2 while a held, a NEEDS_ATTENTION and an in-flight
    v1 booking each finish on v1 without one workflow-task failure, and v1 drains."""
    dep = deployment
    with workers(dep, "v1", "v2") as started:
        await asyncio.gather(*(w.ready() for w in started.values()))
        await dep.set_current("v1")

        # A rollout's ramp: at 50 %, new bookings reach both builds.
        await dep.set_ramping("v2", 50)
        ramped = await asyncio.gather(*(dep.book() for _ in range(RAMPED_BOOKINGS)))
        outcomes = await ended(dep.client, *ramped)
        assert {o.status for o in outcomes} == {SagaStatus.COMPLETED}
        by_build: dict[str, int] = {}
        for handle in ramped:
            run = await history(handle)
            (build,) = set(run.builds())
            by_build[build] = by_build.get(build, 0) + 1
            # Each build ran its own code: only v2 checks the fare.
            assert (CHECK_FARE in run.activities()) == (build == "v2"), (build, run.activities())
        assert set(by_build) == {"v1", "v2"}, by_build
        print(f"\n[versioning] {RAMPED_BOOKINGS} bookings at a 50 % ramp of v2: {by_build}")
        await dep.stop_ramping("v2")

        # Three v1 runs: (a) held for the traveller, (b) waiting for an operator, (c) in flight.
        held = await dep.book(confirm_within=HOLD)
        stuck = await dep.book(Scenario.CAR_CANCEL_BROKEN)
        await wait_for_saga_status(held, SagaStatus.AWAITING_CONFIRMATION)
        await wait_for_saga_status(stuck, SagaStatus.NEEDS_ATTENTION)
        # Started last, so that its three 1.5 s calls in a row are still going on at the switch.
        slow = await dep.book(Scenario.SLOW, mode=Mode.SEQUENTIAL)
        for handle in (held, stuck, slow):
            assert await wait_until(lambda h=handle: dep.pinned_to(h.id), what=f"{handle.id} pinned") == "v1"

        switched = time.monotonic()
        await dep.set_current("v2")
        assert (await slow.describe()).status.name == "RUNNING", "the slow booking ended before the switch"

        fresh = await dep.book()
        assert (await ended(dep.client, fresh))[0].status is SagaStatus.COMPLETED
        info = await dep.versioning(fresh.id)
        assert info["behavior"] == "VERSIONING_BEHAVIOR_PINNED"
        assert info["deploymentVersion"] == {"deploymentName": dep.name, "buildId": "v2"}
        fresh_run = await history(fresh)
        assert ran_only_on(fresh_run, "v2") and fresh_run.activities()[0] == CHECK_FARE

        await bounded(updates.decide(held, confirm=True), "the held booking to take the confirm")
        await bounded(resolve_car(stuck), "the stuck booking to take the resolve")
        closed = await ended(dep.client, held, stuck, slow)
        last_v1_run_closed = time.monotonic()
        assert [o.status for o in closed] == [SagaStatus.COMPLETED, SagaStatus.ROLLED_BACK, SagaStatus.COMPLETED]
        assert closed[0].result is not None and closed[0].result.ticket is not None
        for handle in (held, stuck, slow):
            run = await history(handle)
            assert ran_only_on(run, "v1"), (handle.id, run.builds())
            assert run.task_failures() == [], handle.id
            assert CHECK_FARE not in run.activities()

        await dep.wait_drained("v1")
        print(
            f"[versioning] v2 made current -> last pinned v1 run closed: {last_v1_run_closed - switched:.1f} s;"
            f" -> v1 reported drained: {seconds_since(switched)}"
        )


# --- item: a bad deploy, and the way back ------------------------------------------


async def test_a_bad_build_stalls_without_harm_and_its_runs_recover_on_a_fixed_build(deployment: Deployment) -> None:
    """v3 raises after booking the car. Its runs stall in workflow-task retries, pinned
    to v3, holding one car each and failing nothing. Making v2 current again saves new
    bookings, and a run whose first task failed (pinned to nothing), but not the pinned
    ones; a fixed build plus a versioning override (by query) does."""
    dep = deployment
    with workers(dep, "v2", "v3", "v3-fixed") as started:
        await asyncio.gather(*(w.ready() for w in started.values()))
        await dep.set_current("v2")
        await dep.set_current("v3")
        bad = [await dep.book(mode=Mode.SEQUENTIAL) for _ in range(3)]
        # v3 fails this one's very first task: it is pinned to no build.
        unpinned = await dep.book(mode=Mode.PARALLEL)

        async def stalled(handle: WorkflowHandle[Any, Any]) -> bool:
            run = await history(handle)
            return bool(run.task_failures())

        for handle in bad:
            await wait_until(lambda h=handle: stalled(h), what=f"{handle.id} to fail a workflow task")
            run = await history(handle)
            failure = run.task_failures()[0].workflow_task_failed_event_attributes.failure
            assert V3_BUG in str(await dep.client.data_converter.decode_failure(failure))
            assert (await handle.describe()).status.name == "RUNNING"
            assert await dep.pinned_to(handle.id) == "v3"
            # Retried tasks replay; they do not book again: one car, nothing else.
            assert [(r["kind"], r["status"]) for r in dep.providers.reservations(handle.id)] == [("car", "active")]
        await wait_until(lambda: stalled(unpinned), what=f"{unpinned.id} to fail a workflow task")
        assert await dep.pinned_to(unpinned.id) is None
        assert dep.providers.reservations(unpinned.id) == []

        # Roll back: v2 current again. New bookings are safe at once...
        rolled_back = time.monotonic()
        await dep.set_current("v2")
        fresh = await dep.book(mode=Mode.SEQUENTIAL)
        assert (await ended(dep.client, fresh))[0].status is SagaStatus.COMPLETED
        assert ran_only_on(await history(fresh), "v2")
        # ...but the runs v3 started stay pinned to v3, still retrying and failing nothing.
        for handle in bad:
            assert await dep.pinned_to(handle.id) == "v3"
            description = await handle.describe()
            assert description.status.name == "RUNNING"
            pending = description.raw_description.pending_workflow_task
            assert pending.attempt >= 2, pending

        # Fix forward: pin every run of v3 to the fixed build, by query.
        query = f'TemporalWorkerDeploymentVersion="{dep.name}:v3" AND ExecutionStatus="Running"'
        await wait_until(
            lambda: dep.cli_json("workflow", "count", "--query", query),
            lambda counted: int(counted.get("count", 0)) == len(bad),
            what="visibility to list the stalled runs",
        )
        moved = await dep.cli(
            "workflow",
            "update-options",
            *("--query", query, "--versioning-override-behavior", "pinned"),
            *("--versioning-override-deployment-name", dep.name, "--versioning-override-build-id", "v3-fixed"),
            "--yes",
        )
        assert moved.returncode == 0, moved.stderr
        updated = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED
        outcomes = await ended(dep.client, unpinned, *bad)
        assert {o.status for o in outcomes} == {SagaStatus.COMPLETED}
        recovered = seconds_since(rolled_back)
        # The run no task of which had completed went to the current build, v2, with no override.
        unpinned_run = await history(unpinned)
        assert ran_only_on(unpinned_run, "v2") and unpinned_run.task_failures()
        assert unpinned_run.count(updated) == 0
        for handle in bad:
            run = await history(handle)
            assert set(run.builds(after=updated)) == {"v3-fixed"}, run.builds()
            assert run.count(EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED, after=updated) == 0
            # No reservation leaked or doubled: exactly one of each, all standing.
            rows = dep.providers.reservations(handle.id)
            assert sorted((r["kind"], r["status"]) for r in rows) == [
                ("car", "active"),
                ("flight", "active"),
                ("hotel", "active"),
            ]
        # With its runs moved off, v3 has nothing pinned to it: its workers can stop.
        await dep.wait_drained("v3")
        print(f"\n[versioning] bad deploy: v2 current again -> every v3 run completed on v3-fixed: {recovered}")


# --- item: moving one waiting run to a new build ----------------------------------------


async def test_an_operator_moves_one_waiting_run_to_a_compatible_build(deployment: Deployment) -> None:
    """A v1 run waiting in NEEDS_ATTENTION is moved with ``temporal workflow update-options``
    to v2-patched (the change behind ``workflow.patched``); v1's worker stops; the
    operator's resolve then runs on v2-patched and the run closes."""
    dep = deployment
    with workers(dep, "v1", "v2-patched") as started:
        await asyncio.gather(*(w.ready() for w in started.values()))
        await dep.set_current("v1")
        stuck = await dep.book(Scenario.CAR_CANCEL_BROKEN)
        await wait_for_saga_status(stuck, SagaStatus.NEEDS_ATTENTION)
        assert await dep.pinned_to(stuck.id) == "v1"
        switched = time.monotonic()
        await dep.set_current("v2-patched")

        moved = await dep.cli(
            "workflow",
            "update-options",
            *("--workflow-id", stuck.id, "--versioning-override-behavior", "pinned"),
            *("--versioning-override-deployment-name", dep.name, "--versioning-override-build-id", "v2-patched"),
        )
        assert moved.returncode == 0, moved.stderr
        info = await dep.versioning(stuck.id)
        assert info["versioningOverride"]["pinned"]["version"] == {"deploymentName": dep.name, "buildId": "v2-patched"}
        # Nothing is pinned to v1 any more: it drains, and its worker can go.
        await dep.wait_drained("v1")
        drained = seconds_since(switched)
        started["v1"].stop()

        await bounded(resolve_car(stuck), "the moved booking to take the resolve")
        assert (await ended(dep.client, stuck))[0].status is SagaStatus.ROLLED_BACK
        run = await history(stuck)
        updated = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED
        assert set(run.builds()) == {"v1", "v2-patched"}
        assert run.builds(after=updated) and set(run.builds(after=updated)) == {"v2-patched"}
        assert run.task_failures() == []
        # The patched build replayed v1's history and skipped its new step for this run.
        assert CHECK_FARE not in run.activities()
        print(f"\n[versioning] one waiting run moved: v2-patched current -> v1 drained: {drained}")
