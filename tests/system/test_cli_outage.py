"""The waiting CLI through a Temporal outage, a server that is gone and one that
hangs: it rides out a short one, and gives up with status UNKNOWN (never a
guessed outcome) on one longer than ``--wait-timeout``.

A dedicated dev server keeps its history in a database file, so it can be
SIGKILLed and restarted on the same data, or stopped (SIGSTOP) and continued,
while ``run_workflow.py --json`` waits on a ``slow`` saga.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import pytest_asyncio
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError

from tests.conftest import (
    ROOT,
    ProviderService,
    WorkerProcess,
    free_port,
    stop_process,
    wait_until,
    wait_until_blocking,
)
from tests.system.conftest import describe_or_none
from trip.status import BookingResult
from wiring.client import is_unreachable
from wiring.codec import data_converter
from wiring.local_stack import dev_server_command, wait_for_port

#: How long the server stays down in the outage the CLI must ride out.
OUTAGE_S = 6.0


def _thread_state(task: Path) -> str:
    """One thread's state letter in ``/proc/PID/task/TID/stat`` (after the command name in parentheses)."""
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:  # the thread has exited
        return "T"


class DevServer:
    """``temporal server start-dev`` on a database file, killable and restartable."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = free_port()
        self.ui_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = dev_server_command(db=self.db, host="127.0.0.1", port=self.port, ui_port=self.ui_port)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port, self.proc, timeout=60)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def hang(self) -> None:
        """Stop the server without closing its sockets: connections are accepted, never answered."""
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGSTOP)
        # kill() only sends the signal: the server is hung once every one of its threads has stopped.
        wait_until_blocking(
            lambda: sorted({_thread_state(task) for task in Path(f"/proc/{pid}/task").iterdir()}),
            lambda states: states in (["T"], ["t"], ["T", "t"]),
            what=f"every thread of the dev server (pid {pid}) to stop",
        )

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    dev = DevServer(tmp_path_factory.mktemp("outage") / "dev.db")
    dev.start()
    yield dev
    if dev.proc is not None:
        stop_process(dev.proc)


@pytest_asyncio.fixture
async def client(server: DevServer) -> AsyncIterator[Client]:
    yield await Client.connect(server.address, data_converter=data_converter())


@pytest.fixture(scope="module")
def queue(server: DevServer, providers: ProviderService) -> Iterator[str]:
    task_queue = f"tq-{uuid.uuid4().hex}"
    # WorkerProcess reads only the client's address and namespace.
    address = SimpleNamespace(service_client=SimpleNamespace(config=SimpleNamespace(target_host=server.address)))
    address.namespace = "default"
    worker = WorkerProcess(cast(Client, address), providers.url, task_queue)
    yield task_queue
    worker.stop()


async def start_cli(server: DevServer, queue: str, workflow_id: str, *extra: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, TEMPORAL_ADDRESS=server.address, TEMPORAL_NAMESPACE="default")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "run_workflow.py",
        *("--scenario", "slow", "--mode", "sequential", "--json"),
        *("--task-queue", queue, "--workflow-id", workflow_id, *extra),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_until_booking_runs(client: Client, workflow_id: str) -> None:
    """Until the saga's first step has started: the CLI is then waiting on it."""
    await wait_until(
        lambda: describe_or_none(client, workflow_id),
        lambda found: found is not None and bool(found.raw_description.pending_activities),
        what=f"booking {workflow_id} to start a step",
    )


def one_object(stdout: bytes) -> dict[str, Any]:
    lines = stdout.decode().splitlines()
    assert len(lines) == 1, f"stdout is not exactly one line: {stdout!r}"
    obj: dict[str, Any] = json.loads(lines[0])
    return obj


async def test_a_short_outage_mid_saga_still_ends_completed(
    server: DevServer, client: Client, queue: str, providers: ProviderService
) -> None:
    workflow_id = f"outage-{uuid.uuid4().hex[:8]}"
    proc = await start_cli(server, queue, workflow_id, "--wait-timeout", "60")
    await wait_until_booking_runs(client, workflow_id)
    server.kill()
    await asyncio.sleep(OUTAGE_S)  # the outage itself is what is under test
    server.start()
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, stderr.decode()
    out = one_object(stdout)
    assert out["workflow_id"] == workflow_id and out["status"] == "COMPLETED"
    assert set(out["confirmations"]) == {"car", "hotel", "flight"}
    assert providers.active_kinds(workflow_id) == ["car", "flight", "hotel"]


#: How the server stops answering: it is gone (connections refused), or it
#: hangs (SIGSTOP: connections accepted, calls time out, which the SDK reports
#: as CANCELLED). Either way the CLI counts it as no answer.
OUTAGES = {
    "gone": (DevServer.kill, DevServer.start),
    "hung": (DevServer.hang, DevServer.resume),
}


@pytest.mark.parametrize("outage", sorted(OUTAGES))
async def test_an_outage_past_the_wait_timeout_exits_4_with_status_unknown(
    server: DevServer, client: Client, queue: str, outage: str
) -> None:
    stop, restore = OUTAGES[outage]
    workflow_id = f"{outage}-{uuid.uuid4().hex[:8]}"
    proc = await start_cli(server, queue, workflow_id, "--wait-timeout", "4")
    await wait_until_booking_runs(client, workflow_id)
    stop(server)
    try:
        # The bound only keeps a CLI that never gives up from hanging the suite.
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 180)
    finally:
        restore(server)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 4, stderr.decode()
    out = one_object(stdout)
    assert out["workflow_id"] == workflow_id and out["status"] == "UNKNOWN"
    assert out["error"]["type"] == "TemporalUnreachable"
    assert "Traceback" not in stderr.decode()
    # It gave up once Temporal had been silent for the whole --wait-timeout, by its own count.
    silent = re.search(r"has not answered for (\d+)s", stderr.decode())
    assert silent and int(silent.group(1)) >= 4, stderr.decode()
    # The saga itself lives on and completes once the server answers again.
    handle = client.get_workflow_handle(workflow_id, result_type=BookingResult)
    result = await asyncio.wait_for(handle.result(), 60)
    assert set(result.confirmations) == {"car", "hotel", "flight"}


async def test_a_call_that_a_hung_server_never_answers_counts_as_unreachable(server: DevServer, client: Client) -> None:
    server.hang()
    try:
        with pytest.raises(RPCError) as err:
            await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), retry=False, timeout=timedelta(seconds=1)
            )
    finally:
        server.resume()
    assert is_unreachable(err.value), err.value.status
