"""The booking workflow on the dev server, with the real activities and providers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities import BookingActivities, make_http_client
from saga import StepState
from tests.conftest import (
    FAST_RETRY,
    ProviderService,
    cancel_during_the_unwind,
    make_request,
    wait_for_saga_status,
    wait_until,
)
from trip import SA_BOOKING_STATUS, SA_TRAVELLER, UPDATE_HOLDS
from trip.errors import ErrorType
from trip.models import CancelRequest, CancelResult, Mode, ReserveRequest, Scenario
from trip.scenarios import HELD, OUTRIGHT, SCENARIOS
from trip.status import TERMINAL, BookingStatus, SagaStatus
from wiring.codec import keyring_of, traveller_tag
from wiring.live_status import fetch_status
from wiring.outcome import await_outcome
from wiring.start import start_booking
from wiring.updates import decide, rejection_message, resolve, retry_compensation
from wiring.worker import WorkerTuning, build_worker
from workflows.booking import BookingWorkflow
from workflows.policies import UNDO_PRIORITY_KEY, undo_task_queue

S = StepState


def expected_steps(scenario: Scenario, mode: Mode) -> dict[str, tuple[StepState, int | None]]:
    """Final (state, attempts) per step; ``None`` where a race makes it either."""
    ok = {"book_car": (S.SUCCEEDED, 1), "book_hotel": (S.SUCCEEDED, 1), "book_flight": (S.SUCCEEDED, 1)}
    # In parallel mode a sibling still in flight when another step fails is
    # cancelled, so its attempt count is not known to the workflow.
    race = None if mode is Mode.PARALLEL else 1
    sold_out = {"book_car": (S.COMPENSATED, race), "book_hotel": (S.COMPENSATED, race), "book_flight": (S.FAILED, 1)}
    return {
        Scenario.HAPPY: ok,
        Scenario.SLOW: ok,
        Scenario.FLIGHT_FLAKY: {**ok, "book_flight": (S.SUCCEEDED, 4)},
        Scenario.FLIGHT_SOLD_OUT: sold_out,
        Scenario.CAR_CANCEL_FLAKY: sold_out,
        Scenario.CAR_CANCEL_BROKEN: {**sold_out, "book_car": (S.COMPENSATION_FAILED, race)},
        Scenario.CAR_CANCEL_OUTAGE: {**sold_out, "book_car": (S.COMPENSATION_FAILED, race)},
        Scenario.HOTEL_DOWN: {
            "book_car": (S.COMPENSATED, 1),
            "book_hotel": (S.COMPENSATED, 5),
            "book_flight": (S.COMPENSATED, 1) if mode is Mode.PARALLEL else (S.SKIPPED, 0),
        },
    }[scenario]


#: Scenarios that close by themselves; the others wait for an operator.
CLOSING = [s for s in OUTRIGHT if SagaStatus(SCENARIOS[s].expected) in TERMINAL]
NEEDING_AN_OPERATOR = [s for s in OUTRIGHT if SCENARIOS[s].expected is SagaStatus.NEEDS_ATTENTION]


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("scenario", CLOSING)
async def test_every_scenario_ends_as_documented(
    dev_client: Client, providers: ProviderService, worker: str, scenario: Scenario, mode: Mode
) -> None:
    handle = await start_booking(dev_client, make_request(scenario, mode), task_queue=worker)
    outcome = await await_outcome(dev_client, handle)
    status = await fetch_status(dev_client, handle)  # the query still answers on a closed workflow
    expected = SagaStatus(SCENARIOS[scenario].expected)
    assert outcome.status is expected and status.status is expected

    steps = {s.name: s for s in status.steps}
    for name, (state, attempts) in expected_steps(scenario, mode).items():
        assert steps[name].state is state, (name, steps[name])
        if attempts is not None:
            assert steps[name].attempts == attempts, (name, steps[name])

    active = providers.active_kinds(handle.id)
    if expected is SagaStatus.COMPLETED:
        assert outcome.result is not None
        assert set(outcome.result.confirmations) == {"car", "hotel", "flight"}
        assert active == ["car", "flight", "hotel"]
        assert status.compensation_plan  # everything booked could still be undone
    elif expected is SagaStatus.ROLLED_BACK:
        assert outcome.error_type == ErrorType.BOOKING_ROLLED_BACK.value
        failed = "book_hotel" if scenario is Scenario.HOTEL_DOWN else "book_flight"
        assert outcome.error_message and outcome.error_message.startswith(f"Trip not booked: {failed} failed")
        assert outcome.error_details["failed_step"] == failed
        assert active == []
        assert status.compensation_plan == []
    if scenario is Scenario.CAR_CANCEL_FLAKY:
        assert steps["book_car"].undo_attempts == 3

    description = await handle.describe()
    assert description.typed_search_attributes.get(SA_BOOKING_STATUS) == expected.value
    assert description.status == (
        WorkflowExecutionStatus.COMPLETED if expected is SagaStatus.COMPLETED else WorkflowExecutionStatus.FAILED
    )


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("scenario", NEEDING_AN_OPERATOR)
async def test_a_stuck_undo_waits_for_an_operator_who_ends_it(
    dev_client: Client, providers: ProviderService, worker: str, scenario: Scenario, mode: Mode
) -> None:
    handle = await start_booking(dev_client, make_request(scenario, mode), task_queue=worker)
    status = await wait_for_saga_status(handle, SagaStatus.NEEDS_ATTENTION)
    assert status.outstanding == ["book_car"]
    assert status.attention is not None
    [held] = status.attention.outstanding
    assert held.undo_error_type == ErrorType.PROVIDER_UNAVAILABLE.value and held.undo_attempts == 3
    steps = {s.name: s for s in status.steps}
    for name, (state, _) in expected_steps(scenario, mode).items():
        assert steps[name].state is state, (name, steps[name])
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.RUNNING
    assert description.typed_search_attributes.get(SA_BOOKING_STATUS) == SagaStatus.NEEDS_ATTENTION.value
    held_before = providers.active_kinds(handle.id)
    if mode is Mode.SEQUENTIAL:  # in parallel mode the car may have been cancelled in flight, unbooked
        assert held_before == ["car"] and held.confirmation is not None and held.confirmation.startswith("CAR-")

    # A rejected Update leaves no trace: the server drops the speculative workflow task.
    events_before = len((await handle.fetch_history()).events)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await resolve(handle, step="book_hotel", operator="ops", note="wrong step")
    assert "not outstanding" in rejection_message(caught.value)
    assert len((await handle.fetch_history()).events) == events_before

    if scenario is Scenario.CAR_CANCEL_OUTAGE:
        providers.lift_outage(handle.id, "car")
        result = await retry_compensation(handle, operator="ops", note="the car provider is back")
        assert result.outcomes == {"book_car": "compensated"}
    else:
        result = await resolve(handle, step="book_car", operator="ops", note="released by phone, ref 123")
    outcome = await await_outcome(dev_client, handle)
    assert outcome.status is SagaStatus.ROLLED_BACK and outcome.error_type == ErrorType.BOOKING_ROLLED_BACK.value
    assert [a["operator"] for a in outcome.error_details["operator_actions"]] == ["ops"]
    # Retried: the car is really released. Resolved: the ledger still holds it,
    # and the audit trail says who vouched for its release.
    assert providers.active_kinds(handle.id) == ([] if scenario is Scenario.CAR_CANCEL_OUTAGE else held_before)
    final = await fetch_status(dev_client, handle)
    assert [(a.operator, a.action) for a in final.audit] == [
        ("ops", "retry_compensation" if scenario is Scenario.CAR_CANCEL_OUTAGE else "resolve")
    ]
    assert (await handle.describe()).typed_search_attributes.get(SA_BOOKING_STATUS) == "ROLLED_BACK"


class Gates:
    def __init__(self) -> None:
        self.flight_started = asyncio.Event()
        self.release_flight = asyncio.Event()
        self.undo_hotel_started = asyncio.Event()
        self.release_undo_hotel = asyncio.Event()


async def test_status_query_mid_run_and_mid_unwind(
    dev_client: Client, providers: ProviderService, task_queue: str
) -> None:
    gates = Gates()
    async with make_http_client(providers.url) as http:
        real = BookingActivities(http)

        @activity.defn(name="book_flight")
        async def gated_flight(req: ReserveRequest) -> Any:
            gates.flight_started.set()
            await gates.release_flight.wait()
            raise ApplicationError("no seats", type=ErrorType.SOLD_OUT.value)

        @activity.defn(name="undo_book_hotel")
        async def gated_undo_hotel(req: CancelRequest) -> CancelResult:
            gates.undo_hotel_started.set()
            await gates.release_undo_hotel.wait()
            return await real.undo_book_hotel(req)

        acts = [
            real.book_car,
            real.book_hotel,
            gated_flight,
            real.undo_book_car,
            gated_undo_hotel,
            real.undo_book_flight,
        ]
        async with (
            Worker(dev_client, task_queue=task_queue, workflows=[BookingWorkflow], activities=acts),
            Worker(dev_client, task_queue=undo_task_queue(task_queue), activities=acts),
        ):
            req = make_request(Scenario.HAPPY, Mode.SEQUENTIAL, name="Grace Hopper")
            handle = await start_booking(
                dev_client, req, workflow_id=f"trip-{uuid.uuid4().hex[:8]}", task_queue=task_queue
            )
            await gates.flight_started.wait()
            status = await fetch_status(dev_client, handle)
            assert status.status is SagaStatus.RUNNING
            assert [(s.name, s.state) for s in status.steps] == [
                ("book_car", S.SUCCEEDED),
                ("book_hotel", S.SUCCEEDED),
                ("book_flight", S.RUNNING),
            ]
            assert status.steps[2].attempts == 1  # live, from the server's pending activity
            assert set(status.confirmations) == {"car", "hotel"}
            # The flight's undo is registered before it runs: it is on the plan.
            assert status.compensation_plan == ["book_flight", "book_hotel", "book_car"]

            gates.release_flight.set()
            await gates.undo_hotel_started.wait()
            status = await fetch_status(dev_client, handle)
            assert status.status is SagaStatus.COMPENSATING
            assert status.failure is not None and status.failure.step == "book_flight"
            assert status.failure.type == ErrorType.SOLD_OUT.value
            assert {s.name: s.state for s in status.steps}["book_hotel"] is S.COMPENSATING
            assert status.compensation_plan == ["book_car"]
            assert (await handle.describe()).typed_search_attributes.get(SA_BOOKING_STATUS) == "COMPENSATING"

            gates.release_undo_hotel.set()
            outcome = await await_outcome(dev_client, handle)
    assert outcome.status is SagaStatus.ROLLED_BACK
    assert providers.active_kinds(handle.id) == []
    description = await handle.describe()
    # Visibility holds a keyed tag of the name, never the name itself.
    tag = traveller_tag("Grace Hopper", keyring_of(dev_client.data_converter))
    assert description.typed_search_attributes.get(SA_TRAVELLER) == tag
    assert "Grace" not in tag
    assert "Grace Hopper" in (await description.static_summary() or "")


@pytest.mark.parametrize("scenario", [Scenario.HAPPY, Scenario.CAR_CANCEL_FLAKY])
async def test_workflow_code_passes_the_strict_sandbox(
    dev_client: Client, providers: ProviderService, task_queue: str, scenario: Scenario
) -> None:
    # The shipped worker imports the workflow module once (see wiring.worker);
    # the SDK's strict sandbox re-imports it per run and rejects
    # non-deterministic calls, so the workflow must pass it too.
    async with (
        make_http_client(providers.url) as http,
        build_worker(
            dev_client, BookingActivities(http), task_queue=task_queue, tuning=WorkerTuning(strict_sandbox=True)
        ),
    ):
        handle = await start_booking(dev_client, make_request(scenario, Mode.PARALLEL), task_queue=task_queue)
        outcome = await await_outcome(dev_client, handle)
    assert outcome.status is SagaStatus(SCENARIOS[scenario].expected)
    assert providers.active_kinds(handle.id) == (["car", "flight", "hotel"] if scenario is Scenario.HAPPY else [])


async def test_cancelling_a_parallel_booking_while_its_steps_run_undoes_everything(
    dev_client: Client, providers: ProviderService, worker: str
) -> None:
    # `slow`: every provider call takes 1.5 s, so all three bookings are in flight.
    handle = await start_booking(dev_client, make_request(Scenario.SLOW, Mode.PARALLEL), task_queue=worker)
    await wait_until(
        lambda: fetch_status(dev_client, handle),
        lambda status: sum(s.state is S.RUNNING for s in status.steps) == 3,
        what="all three bookings to be in flight",
    )
    await handle.cancel()
    outcome = await await_outcome(dev_client, handle)
    assert outcome.status is SagaStatus.CANCELLED
    final = await fetch_status(dev_client, handle)
    assert {s.state for s in final.steps} == {S.COMPENSATED}
    # Each booking call either landed and was cancelled, or was voided before it could land.
    assert providers.active_kinds(handle.id) == []


async def test_cancelling_a_parallel_booking_while_it_unwinds_still_finishes_the_unwind(
    dev_client: Client, providers: ProviderService, worker: str
) -> None:
    handle, outcome = await cancel_during_the_unwind(dev_client, Mode.PARALLEL, worker)
    assert outcome.status is SagaStatus.CANCELLED
    final = await fetch_status(dev_client, handle)
    assert final.status is SagaStatus.CANCELLED and final.outstanding == []
    assert {s.name: s.state for s in final.steps}["book_car"] is S.COMPENSATED
    assert providers.active_kinds(handle.id) == []


def ledger_states(providers: ProviderService, booking_id: str) -> dict[str, str]:
    return {r["kind"]: r["status"] for r in providers.reservations(booking_id)}


async def scheduled_activities(handle: Any) -> list[str]:
    history = await handle.fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("scenario", [Scenario.HAPPY, *HELD])
async def test_every_held_scenario_ends_as_documented_with_the_ledger_to_match(
    dev_client: Client, providers: ProviderService, worker: str, scenario: Scenario, mode: Mode
) -> None:
    req = make_request(scenario, mode).model_copy(update={"confirm_within": timedelta(minutes=10)})
    handle = await start_booking(dev_client, req, task_queue=worker)
    held = await wait_for_saga_status(handle, SagaStatus.AWAITING_CONFIRMATION)
    assert ledger_states(providers, handle.id) == {"car": "held", "hotel": "held", "flight": "held"}
    assert held.confirmation is not None
    description = await handle.describe()
    assert description.typed_search_attributes.get(SA_BOOKING_STATUS) == SagaStatus.AWAITING_CONFIRMATION.value

    await decide(handle, confirm=True, note="looks right")
    expected = SagaStatus(SCENARIOS[scenario].expected)
    if expected is SagaStatus.NEEDS_ATTENTION:
        stuck = await wait_for_saga_status(handle, SagaStatus.NEEDS_ATTENTION)
        assert stuck.past_pivot and stuck.outstanding == ["finalize_hotel"]
        ticket = stuck.ticket
        # Past the pivot nothing is ever undone: no undo was even scheduled.
        assert not any(name.startswith("undo_") for name in await scheduled_activities(handle))
        assert ledger_states(providers, handle.id) == {"car": "active", "hotel": "held", "flight": "active"}
        await resolve(handle, step="finalize_hotel", operator="ops", note="hotel confirmed by phone")
        expected = SagaStatus.COMPLETED
    outcome = await await_outcome(dev_client, handle)
    assert outcome.status is expected, outcome
    status = await fetch_status(dev_client, handle)
    if expected is SagaStatus.COMPLETED:
        assert outcome.result is not None and outcome.result.ticket
        assert status.ticket == outcome.result.ticket and status.past_pivot
        if scenario is not Scenario.FINALIZE_HOTEL_BROKEN:
            ticket = outcome.result.ticket
            assert ledger_states(providers, handle.id) == {"car": "active", "hotel": "active", "flight": "active"}
        [flight] = [r for r in providers.reservations(handle.id) if r["kind"] == "flight"]
        assert flight["ticket_number"] == ticket
        if scenario is Scenario.FINALIZE_HOTEL_FLAKY:
            assert {s.name: s.attempts for s in status.steps}["finalize_hotel"] == 3
    else:
        assert expected is SagaStatus.ROLLED_BACK  # ticketing-down
        assert outcome.error_details["failed_step"] == "ticket_flight"
        assert outcome.error_details["cause_type"] == ErrorType.TICKETING_REFUSED.value
        assert providers.active_kinds(handle.id) == []
        assert set(ledger_states(providers, handle.id).values()) == {"cancelled"}


async def test_a_declined_trip_releases_every_hold_at_the_provider(
    dev_client: Client, providers: ProviderService, worker: str
) -> None:
    req = make_request(Scenario.HAPPY, Mode.PARALLEL).model_copy(update={"confirm_within": timedelta(minutes=10)})
    handle = await start_booking(dev_client, req, task_queue=worker)
    await wait_for_saga_status(handle, SagaStatus.AWAITING_CONFIRMATION)
    await decide(handle, confirm=False, note="changed my mind")
    outcome = await await_outcome(dev_client, handle)
    assert outcome.status is SagaStatus.ROLLED_BACK
    assert outcome.error_details["cause_type"] == ErrorType.DECLINED.value
    assert ledger_states(providers, handle.id) == {"car": "cancelled", "hotel": "cancelled", "flight": "cancelled"}
    assert "ticket_flight" not in await scheduled_activities(handle)


@pytest.mark.parametrize(("overrides", "expected_key"), [({}, UNDO_PRIORITY_KEY), ({"undo_priority_key": 3}, 3)])
async def test_undos_are_scheduled_ahead_of_bookings_on_a_backlogged_queue(
    dev_client: Client, providers: ProviderService, worker: str, overrides: dict[str, int], expected_key: int
) -> None:
    retry = FAST_RETRY.model_copy(update=overrides)
    req = make_request(Scenario.FLIGHT_SOLD_OUT).model_copy(update={"retry": retry})
    handle = await start_booking(dev_client, req, task_queue=worker)
    outcome = await await_outcome(dev_client, handle)
    assert outcome.status is SagaStatus.ROLLED_BACK
    keys: dict[str, int] = {}
    for event in (await handle.fetch_history()).events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            keys[attrs.activity_type.name] = attrs.priority.priority_key
    # The server reads what the workflow asked for: undos at the undo priority,
    # bookings unset (the default, 3), so a backlog of bookings cannot hold a rollback back.
    assert keys == {
        "book_car": 0,
        "book_hotel": 0,
        "book_flight": 0,
        "undo_book_car": expected_key,
        "undo_book_hotel": expected_key,
    }


async def test_undos_run_on_the_undo_queue_served_by_the_workers_own_undo_worker(
    dev_client: Client, providers: ProviderService, worker: str
) -> None:
    handle = await start_booking(dev_client, make_request(Scenario.FLIGHT_SOLD_OUT), task_queue=worker)
    outcome = await await_outcome(dev_client, handle)
    # The rollback finished, so the shipped worker polls the undo queue too.
    assert outcome.status is SagaStatus.ROLLED_BACK
    assert providers.active_kinds(handle.id) == []
    queues: dict[str, str] = {}
    for event in (await handle.fetch_history()).events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            queues[attrs.activity_type.name] = attrs.task_queue.name
    # Bookings wait in the booking queue's line; undos have a queue (and slots) of their own.
    assert queues == {
        "book_car": worker,
        "book_hotel": worker,
        "book_flight": worker,
        "undo_book_car": undo_task_queue(worker),
        "undo_book_hotel": undo_task_queue(worker),
    }


class SlotHogs(BookingActivities):
    """The shipped activities, except that the cars of the bookings in ``held`` wait for
    ``release`` (each holds a booking slot meanwhile), and the flight of ``gated`` waits for ``go``."""

    def __init__(self, http: Any, held: set[str], gated: str) -> None:
        super().__init__(http)
        self.held, self.gated = held, gated
        self.holding: set[str] = set()
        self.go, self.release = asyncio.Event(), asyncio.Event()

    @activity.defn(name="book_car")
    async def book_car(self, req: ReserveRequest) -> Any:
        if req.booking_id in self.held:
            self.holding.add(req.booking_id)
            await self.release.wait()
        return await super().book_car(req)

    @activity.defn(name="book_flight")
    async def book_flight(self, req: ReserveRequest) -> Any:
        if req.booking_id == self.gated:
            await self.go.wait()
        return await super().book_flight(req)


async def test_a_rollback_finishes_while_bookings_hold_every_booking_slot(
    dev_client: Client, providers: ProviderService, task_queue: str
) -> None:
    rollback, first, second = (f"trip-{uuid.uuid4().hex[:8]}" for _ in range(3))
    async with make_http_client(providers.url) as http:
        hogs = SlotHogs(http, held={first, second}, gated=rollback)
        # Two booking slots: the rollback's flight holds one, the first hog's car the other,
        # and the second hog's car waits for the first free slot.
        tuning = WorkerTuning(max_concurrent_activities=2)
        async with build_worker(dev_client, hogs, task_queue=task_queue, tuning=tuning):
            req = make_request(Scenario.FLIGHT_SOLD_OUT, Mode.SEQUENTIAL)
            handle = await start_booking(dev_client, req, workflow_id=rollback, task_queue=task_queue)
            await wait_until(lambda: scheduled_activities(handle), lambda a: "book_flight" in a, what="its flight")
            happy = make_request(mode=Mode.SEQUENTIAL)
            await start_booking(dev_client, happy, workflow_id=first, task_queue=task_queue)
            await wait_until(lambda: hogs.holding, lambda h: first in h, what="the first hog holding a slot")
            waiting = await start_booking(dev_client, happy, workflow_id=second, task_queue=task_queue)
            await wait_until(lambda: scheduled_activities(waiting), lambda a: "book_car" in a, what="the second hog")
            # The flight is refused; its slot goes to the second hog's car, queued before any undo.
            hogs.go.set()
            await wait_until(lambda: hogs.holding, lambda h: second in h, what="the second hog holding a slot")
            await wait_until(
                handle.describe, lambda d: d.status is not WorkflowExecutionStatus.RUNNING, what="the rollback closed"
            )
            outcome = await await_outcome(dev_client, handle)
            # Every booking slot is still held: the undos ran in the undo Worker's own slots.
            assert hogs.holding == {first, second} and not hogs.release.is_set()
            hogs.release.set()
    assert outcome.status is SagaStatus.ROLLED_BACK
    assert providers.active_kinds(rollback) == []


@pytest.mark.parametrize(
    ("scenario", "answers", "active"),
    [
        (Scenario.HAPPY, {SagaStatus.COMPLETED}, ["car", "flight", "hotel"]),
        (Scenario.FLIGHT_SOLD_OUT, {SagaStatus.COMPENSATING, SagaStatus.ROLLED_BACK}, []),
    ],
)
async def test_update_with_start_answers_once_the_holds_are_placed_or_the_unwind_began(
    dev_client: Client,
    providers: ProviderService,
    worker: str,
    scenario: Scenario,
    answers: set[SagaStatus],
    active: list[str],
) -> None:
    workflow_id = f"trip-uws-{uuid.uuid4().hex[:8]}"
    operation = WithStartWorkflowOperation(
        BookingWorkflow.run,
        make_request(scenario),
        id=workflow_id,
        task_queue=worker,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    status = await dev_client.execute_update_with_start_workflow(
        UPDATE_HOLDS, start_workflow_operation=operation, result_type=BookingStatus
    )
    # One call started the booking and answered with how it went, not "running".
    assert status.status in answers
    if status.status is SagaStatus.COMPLETED:
        assert set(status.confirmations) == {"car", "hotel", "flight"}
        assert providers.active_kinds(workflow_id) == active
    await await_outcome(dev_client, await operation.workflow_handle())
    assert providers.active_kinds(workflow_id) == active
