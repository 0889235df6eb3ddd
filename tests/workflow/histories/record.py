"""Record booking histories for the replay test: ``make histories``.

Starts its own dev server, provider service and an in-process worker, runs
every scenario in both modes, and writes each run's history as JSON to
``tests/workflow/histories/<label>/<scenario>-<mode>.json``. Also one history captured
while ``car-cancel-broken`` is still unwinding (``...-mid-unwind.json``), and,
where the code has NEEDS_ATTENTION, one captured while it waits for an operator.
Where the code has hold and confirm: held trips confirmed in both modes
(``...-held.json``), one captured while it awaits confirmation, one declined.
Where a provider may confirm later (a 202, then a callback): ``flight-async-lost``
confirmed by the ``provider_confirmed`` Update and timed out, in both modes
(``--scenario flight-async-lost`` records only these).
Where the operator's Updates take a bulk operation's batch id: a stranded
``car-cancel-outage`` retried by a batch while the outage is on, then after it
is lifted (``...-bulk-retried.json``), and a ``car-cancel-broken`` resolved by
a batch (``...-bulk-resolved.json``). Where the code holds a costly undo for
approval: ``hotel-cancel-fee`` approved (sequential) and kept (parallel), as
``...-approved.json`` and ``...-kept.json``.

Histories recorded for an older version of the workflow must never be
re-recorded to turn a red replay test green: record the current code under a
new label, and guard the change with ``workflow.patched``. The recorder only
uses APIs that every version since the first replay guard has, so it can be run
from an older checkout (``cd old-checkout && python -m tests.workflow.histories.record``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities import BookingActivities, make_http_client
from tests.conftest import make_request, start_providers, stop_process
from trip import SEARCH_ATTRIBUTES
from trip.models import Mode, RetryOverrides, Scenario
from trip.scenarios import HELD, OUTRIGHT, SCENARIOS
from wiring.codec import KeyRing
from wiring.live_status import fetch_status
from wiring.local_stack import temporal_cli_path
from wiring.outcome import await_outcome
from wiring.start import start_booking
from wiring.updates import decide
from wiring.worker import build_worker

HERE = Path(__file__).resolve().parent
TERMINAL = {"COMPLETED", "ROLLED_BACK", "ROLLBACK_INCOMPLETE", "CANCELLED"}


async def _wait_for(
    client: Client, handle: WorkflowHandle[Any, Any], ready: Any, what: str, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = await fetch_status(client, handle)
        if ready(status):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{handle.id}: never reached {what}: {status}")
        await asyncio.sleep(0.05)


async def _save(handle: WorkflowHandle[Any, Any], path: Path) -> None:
    history = await handle.fetch_history()
    await asyncio.to_thread(path.write_text, history.to_json())
    print(f"  {path}  {len(history.events)} events", flush=True)


# The histories are recorded with the plain pydantic converter, so that they
# stay readable in the repository and the replay test needs no key. The
# traveller's search tag is a keyed hash, which the plain converter has no key
# for: a throwaway ring makes it, so the runs start with their search
# attributes as in production (the workflow upserts its status only then).
TAGS = KeyRing.generate()


async def record(client: Client, queue: str, out: Path, only: frozenset[Scenario] | None = None) -> None:
    for scenario in OUTRIGHT:
        if only is not None and scenario not in only:
            continue
        for mode in Mode:
            handle = await start_booking(client, make_request(scenario, mode), task_queue=queue, keyring=TAGS)
            path = out / f"{scenario.value}-{mode.value}.json"
            expected = SCENARIOS[scenario].expected
            if expected in TERMINAL:
                await await_outcome(client, handle)
            else:  # waits for an operator: keep it open, as a worker would find it
                await _wait_for(client, handle, lambda s, want=expected: s.status.value == want, "its state")
                path = out / f"{scenario.value}-{mode.value}-waiting.json"
            await _save(handle, path)
            if expected not in TERMINAL:
                await handle.terminate("recorded")
    if only is not None:
        return

    # Mid-unwind: the car's undo keeps failing, slowly, while the history is taken.
    slow_undo = RetryOverrides(
        initial_interval_s=0.05, backoff=1.0, max_interval_s=2.0, undo_max_attempts=100, undo_max_interval_s=2.0
    )
    req = make_request(Scenario.CAR_CANCEL_BROKEN, Mode.SEQUENTIAL, retry=slow_undo)
    handle = await start_booking(client, req, task_queue=queue, keyring=TAGS)
    await _wait_for(
        client,
        handle,
        lambda s: (
            s.status.value == "COMPENSATING" and {x.name: x.state.value for x in s.steps}["book_hotel"] == "compensated"
        ),
        "the car's undo retrying",
    )
    await _save(handle, out / "car-cancel-broken-sequential-mid-unwind.json")
    await handle.terminate("recorded")


async def record_held(client: Client, queue: str, out: Path) -> None:
    """Hold and confirm: every held scenario confirmed, plus waiting and declined runs."""
    for scenario in (Scenario.HAPPY, *HELD):
        for mode in Mode:
            req = make_request(scenario, mode).model_copy(update={"confirm_within": timedelta(minutes=10)})
            handle = await start_booking(client, req, task_queue=queue, keyring=TAGS)
            await _wait_for(
                client, handle, lambda s: s.status.value == "AWAITING_CONFIRMATION", "awaiting confirmation"
            )
            if scenario is Scenario.HAPPY and mode is Mode.SEQUENTIAL:
                await _save(handle, out / "happy-sequential-held-awaiting.json")
            await decide(handle, confirm=True, note="recorded")
            expected = SCENARIOS[scenario].expected
            if expected in TERMINAL:
                await await_outcome(client, handle)
                await _save(handle, out / f"{scenario.value}-{mode.value}-held.json")
            else:
                await _wait_for(client, handle, lambda s, want=expected: s.status.value == want, "its state")
                await _save(handle, out / f"{scenario.value}-{mode.value}-held-waiting.json")
                await handle.terminate("recorded")
    req = make_request(Scenario.HAPPY, Mode.PARALLEL).model_copy(update={"confirm_within": timedelta(minutes=10)})
    handle = await start_booking(client, req, task_queue=queue, keyring=TAGS)
    await _wait_for(client, handle, lambda s: s.status.value == "AWAITING_CONFIRMATION", "awaiting confirmation")
    await decide(handle, confirm=False, note="recorded")
    await await_outcome(client, handle)
    await _save(handle, out / "happy-parallel-held-declined.json")


async def record_bulk(client: Client, queue: str, out: Path, providers_url: str) -> None:
    """Operator Updates sent by a bulk operation (with a batch id and an Update id of its own)."""
    try:
        from trip.status import RetryCompensationInput
    except ImportError:
        return
    if "batch" not in RetryCompensationInput.model_fields:
        return  # this version's Updates take no batch id

    async def send(handle: WorkflowHandle[Any, Any], name: str, payload: dict[str, Any], update_id: str) -> None:
        await handle.execute_update(name, {"operator": "ops", "batch": "bulk-recorded", **payload}, id=update_id)

    for scenario, label in (
        (Scenario.CAR_CANCEL_OUTAGE, "bulk-retried"),
        (Scenario.CAR_CANCEL_BROKEN, "bulk-resolved"),
    ):
        handle = await start_booking(client, make_request(scenario, Mode.SEQUENTIAL), task_queue=queue, keyring=TAGS)
        await _wait_for(client, handle, lambda s: s.status.value == "NEEDS_ATTENTION", "NEEDS_ATTENTION")
        if scenario is Scenario.CAR_CANCEL_OUTAGE:
            retry = {"steps": ["book_car"], "note": "outage on"}
            await send(handle, "retry_compensation", retry, "bulk-early:retry:book_car")
            async with httpx.AsyncClient() as http:
                lifted = await http.post(
                    f"{providers_url}/admin/outages/lift", json={"booking_id": handle.id, "kind": "car"}
                )
                lifted.raise_for_status()
            await send(handle, "retry_compensation", {**retry, "note": "lifted"}, "bulk-recorded:retry:book_car")
        else:
            resolve = {"step": "book_car", "note": "released by phone"}
            await send(handle, "resolve", resolve, "bulk-recorded:resolve:book_car")
        await await_outcome(client, handle)
        await _save(handle, out / f"{scenario.value}-{Mode.SEQUENTIAL.value}-{label}.json")


async def record_approval(client: Client, queue: str, out: Path) -> None:
    """A costly undo held for approval, then approved (sequential) or kept (parallel)."""
    scenario = getattr(Scenario, "HOTEL_CANCEL_FEE", None)
    if scenario is None:
        return  # this version never holds an undo
    for mode, update, label in ((Mode.SEQUENTIAL, "approve_undo", "approved"), (Mode.PARALLEL, "keep", "kept")):
        handle = await start_booking(client, make_request(scenario, mode), task_queue=queue, keyring=TAGS)
        await _wait_for(client, handle, lambda s: s.status.value == "AWAITING_UNDO_APPROVAL", "an undo held")
        await handle.execute_update(update, {"step": "book_hotel", "operator": "ops", "note": "recorded"})
        await await_outcome(client, handle)
        await _save(handle, out / f"{scenario.value}-{mode.value}-{label}.json")


async def record_async(client: Client, queue: str, out: Path) -> None:
    """A provider that confirms later: confirmed by its callback, and timed out, in both modes.

    ``flight-async-lost``'s provider never calls back, so the recorder sends the
    ``provider_confirmed`` Update itself, as the web app's receiver would.
    """
    try:
        from trip.scenarios import CONFIRMED_LATER
    except ImportError:
        return  # this version has no provider that confirms later
    assert Scenario.FLIGHT_ASYNC_LOST in CONFIRMED_LATER
    for mode in Mode:
        req = make_request(Scenario.FLIGHT_ASYNC_LOST, mode).model_copy(update={"async_deadline_s": 600})
        handle = await start_booking(client, req, task_queue=queue, keyring=TAGS)
        await _wait_for(client, handle, lambda s: bool(s.waiting), "the flight to wait")
        status = await fetch_status(client, handle)
        confirm = {"kind": "flight", "reference": status.waiting[0].reference, "confirmation": "FLT-RECORDED"}
        await handle.execute_update("provider_confirmed", {**confirm, "delivery_id": "d1"}, id="callback-d1")
        await await_outcome(client, handle)
        await _save(handle, out / f"flight-async-lost-{mode.value}-confirmed.json")
        req = make_request(Scenario.FLIGHT_ASYNC_LOST, mode).model_copy(update={"async_deadline_s": 1})
        handle = await start_booking(client, req, task_queue=queue, keyring=TAGS)
        await await_outcome(client, handle)
        await _save(handle, out / f"flight-async-lost-{mode.value}-timed-out.json")


# Where the code has Worker Versioning, the runs are recorded on a versioned
# worker, as shipped: their workflow tasks then carry the deployment version
# and the PINNED behaviour the replay test must accept. Looked up rather than
# imported, so this file still runs from a checkout that predates it.
RECORDING_BUILD = "histories"


def versioned(queue: str) -> dict[str, Any]:
    try:
        from wiring.versioning import deployment_config
    except ImportError:
        return {}
    return {"deployment": deployment_config(RECORDING_BUILD, f"histories-{queue}")}


async def make_current(client: Client, queue: str) -> None:
    try:
        from wiring.versioning import make_current_when_polled
    except ImportError:
        return
    env = dict(
        os.environ, TEMPORAL_ADDRESS=client.service_client.config.target_host, TEMPORAL_NAMESPACE=client.namespace
    )
    await asyncio.to_thread(
        make_current_when_polled, f"histories-{queue}", RECORDING_BUILD, task_queues=[queue], env=env
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "label", help="folder under tests/workflow/histories/, e.g. the workflow version being recorded"
    )
    parser.add_argument("--out", type=Path, help="write into this folder instead (a check of the recorder itself)")
    parser.add_argument(
        "--scenario",
        action="append",
        type=Scenario,
        help="record only this outright scenario, in both modes (repeatable); skips the other kinds of history",
    )
    args = parser.parse_args()
    out = args.out or HERE / args.label
    only = frozenset(args.scenario) if args.scenario else None
    out.mkdir(parents=True, exist_ok=True)
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=SEARCH_ATTRIBUTES,
    )
    providers = start_providers(Path(tempfile.mkdtemp(prefix="histories-")) / "ledger.db")
    queue = f"histories-{uuid.uuid4().hex[:8]}"
    try:
        async with env, make_http_client(providers.url) as http:
            async with build_worker(env.client, BookingActivities(http), task_queue=queue, **versioned(queue)):
                await make_current(env.client, queue)
                await record(env.client, queue, out, only)
                if only is None or getattr(Scenario, "HOTEL_CANCEL_FEE", None) in only:
                    await record_approval(env.client, queue, out)
                if only is None or getattr(Scenario, "FLIGHT_ASYNC_LOST", None) in only:
                    await record_async(env.client, queue, out)
                if only is None:
                    await record_held(env.client, queue, out)
                    await record_bulk(env.client, queue, out, providers.url)
    finally:
        stop_process(providers.proc)


if __name__ == "__main__":
    asyncio.run(main())
