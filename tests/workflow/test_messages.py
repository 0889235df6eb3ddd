"""The words a failed or cancelled booking ends with must be true: what was cancelled,
what was never booked, and which failure started the unwind."""

from __future__ import annotations

import re

import pytest
from temporalio.client import Client

from tests.conftest import ProviderService, cancel_during_the_unwind, make_request
from trip.models import Mode, Scenario
from trip.status import SagaStatus
from wiring.live_status import fetch_status
from wiring.outcome import await_outcome
from wiring.start import start_booking


@pytest.mark.parametrize("mode", list(Mode))
async def test_a_rolled_back_message_separates_what_was_cancelled_from_what_was_never_booked(
    dev_client: Client, worker: str, mode: Mode
) -> None:
    handle = await start_booking(dev_client, make_request(Scenario.HOTEL_DOWN, mode), task_queue=worker)
    outcome = await await_outcome(dev_client, handle)
    assert outcome.status is SagaStatus.ROLLED_BACK
    status = await fetch_status(dev_client, handle)
    undo = {s.name: s.undo_outcome for s in status.steps}
    cancelled = [name for name, result in undo.items() if result in ("cancelled", "already_cancelled")]
    never = [name for name, result in undo.items() if result == "not_booked"]
    assert "book_hotel" in never  # the hotel never answered with a booking
    found = re.search(
        r"Cancelled: (.*?); nothing to undo \(never booked, or the hold had lapsed\): (.*?)\.",
        outcome.error_message or "",
    )
    assert found, outcome.error_message
    assert set(found[1].split(", ")) == set(cancelled) or (found[1] == "nothing" and not cancelled)
    assert set(found[2].split(", ")) == set(never)
    assert sorted(outcome.error_details["cancelled"]) == sorted(cancelled)
    assert sorted(outcome.error_details["not_booked"]) == sorted(never)


async def test_a_cancel_during_the_unwind_keeps_the_failure_that_started_it(
    dev_client: Client, providers: ProviderService, worker: str
) -> None:
    handle, outcome = await cancel_during_the_unwind(dev_client, Mode.SEQUENTIAL, worker)
    assert outcome.status is SagaStatus.CANCELLED
    final = await fetch_status(dev_client, handle)
    assert final.failure is not None
    assert final.failure.type == "Cancelled" and final.failure.step == "book_flight"
    assert "cancelled while it was being undone" in final.failure.message
    assert "book_flight failed (SoldOut:" in final.failure.message
    assert providers.active_kinds(handle.id) == []
