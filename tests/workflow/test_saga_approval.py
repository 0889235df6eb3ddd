"""The generic saga's undo gate on the time-skipping server: held undos, decisions, deadlines, audit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.conftest import own_time_skipping_env, wait_until
from tests.workflow.approval_workflows import ApprovalPlan, ApprovalTestWorkflow, CostlyStep, Decision, Outcome
from wiring.codec import data_converter


class Calls:
    def __init__(self) -> None:
        self.undone: list[str] = []

    @activity.defn(name="costly_step")
    async def costly_step(self, step: CostlyStep) -> None:
        if step.behaviour == "fail":
            raise ApplicationError(f"{step.name} refused", type="Refused", non_retryable=True)

    @activity.defn(name="undo_costly_step")
    async def undo_costly_step(self, step: CostlyStep) -> None:
        self.undone.append(step.name)


@pytest_asyncio.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this module's own: the deadline tests need it to skip, and the
    Java test server stops skipping for good once another test has left an activity running on it."""
    async with own_time_skipping_env(data_converter()) as env:
        yield env


@pytest_asyncio.fixture
async def harness(ts_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[tuple[Calls, str]]:
    calls = Calls()
    async with Worker(
        ts_env.client,
        task_queue=task_queue,
        workflows=[ApprovalTestWorkflow],
        activities=[calls.costly_step, calls.undo_costly_step],
    ):
        yield calls, task_queue


#: b's undo costs money; d is refused, so a, b and c unwind.
STEPS = [CostlyStep("a"), CostlyStep("b", undo_cost="120.50"), CostlyStep("c"), CostlyStep("d", behaviour="fail")]


async def start(env: WorkflowEnvironment, tq: str, plan: ApprovalPlan) -> WorkflowHandle[ApprovalTestWorkflow, Outcome]:
    return await env.client.start_workflow(
        ApprovalTestWorkflow.run, plan, id=f"approval-{uuid.uuid4().hex}", task_queue=tq
    )


async def held(handle: WorkflowHandle[ApprovalTestWorkflow, Outcome], **also: str) -> dict[str, str]:
    """Wait until b's undo is held (and the other steps in ``also`` are in their states)."""
    wanted = {"b": "awaiting-approval", **also}
    outcome = await wait_until(
        lambda: handle.query(ApprovalTestWorkflow.outcome),
        lambda o: all(o.states.get(k) == v for k, v in wanted.items()),
        what=f"states {wanted}",
    )
    return outcome.states


async def test_sequential_unwind_waits_at_the_held_undo_until_it_is_approved(
    ts_env: WorkflowEnvironment, harness: tuple[Calls, str]
) -> None:
    calls, tq = harness
    handle = await start(ts_env, tq, ApprovalPlan(STEPS))
    states = await held(handle, c="compensated")
    # Reverse order is the contract: a's undo waits behind b's decision.
    assert states["a"] == "succeeded" and calls.undone == ["c"]
    state = await handle.execute_update(ApprovalTestWorkflow.approve_undo, Decision("b", "ada", "fee accepted"))
    assert state == "compensated"
    outcome = await handle.result()
    assert outcome.states == {"a": "compensated", "b": "compensated", "c": "compensated", "d": "failed"}
    assert calls.undone == ["c", "b", "a"]
    [action] = outcome.actions
    assert (action["operator"], action["action"], action["steps"], action["note"]) == (
        "ada",
        "approve_undo",
        "b",
        "fee accepted",
    )
    assert (action["cost"], action["currency"]) == ("120.50", "EUR")
    assert action["outcomes"] == repr({"b": "compensated"})


async def test_parallel_unwind_runs_the_other_undos_and_keep_leaves_the_step_in_place(
    ts_env: WorkflowEnvironment, harness: tuple[Calls, str]
) -> None:
    calls, tq = harness
    handle = await start(ts_env, tq, ApprovalPlan(STEPS, parallel_compensation=True))
    await held(handle, a="compensated", c="compensated")
    assert sorted(calls.undone) == ["a", "c"]
    assert await handle.execute_update(ApprovalTestWorkflow.keep, Decision("b", "ada", "guest will come")) == "kept"
    outcome = await handle.result()  # the unwind completes: a kept step is no failed undo
    assert outcome.states["b"] == "kept"
    assert "b" not in calls.undone
    [action] = outcome.actions
    assert (action["action"], action["operator"], action["cost"]) == ("keep", "ada", "120.50")


@pytest.mark.parametrize(("default", "state"), [("approve", "compensated"), ("keep", "kept")])
async def test_past_the_deadline_the_default_decision_applies_and_is_audited_as_such(
    ts_env: WorkflowEnvironment, harness: tuple[Calls, str], default: str, state: str
) -> None:
    calls, tq = harness
    plan = ApprovalPlan(STEPS, approval_timeout_s=3600, approval_default=default)
    outcome = await (await start(ts_env, tq, plan)).result()  # time skips to the deadline
    assert outcome.states["b"] == state
    assert ("b" in calls.undone) is (default == "approve")
    assert calls.undone[-1] == "a"  # the sequential unwind went on after the decision
    [action] = outcome.actions
    assert action["operator"] == "deadline" and action["action"] == ("approve_undo" if default == "approve" else "keep")
    assert f"the default, {default}" in action["note"] and action["cost"] == "120.50"


async def test_decisions_are_refused_unless_the_step_awaits_one(
    ts_env: WorkflowEnvironment, harness: tuple[Calls, str]
) -> None:
    _, tq = harness
    handle = await start(ts_env, tq, ApprovalPlan(STEPS))
    await held(handle)
    for step, reason in [
        ("c", "step 'c' is not awaiting approval (it is compensated); awaiting approval: b"),
        ("zz", "unknown step 'zz'"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(ApprovalTestWorkflow.approve_undo, Decision(step))
        assert reason in str(refused.value.cause)
    await handle.execute_update(ApprovalTestWorkflow.keep, Decision("b"))
    with pytest.raises(WorkflowUpdateFailedError) as twice:
        await handle.execute_update(ApprovalTestWorkflow.approve_undo, Decision("b"))
    assert "already decided: keep" in str(twice.value.cause)
    outcome = await handle.result()
    assert [a["action"] for a in outcome.actions] == ["keep"]  # refusals leave no trace in the audit


async def test_a_cancel_while_an_undo_is_held_does_not_decide_for_the_operator(
    ts_env: WorkflowEnvironment, harness: tuple[Calls, str]
) -> None:
    calls, tq = harness
    handle = await start(ts_env, tq, ApprovalPlan(STEPS))
    await held(handle)
    await handle.cancel()
    # Still held: the unwind runs behind a shield, and cancelling does not pick a decision.
    await held(handle)
    assert await handle.execute_update(ApprovalTestWorkflow.approve_undo, Decision("b")) == "compensated"
    with pytest.raises(WorkflowFailureError) as ended:
        await handle.result()
    assert isinstance(ended.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert calls.undone == ["c", "b", "a"]
