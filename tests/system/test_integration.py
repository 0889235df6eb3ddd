"""The shipped processes together: dev server, ``run_worker.py``, the provider
service and ``run_workflow.py``, each its own process, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tests.conftest import ROOT, ProviderService, WorkerProcess, free_port, make_request, wait_for_saga_status
from tests.system.conftest import FAST, cli, temporal_cli
from trip import SA_BOOKING_STATUS
from trip.models import Scenario
from trip.scenarios import OUTRIGHT, SCENARIOS
from trip.status import SagaStatus
from wiring.live_status import fetch_status
from wiring.outcome import await_outcome
from wiring.start import start_booking
from workflows.booking import BookingWorkflow

EXIT_CODES = {
    "COMPLETED": 0,
    "ROLLED_BACK": 1,
    "ROLLBACK_INCOMPLETE": 3,
    "CANCELLED": 5,
    "NEEDS_ATTENTION": 7,
    "AWAITING_UNDO_APPROVAL": 9,
}


@pytest.mark.parametrize("scenario", OUTRIGHT)
def test_cli_runs_each_scenario_with_the_documented_exit_code_json_and_ledger(
    dev_client: Client, providers: ProviderService, worker_queue: str, scenario: Scenario
) -> None:
    workflow_id = f"cli-{scenario.value}-{uuid.uuid4().hex[:8]}"
    done = cli(
        dev_client,
        "--scenario",
        scenario.value,
        "--task-queue",
        worker_queue,
        "--workflow-id",
        workflow_id,
        "--json",
        *FAST,
    )
    expected = SCENARIOS[scenario].expected
    assert done.returncode == EXIT_CODES[expected], done.stderr
    out: dict[str, Any] = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert out["workflow_id"] == workflow_id and out["status"] == expected
    assert out["web_ui_url"] == f"http://ui.example/namespaces/{dev_client.namespace}/workflows/{workflow_id}"
    assert [s["name"] for s in out["steps"]] == ["book_car", "book_hotel", "book_flight"]
    active = providers.active_kinds(workflow_id)
    if expected == "COMPLETED":
        assert set(out["confirmations"]) == {"car", "hotel", "flight"}
        assert active == ["car", "flight", "hotel"]
        assert len(providers.reservations(workflow_id)) == 3
    elif expected == "ROLLED_BACK":
        assert out["error"]["type"] == "BookingRolledBack"
        assert active == []
    elif expected == "AWAITING_UNDO_APPROVAL":
        [held] = out["undo_approvals"]
        assert (held["step"], held["fee"], held["decision"]) == (
            "book_hotel",
            {"amount": "150.00", "currency": "EUR"},
            None,
        )
        # Parallel mode: the car's undo ran while the hotel's waits for a decision.
        assert active == ["hotel"]
    else:
        assert expected == "NEEDS_ATTENTION"
        assert [o["step"] for o in out["outstanding"]] == ["book_car"] and out["attention_deadline"]
        # The undo is what is stuck: its attempts, and no booking figures that would read as 0 attempts.
        assert out["outstanding"][0]["undo_attempts"] == 3 and "attempts" not in out["outstanding"][0]
        assert active == ["car"]


@pytest.fixture(scope="module")
def codec_server() -> Iterator[list[str]]:
    """The web app's codec endpoints on a free port; yields the Temporal CLI's flags for it."""
    from werkzeug.serving import make_server

    from web import create_app

    token = os.environ["CODEC_TOKEN"]
    server = make_server("127.0.0.1", 0, create_app({"SECRET_KEY": "test-secret", "CODEC_TOKEN": token}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ["--codec-endpoint", f"http://127.0.0.1:{server.server_port}/codec", "--codec-auth", f"Bearer {token}"]
    server.shutdown()
    thread.join(timeout=5)


async def test_a_stuck_undo_exits_7_and_the_temporal_cli_resolve_closes_it(
    dev_client: Client, providers: ProviderService, worker_queue: str, codec_server: list[str]
) -> None:
    """An operator closes a stuck undo as the docs show it, with the Temporal CLI binary
    (through the codec server) rather than our own CLI."""
    workflow_id = f"cli-stuck-{uuid.uuid4().hex[:8]}"
    args = ["--scenario", "car-cancel-broken", "--workflow-id", workflow_id, "--task-queue", worker_queue]
    done = cli(dev_client, *args, "--initial-interval", "0.1", "--max-interval", "0.5", "--undo-max-attempts", "3")
    assert done.returncode == 7, done.stderr
    assert "Outcome: NEEDS_ATTENTION" in done.stdout
    # The hint names this interpreter (the venv's), never whichever python is first on the PATH.
    interpreter = Path(sys.executable)
    python = str(interpreter.relative_to(ROOT)) if interpreter.is_relative_to(ROOT) else sys.executable
    assert f"Operator: {python} run_operator.py retry|resolve --workflow-id {workflow_id}" in done.stdout
    described = temporal_cli(dev_client, "workflow", "describe", "--workflow-id", workflow_id, "-o", "json")
    assert json.loads(described.stdout)["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_RUNNING"

    payload = {"step": "book_car", "operator": "ops", "note": "done by phone"}
    update = ["workflow", "update", "execute", "--workflow-id", workflow_id, "--name", "resolve"]
    # Results and failure messages are encrypted: the CLI reads them through the codec server.
    rejected = temporal_cli(dev_client, *update, "--input", json.dumps({**payload, "note": ""}), *codec_server)
    assert rejected.returncode != 0 and "note must say why" in rejected.stderr + rejected.stdout
    # Typed and not retryable: sending the same refused Update again cannot help.
    assert "(type: UpdateRejected, retryable: false)" in rejected.stderr
    resolved = temporal_cli(dev_client, *update, "--input", json.dumps(payload), *codec_server)
    assert resolved.returncode == 0, resolved.stderr

    outcome = await await_outcome(dev_client, dev_client.get_workflow_handle(workflow_id))
    assert outcome.status is SagaStatus.ROLLED_BACK and outcome.error_type == "BookingRolledBack"
    assert outcome.error_details["operator_actions"][0]["operator"] == "ops"
    assert providers.active_kinds(workflow_id) == ["car"]  # resolved outside the system, not by us


async def test_a_costly_undo_exits_9_and_the_temporal_cli_approve_undo_rolls_it_back_with_the_fee(
    dev_client: Client, providers: ProviderService, worker_queue: str, codec_server: list[str]
) -> None:
    """The hotel costs a night to cancel: the run waits for an operator, who approves with the Temporal CLI."""
    workflow_id = f"cli-fee-{uuid.uuid4().hex[:8]}"
    args = ["--scenario", "hotel-cancel-fee", "--mode", "sequential", "--workflow-id", workflow_id]
    done = cli(dev_client, *args, "--task-queue", worker_queue, *FAST)
    assert done.returncode == 9, done.stderr
    assert "Outcome: AWAITING_UNDO_APPROVAL" in done.stdout and "approve-undo|keep" in done.stdout
    handle = dev_client.get_workflow_handle(workflow_id)
    described = await handle.describe()
    assert described.typed_search_attributes.get(SA_BOOKING_STATUS) == "AWAITING_UNDO_APPROVAL"
    # Sequential: the car's undo waits behind the hotel's decision.
    assert providers.active_kinds(workflow_id) == ["car", "hotel"]

    # Our own CLI sends the same Updates: a keep of a step that is not held is refused, and changes nothing.
    wrong = ["keep", "--workflow-id", workflow_id, "--step", "book_car", "--operator", "ops", "--note", "x", "--json"]
    kept = cli(dev_client, *wrong, script="run_operator.py")
    assert kept.returncode == 2 and "step 'book_car' is not awaiting approval" in json.loads(kept.stdout)["message"]

    payload = {"step": "book_hotel", "operator": "ops", "note": "a night is cheaper than the stay"}
    update = ["workflow", "update", "execute", "--workflow-id", workflow_id, "--name", "approve_undo"]
    rejected = temporal_cli(dev_client, *update, "--input", json.dumps({**payload, "step": "book_car"}), *codec_server)
    assert rejected.returncode != 0 and "not awaiting approval" in rejected.stderr + rejected.stdout
    approved = temporal_cli(dev_client, *update, "--input", json.dumps(payload), *codec_server)
    assert approved.returncode == 0, approved.stderr
    assert "compensated" in approved.stdout  # the result, decoded by the codec server

    outcome = await await_outcome(dev_client, handle)
    assert outcome.status is SagaStatus.ROLLED_BACK and outcome.error_type == "BookingRolledBack"
    assert outcome.error_details["fees_paid"] == [{"step": "book_hotel", "amount": "150.00", "currency": "EUR"}]
    [action] = outcome.error_details["operator_actions"]
    assert (action["action"], action["operator"], action["cost"]) == ("approve_undo", "ops", "150.00")
    assert providers.active_kinds(workflow_id) == []


async def test_run_operator_retries_a_lifted_outage_and_explains_a_rejection(
    dev_client: Client, providers: ProviderService, worker_queue: str
) -> None:
    workflow_id = f"cli-outage-{uuid.uuid4().hex[:8]}"
    done = cli(
        dev_client,
        "--scenario",
        "car-cancel-outage",
        "--workflow-id",
        workflow_id,
        "--task-queue",
        worker_queue,
        "--json",
        *FAST,
    )
    assert done.returncode == 7, done.stderr
    assert json.loads(done.stdout)["status"] == "NEEDS_ATTENTION"
    common = ["--workflow-id", workflow_id, "--operator", "grace", "--json"]

    rejected = cli(dev_client, "resolve", *common, "--step", "book_boat", "--note", "x", script="run_operator.py")
    assert rejected.returncode == 2
    assert "unknown step 'book_boat'" in json.loads(rejected.stdout)["message"]

    still_down = cli(dev_client, "retry", *common, "--note", "first try", script="run_operator.py")
    assert still_down.returncode == 0, still_down.stderr
    assert json.loads(still_down.stdout)["outcomes"] == {"book_car": "compensation-failed"}

    providers.lift_outage(workflow_id, "car")
    retried = cli(
        dev_client, "retry", *common, "--step", "book_car", "--note", "outage lifted", script="run_operator.py"
    )
    assert retried.returncode == 0, retried.stderr
    out = json.loads(retried.stdout)
    assert out["outcomes"] == {"book_car": "compensated"} and out["outstanding"] == []
    outcome = await await_outcome(dev_client, dev_client.get_workflow_handle(workflow_id))
    assert outcome.status is SagaStatus.ROLLED_BACK
    assert [a["note"] for a in outcome.error_details["operator_actions"]] == ["first try", "outage lifted"]
    assert providers.active_kinds(workflow_id) == []


def test_cli_prints_progress_and_the_web_ui_link(dev_client: Client, worker_queue: str) -> None:
    done = cli(dev_client, "--scenario", "flight-flaky", "--task-queue", worker_queue, *FAST)
    assert done.returncode == 0, done.stderr
    assert "book_flight" in done.stdout and "attempt 4" in done.stdout
    assert "Outcome: COMPLETED" in done.stdout and "http://ui.example/namespaces/" in done.stdout


async def test_cancelled_booking_exits_5_after_undoing_everything(
    dev_client: Client, providers: ProviderService, worker_queue: str
) -> None:
    workflow_id = f"cli-cancel-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, TEMPORAL_ADDRESS=dev_client.service_client.config.target_host)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "run_workflow.py",
        "--scenario",
        "slow",
        "--mode",
        "sequential",
        "--task-queue",
        worker_queue,
        "--workflow-id",
        workflow_id,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert first.decode().startswith(f"Booking {workflow_id} started")
    handle = dev_client.get_workflow_handle(workflow_id)
    # Cancel once the car is booked, while the hotel call is in flight.
    while (line := await asyncio.wait_for(proc.stdout.readline(), 30)).split()[:2] != [b"book_car", b"succeeded"]:
        assert line, "the CLI ended before the car was booked"
    await handle.cancel()
    rest = await asyncio.wait_for(proc.stdout.read(), 60)
    assert await proc.wait() == 5
    assert b"Outcome: CANCELLED" in rest
    status = await fetch_status(dev_client, handle)
    assert status.status is SagaStatus.CANCELLED
    assert providers.active_kinds(workflow_id) == []
    assert {s.name: s.state.value for s in status.steps}["book_flight"] == "skipped"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--traveller-name", ""], "--traveller-name"),
        (["--traveller-email", "nope"], "--traveller-email"),
        (["--car-pickup", "2001-01-01"], "--car-pickup"),
        (["--hotel-check-out", "2001-01-01"], "--hotel-check-out"),
        (["--flight-to", "London"], "--flight-to"),
        (["--scenario", "meteor"], "--scenario"),
        (["--max-attempts", "0"], "--retry"),
    ],
)
async def test_bad_input_exits_2_and_starts_nothing(
    dev_client: Client, task_queue: str, args: list[str], field: str
) -> None:
    workflow_id = f"trip-bad-{uuid.uuid4().hex[:12]}"
    done = cli(dev_client, *args, "--task-queue", task_queue, "--workflow-id", workflow_id)
    assert done.returncode == 2
    assert "not started" in done.stderr and field in done.stderr
    assert "Traceback" not in done.stderr
    # Describe reads the id's own record (visibility could lag): it was never started.
    with pytest.raises(RPCError) as err:
        await dev_client.get_workflow_handle(workflow_id).describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND


def test_unreachable_temporal_exits_4_without_a_traceback(dev_client: Client) -> None:
    done = cli(dev_client, "--json", address=f"127.0.0.1:{free_port()}")
    assert done.returncode == 4
    assert "cannot reach Temporal" in done.stderr and "Traceback" not in done.stderr


def test_a_workflow_id_with_percent_rolls_back_to_zero_active_rows(
    dev_client: Client, providers: ProviderService, worker_queue: str
) -> None:
    # The undo must release exactly the key that was booked, even one that is not safe in a URL path.
    workflow_id = f"x%41y-{uuid.uuid4().hex[:8]}"
    done = cli(
        dev_client,
        *("--scenario", Scenario.FLIGHT_SOLD_OUT.value, "--mode", "sequential"),
        *("--task-queue", worker_queue, "--workflow-id", workflow_id, "--json"),
        *FAST,
    )
    assert done.returncode == EXIT_CODES["ROLLED_BACK"], done.stderr
    rows = providers.reservations(workflow_id)
    assert {r["kind"] for r in rows} == {"car", "hotel"}
    assert providers.active_kinds(workflow_id) == []


@pytest.mark.parametrize("workflow_id", ["a/b", "trip?x", "has space"])
async def test_a_workflow_id_outside_the_character_set_exits_2_and_starts_nothing(
    dev_client: Client, task_queue: str, workflow_id: str
) -> None:
    done = cli(dev_client, "--workflow-id", workflow_id, "--task-queue", task_queue)
    assert done.returncode == 2
    assert "--workflow-id" in done.stderr and "letters, digits" in done.stderr and "not started" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(RPCError):
        await dev_client.get_workflow_handle(workflow_id).describe()


async def test_start_booking_refuses_an_id_outside_the_character_set(dev_client: Client, task_queue: str) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        await start_booking(dev_client, make_request(), workflow_id="a/b", task_queue=task_queue)
    with pytest.raises(RPCError):
        await dev_client.get_workflow_handle("a/b").describe()


@pytest.mark.parametrize(
    ("scenario", "update", "expected"),
    [
        ("happy", "confirm", SagaStatus.COMPLETED),
        ("happy", "decline", SagaStatus.ROLLED_BACK),
        ("finalize-hotel-broken", "confirm", SagaStatus.NEEDS_ATTENTION),
    ],
)
async def test_a_held_trip_answered_with_the_temporal_cli(
    dev_client: Client,
    providers: ProviderService,
    worker_queue: str,
    codec_server: list[str],
    scenario: str,
    update: str,
    expected: SagaStatus,
) -> None:
    """A held trip confirmed or declined as the docs show it, with the Temporal CLI binary."""
    workflow_id = f"cli-held-{uuid.uuid4().hex[:8]}"
    args = ["--scenario", scenario, "--workflow-id", workflow_id, "--task-queue", worker_queue, *FAST]
    started = cli(dev_client, "--confirm-within", "600", "--no-wait", *args)
    assert started.returncode == 0, started.stderr
    assert f"--workflow-id {workflow_id} --name confirm" in started.stdout
    handle = dev_client.get_workflow_handle_for(BookingWorkflow.run, workflow_id)
    await wait_for_saga_status(handle, SagaStatus.AWAITING_CONFIRMATION)

    answered = temporal_cli(
        dev_client, "workflow", "update", "execute", "--workflow-id", workflow_id, "--name", update,
        "--input", json.dumps({"note": "from the CLI"}), *codec_server,
    )  # fmt: skip
    assert answered.returncode == 0, answered.stderr
    if expected is SagaStatus.NEEDS_ATTENTION:
        status = await wait_for_saga_status(handle, SagaStatus.NEEDS_ATTENTION)
        assert status.outstanding == ["finalize_hotel"] and status.ticket
        history = await handle.fetch_history()
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert "ticket_flight" in scheduled and not [name for name in scheduled if name.startswith("undo_")]
        return
    outcome = await await_outcome(dev_client, handle)
    assert outcome.status is expected
    if expected is SagaStatus.COMPLETED:
        assert outcome.result is not None and outcome.result.ticket
        assert providers.active_kinds(workflow_id) == ["car", "flight", "hotel"]
    else:
        assert outcome.error_type == "BookingRolledBack" and outcome.error_details["cause_type"] == "Declined"
        assert providers.active_kinds(workflow_id) == []


async def test_an_unversioned_worker_books_for_a_cluster_without_worker_versioning(
    dev_client: Client, providers: ProviderService, task_queue: str
) -> None:
    worker = WorkerProcess(dev_client, providers.url, task_queue, current=False, extra_args=("--no-versioning",))
    try:
        assert any("worker ready: unversioned" in line for line in worker.log), worker.log
        done = await asyncio.to_thread(cli, dev_client, "--task-queue", task_queue, "--json", *FAST)
        assert done.returncode == 0, done.stderr + "".join(worker.log)
        run = json.loads(done.stdout)
        assert run["status"] == "COMPLETED"
        described = await dev_client.get_workflow_handle(run["workflow_id"]).describe()
        assert described.raw_description.workflow_execution_info.versioning_info.behavior == 0  # unversioned
    finally:
        worker.stop()
