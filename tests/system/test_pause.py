"""Temporal's own operator tools (``temporal workflow pause``, ``temporal
activity pause``) on the dev server, with the real worker and providers: the
status page, the bookings list and the CLI keep answering and show Paused.

temporalio 1.35 cannot decode the server's PAUSED execution status (8), so
these tests are what keeps ``wiring.paused_status``'s raw describe and list honest.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowHandle

from saga import StepState
from tests.conftest import (
    ROOT,
    WAIT_S,
    ProviderService,
    WorkerProcess,
    make_request,
    stop_process,
    wait_for_saga_status,
    wait_until,
)
from tests.system.conftest import cli, log_in
from trip.models import Mode, RetryOverrides, Scenario
from trip.status import SagaStatus, StepView
from wiring.executions import PAUSED, Execution, WorkflowPaused, execution_status_name
from wiring.live_status import fetch_status
from wiring.local_stack import temporal_cli_path
from wiring.paused_status import describe_execution
from wiring.start import start_booking
from workflows.booking import BookingWorkflow

#: The car undo keeps retrying (every 0.2 s, 100 attempts) so an operator can pause it.
LONG_UNDO = RetryOverrides(initial_interval_s=0.2, backoff=1.0, max_interval_s=0.2, undo_max_attempts=100)


def temporal(client: Client, *args: str) -> str:
    """Run the Temporal CLI binary against the test's dev server."""
    cmd = [temporal_cli_path(), *args, "--address", client.service_client.config.target_host, "-n", client.namespace]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def worker(dev_client: Client, providers: ProviderService, task_queue: str) -> Iterator[WorkerProcess]:
    process = WorkerProcess(dev_client, providers.url, task_queue)
    yield process
    process.stop()


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    return app.test_client()


def test_status_names_include_the_ones_the_sdk_lacks() -> None:
    assert execution_status_name(1) == "RUNNING"
    assert execution_status_name(8) == PAUSED
    assert execution_status_name(99) == "STATUS_99"


async def start_paused(client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
    handle = await start_booking(client, make_request(Scenario.SLOW, Mode.SEQUENTIAL), task_queue=task_queue)
    temporal(client, "workflow", "pause", "--workflow-id", handle.id, "--reason", "test")
    return handle


async def test_temporalio_still_cannot_describe_list_or_query_a_paused_workflow(
    dev_client: Client, worker: WorkerProcess, task_queue: str
) -> None:
    """The defect the raw helpers work around. When this fails, the SDK has
    learnt the PAUSED status, and ``describe_execution``/``list_executions``
    could go back to ``handle.describe()``/``client.list_workflows()``."""
    handle = await start_paused(dev_client, task_queue)
    try:
        with pytest.raises(ValueError, match="8 is not a valid WorkflowExecutionStatus"):
            await handle.describe()
        with pytest.raises(ValueError, match="8 is not a valid WorkflowExecutionStatus"):
            await handle.query(BookingWorkflow.status)
        with pytest.raises(ValueError, match="8 is not a valid WorkflowExecutionStatus"):
            _ = [wf async for wf in dev_client.list_workflows(f'WorkflowId = "{handle.id}"')]
    finally:
        temporal(dev_client, "workflow", "unpause", "--workflow-id", handle.id)
    await handle.result()


PAUSED_BADGE = '<span class="badge badge-paused">Paused</span>'


async def list_row(web: FlaskClient, workflow_id: str, status: str = "") -> str:
    """The bookings list's row for one booking (visibility may lag a moment).

    ``status`` filters the list: the server lists running runs before closed ones,
    so a closed booking can fall off the first page behind other tests' runs.
    """
    listing = web.get("/bookings", query_string={"status": status} if status else None)
    assert listing.status_code == 200, listing.get_data(as_text=True)
    return next((r for r in listing.get_data(as_text=True).split("<tr>") if workflow_id in r), "")


class CliRun:
    """``run_workflow.py`` as a user runs it, its output read line by line."""

    def __init__(self, client: Client, task_queue: str, *args: str) -> None:
        env = dict(
            os.environ,
            TEMPORAL_ADDRESS=client.service_client.config.target_host,
            TEMPORAL_NAMESPACE=client.namespace,
        )
        self.proc = subprocess.Popen(
            [sys.executable, "run_workflow.py", "--task-queue", task_queue, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float = 2 * WAIT_S) -> str:
        # Only stops a hang: a busy machine (the suite runs in parallel) can take a while to start a CLI.
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(f"the CLI never printed {prefix!r}; it printed: {self.seen}") from None
            self.seen.append(line)
            if line.strip().startswith(prefix):
                return line


async def test_a_paused_booking_shows_paused_on_every_page_and_in_the_cli_then_finishes(
    dev_client: Client, worker: WorkerProcess, task_queue: str, web: FlaskClient
) -> None:
    cli = CliRun(dev_client, task_queue, "--scenario", "slow", "--mode", "sequential")
    try:
        workflow_id = cli.wait_for("Booking ").split()[1]
        temporal(dev_client, "workflow", "pause", "--workflow-id", workflow_id, "--reason", "test")

        # The CLI keeps watching and says why the steps stopped moving.
        assert cli.wait_for("Paused in Temporal").strip() == "Paused in Temporal: test"
        assert cli.proc.poll() is None

        handle = dev_client.get_workflow_handle(workflow_id)
        execution = await describe_execution(dev_client, workflow_id)
        assert (execution.status, execution.paused, execution.closed) == (PAUSED, True, False)
        assert execution.pause_reason == "test"
        with pytest.raises(WorkflowPaused):
            await fetch_status(dev_client, handle)

        page = web.get(f"/bookings/{workflow_id}")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        badge = re.search(r'<span id="paused"([^>]*)>Paused</span>', html)
        assert badge and "hidden" not in badge.group(1) and 'title="test"' in badge.group(1)
        assert "Paused in Temporal (test)" in html

        data = web.get(f"/bookings/{workflow_id}/status").get_json()
        assert (data["paused"], data["pause_reason"], data["temporal_status"]) == (True, "test", PAUSED)
        assert (data["closed"], data["status"]) == (False, "RUNNING")

        log_in(web)  # started from the CLI: only an operator's list shows it
        await wait_until(
            lambda: list_row(web, workflow_id), lambda row: PAUSED_BADGE in row, what="the list to say Paused"
        )

        temporal(dev_client, "workflow", "unpause", "--workflow-id", workflow_id)
        cli.wait_for("Unpaused in Temporal")
        assert cli.wait_for("Outcome:").strip() == "Outcome: COMPLETED"
        assert cli.proc.wait(timeout=30) == 0

        data = web.get(f"/bookings/{workflow_id}/status").get_json()
        assert (data["status"], data["closed"], data["paused"], data["temporal_status"]) == (
            "COMPLETED",
            True,
            False,
            "COMPLETED",
        )
        row = await wait_until(
            lambda: list_row(web, workflow_id, "COMPLETED"),
            lambda row: "COMPLETED" in row,
            what="the list to say COMPLETED",
        )
        assert PAUSED_BADGE not in row
    finally:
        stop_process(cli.proc)


def car(steps: list[StepView]) -> StepView:
    return next(s for s in steps if s.name == "book_car")


async def test_a_paused_undo_shows_as_paused_and_finishes_once_unpaused(
    dev_client: Client, worker: WorkerProcess, providers: ProviderService, task_queue: str, web: FlaskClient
) -> None:
    req = make_request(Scenario.CAR_CANCEL_OUTAGE, Mode.SEQUENTIAL, retry=LONG_UNDO)
    handle = await start_booking(
        dev_client, req, workflow_id=f"trip-pause-{uuid.uuid4().hex[:8]}", task_queue=task_queue
    )
    await wait_until(
        lambda: fetch_status(dev_client, handle),
        lambda s: car(s.steps).state is StepState.COMPENSATING and car(s.steps).undo_attempts >= 2,
        what="the car undo to be retrying",
    )
    assert not car((await fetch_status(dev_client, handle)).steps).paused

    temporal(dev_client, "activity", "pause", "--workflow-id", handle.id, "--activity-id", "undo-book_car")
    status = await wait_until(
        lambda: fetch_status(dev_client, handle), lambda s: car(s.steps).paused, what="the undo to show paused"
    )
    assert car(status.steps).state is StepState.COMPENSATING
    assert status.status is SagaStatus.COMPENSATING

    data = web.get(f"/bookings/{handle.id}/status").get_json()
    assert [s["paused"] for s in data["steps"] if s["name"] == "book_car"] == [True]
    assert data["paused"] is False  # the activity is paused, not the workflow
    html = web.get(f"/bookings/{handle.id}").get_data(as_text=True)
    assert '<span class="state state-paused">paused</span>' in html

    # Wait until the server holds the undo (not just "pause requested" while an attempt runs).
    await wait_until(
        lambda: describe_execution(dev_client, handle.id),
        lambda e: undo_state(e) == PendingActivityState.PENDING_ACTIVITY_STATE_PAUSED,
        what="undo-book_car to be held paused",
    )
    attempts = car((await fetch_status(dev_client, handle)).steps).undo_attempts

    # A paused undo is not retried even once the provider is back. An absence
    # needs a window: the control's undo retrying twice more is one, measured
    # in retries the worker made rather than in seconds, so load cannot shrink it.
    # The control is the same booking, never paused, on the same worker.
    control = await start_booking(
        dev_client, req, workflow_id=f"trip-pause-control-{uuid.uuid4().hex[:8]}", task_queue=task_queue
    )
    control_status = await wait_until(
        lambda: fetch_status(dev_client, control),
        lambda s: car(s.steps).state is StepState.COMPENSATING and car(s.steps).undo_attempts >= 1,
        what="the control's undo to be retrying",
    )
    providers.lift_outage(handle.id, "car")
    await wait_until(
        lambda: fetch_status(dev_client, control),
        lambda s: car(s.steps).undo_attempts >= car(control_status.steps).undo_attempts + 2,
        what="the control's undo to retry twice more",
    )
    status = await fetch_status(dev_client, handle)
    assert car(status.steps).paused and car(status.steps).undo_attempts == attempts
    assert providers.active_kinds(handle.id) == ["car"]

    # Once an operator unpauses it, the rollback completes.
    temporal(dev_client, "activity", "unpause", "--workflow-id", handle.id, "--activity-id", "undo-book_car")
    final = await wait_for_saga_status(handle, SagaStatus.ROLLED_BACK)
    assert car(final.steps).state is StepState.COMPENSATED and not car(final.steps).paused
    assert providers.active_kinds(handle.id) == []

    # ... as the control's does once its provider is back, never paused.
    providers.lift_outage(control.id, "car")
    await wait_for_saga_status(control, SagaStatus.ROLLED_BACK)
    assert providers.active_kinds(control.id) == []


def undo_state(execution: Execution) -> int | None:
    return next((p.state for p in execution.pending_activities if p.activity_id == "undo-book_car"), None)


def csrf_of(web: FlaskClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', web.get(path).get_data(as_text=True))
    assert found
    return found.group(1)


async def test_updates_on_a_paused_booking_say_paused_and_it_stays_on_attention(
    dev_client: Client, worker: WorkerProcess, task_queue: str, web: FlaskClient
) -> None:
    req = make_request(Scenario.CAR_CANCEL_BROKEN, Mode.SEQUENTIAL)
    handle = await start_booking(
        dev_client, req, workflow_id=f"trip-paused-{uuid.uuid4().hex[:8]}", task_queue=task_queue
    )
    await wait_for_saga_status(handle, SagaStatus.NEEDS_ATTENTION)
    temporal(dev_client, "workflow", "pause", "--workflow-id", handle.id, "--reason", "looking into it")
    log_in(web)
    try:
        # The web app: a 409 that says so, not a 500.
        page = f"/bookings/{handle.id}"
        for action, form in [("resolve", {"step": "book_car", "note": "released by phone"}), ("retry", {})]:
            answer = web.post(f"{page}/{action}", data={"csrf_token": csrf_of(web, page), **form})
            assert answer.status_code == 409, (action, answer.status_code)
            assert "paused in Temporal; unpause it first" in answer.get_data(as_text=True)

        # The CLI: exit 2 and the reason, not "Temporal unreachable" (4).
        common = ["--workflow-id", handle.id, "--operator", "ops", "--note", "x"]
        done = cli(dev_client, "resolve", *common, "--step", "book_car", "--json", script="run_operator.py")
        assert done.returncode == 2, done.stdout + done.stderr
        answer = json.loads(done.stdout)
        assert answer["error"] == "paused" and "paused in Temporal; unpause it first" in answer["message"]

        # Still waiting for an operator, so still on /attention.
        row = await wait_until(
            lambda: asyncio.to_thread(lambda: web.get("/attention").get_data(as_text=True)),
            lambda html: handle.id in html,
            what="the paused booking on /attention",
        )
        assert "paused in Temporal" in row
    finally:
        temporal(dev_client, "workflow", "unpause", "--workflow-id", handle.id)

    # Unpaused, it can be resolved; afterwards the CLI says how it ended, not "no running booking".
    assert cli(dev_client, "resolve", *common, "--step", "book_car", script="run_operator.py").returncode == 0
    await wait_for_saga_status(handle, SagaStatus.ROLLED_BACK)
    again = cli(dev_client, "resolve", *common, "--step", "book_car", script="run_operator.py")
    assert again.returncode == 2
    assert "has already ended, ROLLED_BACK" in again.stderr and "no running booking" not in again.stderr
    missing = cli(
        dev_client, "retry", "--workflow-id", "trip-never", "--operator", "o", "--note", "x", script="run_operator.py"
    )
    assert (missing.returncode, missing.stderr.strip()) == (2, "error: no booking 'trip-never'")


async def test_the_travellers_answer_to_a_paused_held_trip_is_a_409(
    dev_client: Client, worker: WorkerProcess, task_queue: str, web: FlaskClient
) -> None:
    req = make_request(Scenario.HAPPY, Mode.SEQUENTIAL).model_copy(update={"confirm_within": timedelta(minutes=10)})
    handle = await start_booking(
        dev_client, req, workflow_id=f"trip-held-{uuid.uuid4().hex[:8]}", task_queue=task_queue
    )
    await wait_for_saga_status(handle, SagaStatus.AWAITING_CONFIRMATION)
    temporal(dev_client, "workflow", "pause", "--workflow-id", handle.id, "--reason", "test")
    log_in(web)
    try:
        page = f"/bookings/{handle.id}"
        for action in ("confirm", "decline"):
            answer = web.post(f"{page}/{action}", data={"csrf_token": csrf_of(web, page)})
            assert answer.status_code == 409, (action, answer.status_code)
            assert "paused in Temporal; unpause it first" in answer.get_data(as_text=True)
    finally:
        temporal(dev_client, "workflow", "unpause", "--workflow-id", handle.id)
    await handle.cancel()
