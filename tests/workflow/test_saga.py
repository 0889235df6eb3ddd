"""The generic saga core, on the time-skipping test server, with mock activities."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from saga import PATCH_PIVOT_ONE_CALL, Compensation, Saga, StepKind
from tests.conftest import wait_until
from tests.workflow.saga_workflows import Plan, SagaTestWorkflow, Step

_S = timedelta(seconds=1)


@dataclass
class Provider:
    """What the mock activities did, in order, and gates the test controls."""

    booked: list[str] = field(default_factory=list)
    undone: list[str] = field(default_factory=list)
    undo_calls: list[str] = field(default_factory=list)
    started: dict[str, asyncio.Event] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    def event(self, table: dict[str, asyncio.Event], name: str) -> asyncio.Event:
        return table.setdefault(name, asyncio.Event())


class MockActivities:
    def __init__(self, provider: Provider) -> None:
        self.p = provider

    @activity.defn(name="do_step")
    async def do_step(self, step: Step) -> dict[str, int]:
        self.p.event(self.p.started, step.name).set()
        if step.behaviour == "fail":
            raise ApplicationError(f"{step.name} refused", type="Refused", non_retryable=True)
        if step.behaviour == "refuse":
            # A business "no" as activities raise it: typed, and the policy decides.
            raise ApplicationError(f"{step.name} refused", type="Refused")
        if step.behaviour == "flaky" and activity.info().attempt < 3:
            raise ApplicationError(f"{step.name}: try again", type="Unavailable")
        if step.behaviour == "book_then_hang":
            self.p.booked.append(step.name)  # booked at the provider, but the answer never arrives
            await asyncio.Event().wait()
        if step.behaviour == "block":
            await asyncio.Event().wait()
        if step.behaviour == "gate":
            await self.p.event(self.p.gates, step.name).wait()
        self.p.booked.append(step.name)
        return {"attempt": activity.info().attempt}

    @activity.defn(name="undo_step")
    async def undo_step(self, step: Step) -> dict[str, int]:
        self.p.undo_calls.append(step.name)
        self.p.event(self.p.started, f"undo:{step.name}").set()
        if step.undo == "fail":
            raise ApplicationError(f"cannot undo {step.name}", type="UndoBroken")
        if step.undo == "gate":
            await self.p.event(self.p.gates, step.name).wait()
        if step.undo == "fail_until_gate" and not self.p.event(self.p.gates, step.name).is_set():
            raise ApplicationError(f"cannot undo {step.name} yet", type="UndoBroken")
        if step.undo == "barrier":
            # Every undo in the test must be running at once, or none finishes.
            self.p.event(self.p.started, f"undo:{step.name}").set()
            await asyncio.wait_for(self.p.event(self.p.gates, "all-undos").wait(), timeout=2)
        if step.name in self.p.booked:
            self.p.undone.append(step.name)
        return {"attempt": activity.info().attempt}


@pytest_asyncio.fixture
async def harness(ts_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[tuple[Provider, str]]:
    provider = Provider()
    acts = MockActivities(provider)
    async with Worker(
        ts_env.client, task_queue=task_queue, workflows=[SagaTestWorkflow], activities=[acts.do_step, acts.undo_step]
    ):
        yield provider, task_queue


async def run_plan(env: WorkflowEnvironment, task_queue: str, plan: Plan) -> BaseException | None:
    handle = await env.client.start_workflow(
        SagaTestWorkflow.run, plan, id=f"saga-{uuid.uuid4().hex}", task_queue=task_queue
    )
    try:
        await handle.result()
    except WorkflowFailureError as err:
        # A failed step surfaces as ActivityError; the saga's own error does not.
        cause = err.cause
        return cause.cause if isinstance(cause, ActivityError) else cause
    return None


async def test_unwinds_in_reverse_order_and_skips_the_refused_step(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    provider, tq = harness
    cause = await run_plan(ts_env, tq, Plan([Step("a"), Step("b"), Step("c"), Step("d", "fail")]))
    assert isinstance(cause, ApplicationError) and cause.type == "Refused"
    # d refused, so nothing of d exists and its undo is dropped.
    assert provider.undo_calls == ["c", "b", "a"]
    assert provider.undone == ["c", "b", "a"]


async def test_parallel_unwind_runs_every_undo_at_once(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    provider, tq = harness

    async def open_barrier() -> None:
        for name in ("a", "b", "c"):
            await provider.event(provider.started, f"undo:{name}").wait()
        provider.event(provider.gates, "all-undos").set()

    barrier = asyncio.ensure_future(open_barrier())
    steps = [Step("a", undo="barrier"), Step("b", undo="barrier"), Step("c", undo="barrier"), Step("d", "fail")]
    cause = await run_plan(ts_env, tq, Plan(steps, parallel_compensation=True))
    await barrier
    assert isinstance(cause, ApplicationError) and cause.type == "Refused"
    assert sorted(provider.undone) == ["a", "b", "c"]


async def test_sequential_unwind_cannot_pass_the_barrier(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    # The control for the test above: in reverse order the first undo waits
    # for the others forever, times out, and the failure is reported.
    provider, tq = harness
    steps = [Step("a", undo="barrier"), Step("b", undo="barrier"), Step("d", "fail")]
    cause = await run_plan(ts_env, tq, Plan(steps, parallel_compensation=False, undo_attempts=1))
    assert isinstance(cause, ApplicationError) and cause.type == "CompensationFailed"
    assert provider.undo_calls == ["b", "a"] and provider.undone == []


async def test_continues_past_failed_undos_and_reports_them_all(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    provider, tq = harness
    steps = [Step("a", undo="fail"), Step("b"), Step("c", undo="fail"), Step("d", "fail")]
    cause = await run_plan(ts_env, tq, Plan(steps, undo_attempts=2))
    assert isinstance(cause, ApplicationError) and cause.type == "CompensationFailed"
    assert [d["step"] for d in cause.details] == ["c", "a"]
    assert all(d["type"] == "UndoBroken" for d in cause.details)
    assert "2 compensation(s) failed" in cause.message
    # c failed first, and b and a were still tried; each failed undo used its budget.
    assert provider.undo_calls == ["c", "c", "b", "a", "a"]
    assert provider.undone == ["b"]


async def test_undo_is_registered_before_the_step_so_a_timed_out_booking_is_undone(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    provider, tq = harness
    cause = await run_plan(ts_env, tq, Plan([Step("a"), Step("b", "book_then_hang")], step_timeout_s=2))
    assert isinstance(cause, TimeoutError)
    assert provider.booked == ["a", "b"]
    assert provider.undone == ["b", "a"]


async def test_cancel_during_a_step_compensates_then_ends_cancelled(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    provider, tq = harness
    handle = await ts_env.client.start_workflow(
        SagaTestWorkflow.run,
        Plan([Step("a"), Step("b", "block"), Step("c")]),
        id=f"saga-{uuid.uuid4().hex}",
        task_queue=tq,
    )
    await provider.event(provider.started, "b").wait()
    assert await handle.query(SagaTestWorkflow.plan) == ["b", "a"]
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert isinstance(info.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    # b may or may not have booked: its undo ran either way.
    assert provider.undo_calls == ["b", "a"]
    assert await handle.query(SagaTestWorkflow.states) == {"a": "compensated", "b": "compensated", "c": "skipped"}


async def test_cancel_during_the_unwind_still_finishes_it(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    provider, tq = harness
    steps = [Step("a"), Step("b", undo="gate"), Step("c", "fail")]
    handle = await ts_env.client.start_workflow(
        SagaTestWorkflow.run, Plan(steps), id=f"saga-{uuid.uuid4().hex}", task_queue=tq
    )
    await provider.event(provider.started, "undo:b").wait()
    # Once cancel() returns the request is in the history, ahead of the undo's
    # completion, so the workflow sees the cancellation mid-unwind.
    await handle.cancel()
    provider.event(provider.gates, "b").set()
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert isinstance(info.value.cause, CancelledError)
    assert provider.undone == ["b", "a"]
    assert await handle.query(SagaTestWorkflow.states) == {"a": "compensated", "b": "compensated", "c": "failed"}


async def test_outstanding_undos_wait_for_an_operator_in_any_workflow(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    """The operator mechanism is the core's: this non-booking workflow gets it in a few lines."""
    provider, tq = harness
    plan = Plan(
        [Step("a", undo="fail_until_gate"), Step("b", undo="fail"), Step("c"), Step("d", "fail")],
        undo_attempts=2,
        wait_for_operator=True,
    )
    handle = await ts_env.client.start_workflow(
        SagaTestWorkflow.run, plan, id=f"saga-{uuid.uuid4().hex}", task_queue=tq
    )
    await wait_until(
        lambda: handle.query(SagaTestWorkflow.states),
        lambda states: states.get("a") == "compensation-failed",
        what="a to be compensation-failed",
    )
    states = await handle.query(SagaTestWorkflow.states)
    assert states == {"a": "compensation-failed", "b": "compensation-failed", "c": "compensated", "d": "failed"}

    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(SagaTestWorkflow.retry, ["c"])  # compensated: not outstanding
    provider.event(provider.gates, "a").set()  # a's provider is back
    assert await handle.execute_update(SagaTestWorkflow.retry, None) == {
        "a": "compensated",
        "b": "compensation-failed",
    }
    await handle.execute_update(SagaTestWorkflow.resolve, "b")
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert isinstance(caught.value.cause, ApplicationError) and caught.value.cause.type == "RolledBack"
    assert await handle.query(SagaTestWorkflow.audit) == [
        ("retry_compensation", ["a", "b"], {"a": "compensated", "b": "compensation-failed"}),
        ("resolve", ["b"], {"b": "resolved"}),
    ]
    assert "a" in provider.undone


async def test_compensate_cancels_and_drains_concurrent_steps_before_any_undo(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    """The core owns its in-flight steps: no undo is scheduled while its step may still answer."""
    provider, tq = harness
    plan = Plan([Step("a", "gate"), Step("b", "fail")], concurrent_steps=True, parallel_compensation=True)
    handle = await ts_env.client.start_workflow(
        SagaTestWorkflow.run, plan, id=f"saga-{uuid.uuid4().hex}", task_queue=tq
    )
    await provider.event(provider.started, "undo:a").wait()
    provider.event(provider.gates, "a").set()  # a's answer arrives late, after its undo started
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    events = (await handle.fetch_history()).events
    kinds = [e.event_type for e in events]
    cancel_requested = kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED)
    undo_scheduled = next(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "undo_step"
    )
    assert cancel_requested < undo_scheduled
    states = await handle.query(SagaTestWorkflow.states)
    assert states == {"a": "compensated", "b": "failed"}  # a late success never overwrites the undo


async def test_past_the_pivot_a_failure_waits_for_an_operator_and_nothing_is_undone(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    """Any workflow gets the pivot: compensatable steps, then the pivot, then retriable ones."""
    provider, tq = harness
    plan = Plan([Step("reserve"), Step("charge"), Step("ship", "fail"), Step("email")], pivot="charge")
    handle = await ts_env.client.start_workflow(
        SagaTestWorkflow.run, plan, id=f"saga-{uuid.uuid4().hex}", task_queue=tq
    )
    await wait_until(
        lambda: handle.query(SagaTestWorkflow.states),
        lambda states: states.get("email") == "succeeded",
        what="email to be succeeded",
    )
    assert (await handle.query(SagaTestWorkflow.states))["ship"] == "failed"
    assert await handle.query(SagaTestWorkflow.plan) == []  # the stack is sealed
    await handle.execute_update(SagaTestWorkflow.resolve, "ship")
    # ... and compensate() itself refuses past the pivot.
    assert await handle.result() == ["reserve", "charge", "ship", "email", "sealed"]
    assert provider.undo_calls == []


async def test_a_refused_pivot_unwinds_what_came_before_it(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    provider, tq = harness
    plan = Plan([Step("reserve"), Step("charge", "fail"), Step("ship")], pivot="charge")
    error = await run_plan(ts_env, tq, plan)
    assert isinstance(error, ApplicationError) and error.type == "Refused"
    assert provider.undone == ["reserve"] and "ship" not in provider.booked


async def test_step_kinds_are_checked_before_anything_runs() -> None:
    saga = Saga()
    undo = Compensation("undo_step", None)
    with pytest.raises(ValueError, match="only run after the pivot"):
        await saga.run("ship", "do_step", None, undo=None, start_to_close_timeout=_S, kind=StepKind.RETRIABLE)
    with pytest.raises(ValueError, match="cannot have an undo"):
        await saga.run("charge", "do_step", None, undo=undo, start_to_close_timeout=_S, kind=StepKind.PIVOT)


async def test_the_policy_decides_a_refusal_and_the_undo_of_the_refused_step_is_dropped(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    provider, tq = harness
    plan = Plan([Step("a"), Step("b", "refuse")], non_retryable=["Refused"])
    cause = await run_plan(ts_env, tq, plan)
    assert isinstance(cause, ApplicationError) and cause.type == "Refused" and not cause.non_retryable
    assert provider.undo_calls == ["a"]


async def test_a_pivot_is_asked_again_until_it_answers_and_only_a_listed_type_ends_it(
    ts_env: WorkflowEnvironment, harness: tuple[Provider, str]
) -> None:
    provider, tq = harness
    # Every step's own budget is one attempt: the pivot alone has no cap.
    plan = Plan([Step("reserve"), Step("charge", "flaky"), Step("ship")], pivot="charge", non_retryable=["Refused"])
    handle = await ts_env.client.start_workflow(
        SagaTestWorkflow.run, plan, id=f"saga-{uuid.uuid4().hex}", task_queue=tq
    )
    assert await handle.result() == ["reserve", "charge", "ship", "sealed"]
    assert provider.booked == ["reserve", "charge", "ship"] and provider.undo_calls == []
    # New runs mark the one-call pivot, so histories recorded before it keep the old loop on replay.
    history = await handle.fetch_history()
    markers = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert [m.marker_name for m in markers] == ["core_patch"]
    [patch] = await ts_env.client.data_converter.decode(markers[0].details["patch-data"].payloads)
    assert patch["id"] == PATCH_PIVOT_ONE_CALL
    refused = Plan([Step("reserve"), Step("charge", "refuse"), Step("ship")], pivot="charge", non_retryable=["Refused"])
    cause = await run_plan(ts_env, tq, refused)
    assert isinstance(cause, ApplicationError) and cause.type == "Refused"
    assert provider.undone == ["reserve"] and provider.booked.count("ship") == 1
