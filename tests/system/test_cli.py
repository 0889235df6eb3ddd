"""``run_workflow.py`` against a running stack: what it prints and how it exits
when the id is taken, when it is interrupted, and which Web UI it links to."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from typing import Any

import pytest
from temporalio.client import Client

from saga import StepKind, StepState
from tests.conftest import ROOT, ProviderService, sigint_at_default, wait_until
from tests.system.conftest import FAST, cli, describe_or_none
from trip.status import OutstandingStep, StepView
from wiring.watch import outstanding_json, step_lines


def one_object(stdout: str) -> dict[str, Any]:
    """The single JSON object --json must print, and nothing else."""
    lines = stdout.splitlines()
    assert len(lines) == 1, f"stdout is not one line: {stdout!r}"
    obj: dict[str, Any] = json.loads(lines[0])
    return obj


async def test_a_reused_workflow_id_exits_2_and_names_the_existing_run(
    dev_client: Client, providers: ProviderService, worker_queue: str
) -> None:
    workflow_id = f"cli-reuse-{uuid.uuid4().hex[:8]}"
    first = cli(dev_client, "--workflow-id", workflow_id, "--task-queue", worker_queue, "--json", *FAST)
    assert first.returncode == 0, first.stderr
    again = cli(dev_client, "--workflow-id", workflow_id, "--task-queue", worker_queue, "--json", *FAST)
    assert again.returncode == 2
    assert "Traceback" not in again.stderr
    assert f"--workflow-id {workflow_id} is already used" in again.stderr and "COMPLETED" in again.stderr
    out = one_object(again.stdout)
    assert out["workflow_id"] == workflow_id and out["status"] == "BAD_INPUT"
    assert out["error"]["type"] == "WorkflowAlreadyStarted"
    assert out["error"]["existing"]["status"] == "COMPLETED"
    assert out["error"]["existing"]["booking_status"] == "COMPLETED"
    assert out["web_ui_url"].endswith(f"/workflows/{workflow_id}")
    # Nothing new was started: still one run, the completed one.
    runs = await dev_client.count_workflows(f'WorkflowId = "{workflow_id}"')
    assert runs.count == 1
    assert len(providers.reservations(workflow_id)) == 3


def test_text_output_says_the_web_ui_is_unknown_for_another_server(dev_client: Client, worker_queue: str) -> None:
    # The test dev server listens on a random port, not the local default 7233.
    done = cli(dev_client, "--task-queue", worker_queue, *FAST, ui_url=None)
    as_json = cli(dev_client, "--task-queue", worker_queue, "--json", *FAST, ui_url=None)
    assert done.returncode == 0, done.stderr
    assert "127.0.0.1:8233" not in done.stdout
    assert "Web UI: unknown for this server" in done.stdout and "TEMPORAL_UI_URL" in done.stdout
    assert as_json.returncode == 0, as_json.stderr
    assert one_object(as_json.stdout)["web_ui_url"] is None


async def test_ctrl_c_prints_one_json_object_and_exits_130(dev_client: Client, worker_queue: str) -> None:
    workflow_id = f"cli-int-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, TEMPORAL_ADDRESS=dev_client.service_client.config.target_host)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "run_workflow.py",
        *("--scenario", "slow", "--mode", "sequential", "--json"),
        *("--task-queue", worker_queue, "--workflow-id", workflow_id),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=sigint_at_default,
    )
    handle = dev_client.get_workflow_handle(workflow_id)
    # Once the booking exists, the CLI is waiting on it.
    await wait_until(lambda: describe_or_none(dev_client, workflow_id), what="the CLI to start the booking")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, stderr
    out = one_object(stdout.decode())
    assert out["workflow_id"] == workflow_id and out["status"] == "UNKNOWN"
    assert out["error"]["type"] == "Interrupted"
    assert b"Traceback" not in stderr
    await handle.cancel()  # leave nothing running


def test_step_columns_line_up_for_every_step_name() -> None:
    """``ticket_flight`` and ``finalize_hotel`` are longer than ``book_car``: the state column still lines up."""
    steps = [
        StepView(name="book_car", state=StepState.SUCCEEDED, confirmation="CAR-1"),
        StepView(name="ticket_flight", state=StepState.RUNNING, attempts=2),
        StepView(name="finalize_hotel", state=StepState.COMPENSATION_FAILED, undo_error="hotel down"),
        StepView(name="finalize_car", state=StepState.PENDING),
    ]
    lines = list(step_lines(steps).values())
    state_columns = {line.index(step.state.value) for line, step in zip(lines, steps, strict=True)}
    assert len(state_columns) == 1, "\n".join(lines)
    # The text after the state lines up too, even after the longest state.
    extras = {lines[0].index("CAR-1"), lines[1].index("attempt 2"), lines[2].index("undo: hotel down")}
    assert len(extras) == 1, "\n".join(lines)


@pytest.mark.parametrize("kind", [StepKind.COMPENSATABLE, StepKind.RETRIABLE])
def test_outstanding_json_shows_only_the_figures_of_what_is_stuck(kind: StepKind) -> None:
    stuck = OutstandingStep(step="book_car", kind=kind, undo_attempts=3, undo_error="car down", attempts=5, error="no")
    shown = outstanding_json(stuck)
    if kind is StepKind.COMPENSATABLE:  # the undo is stuck: its figures, not the booking's
        assert shown["undo_attempts"] == 3 and shown["undo_error"] == "car down"
        assert not {"attempts", "error", "error_type"} & set(shown)
    else:  # past the pivot the step itself is stuck, and nothing is undone
        assert shown["attempts"] == 5 and shown["error"] == "no"
        assert not {"undo_attempts", "undo_error", "undo_error_type"} & set(shown)
