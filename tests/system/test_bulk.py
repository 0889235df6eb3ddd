"""Bulk retry and resolve after a provider outage, on a dev server with the real providers,
worker process and ``run_operator.py --all`` as an operator runs it.

The module has a dev server of its own, and each test leaves no run open:
``--all`` acts on every booking in NEEDS_ATTENTION on the server, and the
session's shared server holds other tests' stuck bookings. ``BULK_BOOKINGS`` sets how many bookings the outage
strands (``make soak`` runs 200; ``make test`` a smaller number).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from flask import Flask
from flask.testing import FlaskClient
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from tests.conftest import (
    ROOT,
    ProviderService,
    WorkerProcess,
    make_request,
    sigint_at_default,
    wait_until,
    wait_until_blocking,
)
from tests.system.conftest import OPERATOR, OPERATOR_PASSWORD, log_in, make_app, temporal_cli
from tests.system.test_web_e2e import browser  # noqa: F401  (the shared Chromium fixture)
from trip import SEARCH_ATTRIBUTES
from trip.errors import ErrorType
from trip.models import Mode, Scenario
from trip.status import SagaStatus
from web import bulk as web_bulk
from web.bulk import MAX_PER_JOB
from web.operators import add_operator
from wiring.codec import data_converter
from wiring.live_status import fetch_status
from wiring.local_stack import DEV_SERVER_FLAGS, stop_process, temporal_cli_path
from wiring.outcome import await_outcome
from wiring.start import start_booking
from wiring.updates import retry_compensation

BOOKINGS = int(os.environ.get("BULK_BOOKINGS", "40"))
#: Fast enough for a test; the defaults (4 at once, 5 a second) are for a provider that just recovered.
FAST_BULK = ["--concurrency", "16", "--rate", "200"]


@dataclass
class Stack:
    client: Client
    queue: str
    providers: ProviderService


@pytest_asyncio.fixture(scope="module")
async def server(providers: ProviderService) -> AsyncIterator[Stack]:
    """A dev server and worker process of this module's own."""
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(),
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=DEV_SERVER_FLAGS,
    )
    async with env:
        queue = f"tq-{uuid.uuid4().hex}"
        worker = await asyncio.to_thread(WorkerProcess, env.client, providers.url, queue)
        try:
            yield Stack(env.client, queue, providers)
        finally:
            await asyncio.to_thread(worker.stop)


@pytest_asyncio.fixture
async def stack(server: Stack) -> AsyncIterator[Stack]:
    """The module's server, left with no open run by each test, so that the next one's ``--all``
    sees only its own bookings (visibility included: it waits until none is listed open)."""
    yield server
    running = 'ExecutionStatus = "Running"'
    async for wf in server.client.list_workflows(running):
        await server.client.get_workflow_handle(wf.id).terminate("the test is over")
    await wait_until(lambda: server.client.count_workflows(running), lambda c: c.count == 0, what="no open run listed")


def operator_cli(stack: Stack, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["TEMPORAL_ADDRESS"] = stack.client.service_client.config.target_host
    env["TEMPORAL_NAMESPACE"] = stack.client.namespace
    return subprocess.Popen(
        [sys.executable, "run_operator.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_at_default,
    )


async def bulk(stack: Stack, *args: str, operator: str | None = "ops") -> tuple[int, dict[str, Any]]:
    """``run_operator.py ... --all --json``: its exit code and its one JSON summary."""
    proc = operator_cli(stack, *args, "--all", "--json", *(["--operator", operator] if operator else []))
    out, err = await asyncio.to_thread(proc.communicate, timeout=600)
    assert out.count("\n") == 1, f"not one JSON line: {out!r}\n{err}"
    return proc.returncode, json.loads(out)


async def strand(stack: Stack, count: int) -> list[str]:
    """Start ``count`` car-cancel-outage bookings and wait until all wait for an operator.

    Sequential, so that every car is booked before the flight fails (in parallel
    mode the car's booking may be cancelled in flight, and nothing is held).
    """
    ids = [f"outage-{i:03d}-{uuid.uuid4().hex[:8]}" for i in range(count)]
    gate = asyncio.Semaphore(20)

    async def start(wf_id: str) -> None:
        async with gate:
            await start_booking(
                stack.client,
                make_request(Scenario.CAR_CANCEL_OUTAGE, Mode.SEQUENTIAL),
                workflow_id=wf_id,
                task_queue=stack.queue,
            )

    await asyncio.gather(*(start(i) for i in ids))
    await wait_until(
        lambda: waiting(stack),
        lambda n: n == count,
        what=f"{count} bookings in NEEDS_ATTENTION",
        timeout=60 + count,
        every=0.5,
    )
    return ids


async def waiting(stack: Stack) -> int:
    query = f'TaskQueue = "{stack.queue}" AND BookingStatus = "NEEDS_ATTENTION" AND ExecutionStatus = "Running"'
    return (await stack.client.count_workflows(query)).count


def active(stack: Stack, ids: list[str]) -> list[str]:
    wanted = set(ids)
    return sorted(
        f"{r['booking_id']}:{r['kind']}"
        for r in stack.providers.reservations()
        if r["booking_id"] in wanted and r["status"] == "active"
    )


def cancel_attempts(stack: Stack, ids: list[str]) -> int:
    found = stack.providers.attempts([f"{i}:car" for i in ids])
    return sum(ops.get("cancel", 0) for ops in found.values())


async def test_one_bulk_retry_after_an_outage_closes_every_stranded_booking(stack: Stack) -> None:
    ids = await strand(stack, BOOKINGS)
    assert len(active(stack, ids)) == BOOKINGS  # every car still held

    # The outage is still on: every booking is retried once and still waits, and the summary says why.
    # As the docs write it: no --operator (your login name) and no --note (it says it was a bulk retry).
    code, down = await bulk(stack, "retry", "--step", "book_car", *FAST_BULK, operator=None)
    assert code == 7, down
    assert down["counts"] == {"still_waiting": BOOKINGS} and down["matched"] == BOOKINGS
    [(why, count)] = down["reasons"].items()
    assert count == BOOKINGS and "book_car" in why and "outage" in why, why
    assert f"{BOOKINGS} still waiting" in down["summary"] and "outage" in down["summary"]
    assert await waiting(stack) == BOOKINGS and len(active(stack, ids)) == BOOKINGS

    # The same batch again: each booking's audit trail already names it, so nothing is sent.
    attempts = cancel_attempts(stack, ids)
    code, again = await bulk(stack, "retry", "--step", "book_car", "--note", "x", "--batch", down["batch"], *FAST_BULK)
    assert code == 0, again
    assert again["acted"] == 0 and again["counts"] == {"already_in_batch": BOOKINGS}
    assert cancel_attempts(stack, ids) == attempts

    for wf_id in ids:  # the car provider's operator ends the outage
        stack.providers.lift_outage(wf_id, "car")
    code, lifted = await bulk(stack, "retry", "--step", "book_car", "--note", "car API back", *FAST_BULK)
    assert code == 0, lifted
    assert lifted["counts"] == {"done": BOOKINGS} and lifted["acted"] == BOOKINGS
    assert active(stack, ids) == []
    for wf_id in ids:
        outcome = await await_outcome(stack.client, stack.client.get_workflow_handle(wf_id))
        assert outcome.status is SagaStatus.ROLLED_BACK, (wf_id, outcome)
        first, last = outcome.error_details["operator_actions"]
        assert (first["operator"], first["batch"]) == (getpass.getuser(), down["batch"])
        assert first["note"] == "bulk retry from run_operator.py"
        assert (last["operator"], last["batch"], last["note"]) == ("ops", lifted["batch"], "car API back")

    # A second bulk retry finds nothing left to do, and says so.
    attempts = cancel_attempts(stack, ids)
    code, second = await bulk(stack, "retry", "--step", "book_car", "--note", "again", *FAST_BULK)
    assert code == 0, second
    assert second["acted"] == 0 and not second["counts"].get("done")
    assert "Nothing was done" in second["summary"] or "nothing to do" in second["summary"]
    assert cancel_attempts(stack, ids) == attempts


async def test_filters_dry_run_and_resolve_all(stack: Stack) -> None:
    ids = await strand(stack, 4)
    # Nothing matches a step that is not stuck, an error type not seen, or an age not reached.
    for flags in (["--step", "book_hotel"], ["--error-type", "SoldOut"], ["--older-than", "1h"]):
        code, out = await bulk(stack, "retry", "--note", "x", *flags)
        assert (code, out["acted"], out["items"]) == (0, 0, []), (flags, out)
    # A paused booking cannot take an Update: it is named, with the pause's reason, and left alone.
    paused = temporal_cli(stack.client, "workflow", "pause", "--workflow-id", ids[0], "--reason", "maintenance")
    assert paused.returncode == 0, paused.stderr
    by_provider = ["--provider", "car", "--error-type", ErrorType.PROVIDER_UNAVAILABLE.value]
    code, dry = await bulk(stack, "resolve", *by_provider, "--note", "n", "--dry-run")
    assert code == 2 and dry["counts"] == {"would_act": 3, "unreadable": 1}, dry
    assert dry["reasons"] == {"paused in Temporal: maintenance": 1} and "nothing was sent" in dry["summary"]
    assert temporal_cli(stack.client, "workflow", "unpause", "--workflow-id", ids[0]).returncode == 0
    assert await waiting(stack) == 4

    code, out = await bulk(stack, "resolve", "--step", "book_car", "--older-than", "0s", "--note", "released by phone")
    assert code == 0 and out["counts"] == {"done": 4}, out
    for wf_id in ids:
        outcome = await await_outcome(stack.client, stack.client.get_workflow_handle(wf_id))
        assert outcome.status is SagaStatus.ROLLED_BACK
        [action] = outcome.error_details["operator_actions"]
        assert (action["action"], action["batch"]) == ("resolve", out["batch"])
    assert len(active(stack, ids)) == 4  # released by hand, outside the system: the ledger still shows them


async def test_the_same_update_id_is_not_run_twice(stack: Stack) -> None:
    """What lets a batch re-send after a crash: Temporal answers a known Update id with its first outcome."""
    [wf_id] = await strand(stack, 1)
    handle = stack.client.get_workflow_handle(wf_id)
    first = await retry_compensation(handle, operator="ops", note="n", batch="b1", update_id="b1:retry:book_car")
    attempts = cancel_attempts(stack, [wf_id])
    again = await retry_compensation(handle, operator="ops", note="n", batch="b1", update_id="b1:retry:book_car")
    assert again == first and first.status is SagaStatus.NEEDS_ATTENTION
    assert cancel_attempts(stack, [wf_id]) == attempts
    status = await fetch_status(stack.client, handle)
    assert [a.batch for a in status.audit] == ["b1"]


async def test_ctrl_c_stops_cleanly_says_what_was_done_and_the_batch_finishes_later(stack: Stack) -> None:
    ids = await strand(stack, 8)
    for wf_id in ids:
        stack.providers.lift_outage(wf_id, "car")
    batch = f"bulk-test-{uuid.uuid4().hex[:6]}"
    # One a second: slow enough to interrupt half way.
    proc = operator_cli(
        stack, "retry", "--all", "--json", "--operator", "ops", "--note", "n", "--batch", batch, "--rate", "1"
    )

    async def closed() -> int:
        described = await asyncio.gather(*(stack.client.get_workflow_handle(i).describe() for i in ids))
        return sum(1 for d in described if d.status is WorkflowExecutionStatus.FAILED)

    await wait_until(closed, lambda n: n >= 2, what="two bookings closed by the batch", every=0.2)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 130, (out, err)
    report = json.loads(out)
    # Closed, then answered: the second closed booking's answer may not have reached the CLI yet.
    assert report["interrupted"] and 1 <= report["counts"]["done"] < 8, report
    assert report["counts"]["done"] + report["counts"]["interrupted"] == 8
    assert f"--batch {batch}" in report["summary"]

    code, rest = await bulk(stack, "retry", "--note", "n", "--batch", batch, *FAST_BULK)
    assert code == 0, rest
    for wf_id in ids:
        outcome = await await_outcome(stack.client, stack.client.get_workflow_handle(wf_id))
        assert outcome.status is SagaStatus.ROLLED_BACK
        assert [a["batch"] for a in outcome.error_details["operator_actions"]] == [batch]  # never twice
    assert active(stack, ids) == []


# --- the same from /attention, through the web app


def wait_for_summary(client: FlaskClient, location: str) -> str:
    return wait_until_blocking(
        lambda: client.get(location + "/fragment").get_data(as_text=True),
        lambda page: 'id="bulk-summary"' in page,
        what="the bulk job's summary",
        timeout=120,
    )


async def test_retry_all_from_the_attention_page(stack: Stack) -> None:
    ids = await strand(stack, 3)
    app = make_app(stack.client.service_client.config.target_host, stack.client.namespace, stack.queue)
    try:
        await asyncio.to_thread(_retry_all_in_the_web_app, app, stack, ids)
    finally:
        app.extensions["temporal_portal"].close()
    for wf_id in ids:
        outcome = await await_outcome(stack.client, stack.client.get_workflow_handle(wf_id))
        assert outcome.status is SagaStatus.ROLLED_BACK
        [action] = outcome.error_details["operator_actions"]
        assert (action["operator"], action["note"]) == (OPERATOR, "car API back")
        assert action["batch"].startswith("bulk-")
    assert active(stack, ids) == []


def _retry_all_in_the_web_app(app: Flask, stack: Stack, ids: list[str]) -> None:
    client = app.test_client()
    # Anonymous: no page, and no job.
    assert client.get("/attention").status_code == 302
    assert client.post("/attention/bulk", data={"action": "retry", "workflow_id": ids[0]}).status_code in (400, 401)
    log_in(client)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/attention").get_data(as_text=True))
    assert csrf
    token = csrf.group(1)

    none = client.get("/attention?step=book_hotel").get_data(as_text=True)
    assert re.search(r'id="match-count">0<', none) and 'id="bulk-form"' not in none
    page = client.get("/attention?step=book_car&older_than=0s").get_data(as_text=True)
    assert re.search(r'id="match-count">3<', page) and 'id="bulk-form"' in page

    form = {"csrf_token": token, "step": "book_car", "provider": "", "error_type": "", "older_than": ""}
    refused = client.post("/attention/bulk/confirm", data={**form, "action": "resolve", "note": ""})
    assert refused.status_code == 400 and "needs a note" in refused.get_data(as_text=True)

    web_bulk.MAX_PER_JOB = 2  # what a page's job takes at most: the rest is left for another run
    try:
        capped = client.post("/attention/bulk/confirm", data={**form, "action": "retry", "note": "n"})
    finally:
        web_bulk.MAX_PER_JOB = MAX_PER_JOB
    text = capped.get_data(as_text=True)
    assert "Retry 2 bookings?" in text and "3 match: this acts on the first" in " ".join(text.split())
    assert len(re.findall(r'name="workflow_id"', text)) == 2

    for wf_id in ids:
        stack.providers.lift_outage(wf_id, "car")
    confirm = client.post("/attention/bulk/confirm", data={**form, "action": "retry", "note": "car API back"})
    text = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Retry 3 bookings?" in text
    assert sorted(re.findall(r'name="workflow_id" value="([^"]+)"', text)) == sorted(ids)
    assert all(stack.providers.attempts([f"{i}:car"])[f"{i}:car"].get("cancel") == 3 for i in ids)  # nothing sent

    started = client.post(
        "/attention/bulk", data={**form, "action": "retry", "note": "car API back", "workflow_id": ids}
    )
    assert started.status_code == 303, started.get_data(as_text=True)
    location = started.headers["Location"]
    assert "bulk-" in location and 'id="bulk-job"' in client.get(location).get_data(as_text=True)
    summary = wait_for_summary(client, location)
    assert "3 retried; 3 closed" in summary, summary


@pytest.fixture
def web(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """The web app as ``make run`` serves it (cheroot, its own process), on this test's server."""
    operators = tmp_path / "operators.toml"
    add_operator(operators, OPERATOR, OPERATOR_PASSWORD)
    env = dict(
        os.environ,
        TEMPORAL_ADDRESS=stack.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=stack.client.namespace,
        BOOKING_TASK_QUEUE=stack.queue,
        SECRET_KEY=uuid.uuid4().hex,
        OPERATORS_FILE=str(operators),
        # One Update every two seconds: a job of three outlasts the page's first polls, so its progress shows.
        FLASK_BULK_RATE="0.5",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "web", "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert line.startswith("web app listening on "), line
        yield line.split()[-1]
    finally:
        stop_process(proc)


async def test_browser_operator_confirms_a_retry_all_and_reads_the_summary(
    stack: Stack,
    web: str,
    browser: Any,  # noqa: F811
) -> None:
    ids = await strand(stack, 3)
    page = await browser.new_page(viewport={"width": 1000, "height": 1100})
    await page.goto(f"{web}/login?next=/attention")
    await page.get_by_label("Operator name").fill(OPERATOR)
    await page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_label("Stuck step").fill("book_car")
    await page.get_by_role("button", name="Filter").click()
    assert await page.locator("#match-count").inner_text() == "3"
    assert await page.locator("table.attention-list tbody tr").count() == 3

    for wf_id in ids:
        stack.providers.lift_outage(wf_id, "car")
    await page.get_by_label("Note for the audit trail (required to resolve)").fill("car API back")
    await page.get_by_role("button", name="Retry all").click()
    # The confirmation step: how many, and nothing sent yet.
    await page.get_by_role("heading", name="Retry 3 bookings?").wait_for()
    assert await page.locator("#confirm-list li").count() == 3
    assert await waiting(stack) == 3
    await page.get_by_role("button", name="Yes, retry 3 bookings").click()
    # Progress is polled into the page until the summary replaces it.
    await page.locator("#bulk-progress", has_text=re.compile(r"\d of 3 done")).wait_for()
    summary = page.locator("#bulk-summary")
    await summary.wait_for(timeout=60_000)
    assert "3 retried; 3 closed" in await summary.inner_text()
    assert active(stack, ids) == []
