"""Sending the booking workflow's Updates: the traveller's decision and the operator's actions.

Each sender waits for the workflow's answer. A call the workflow's validator
rejects raises ``WorkflowUpdateFailedError``, whose ``cause`` carries the
validator's message (``rejection_message``); nothing reaches history. One sent
to a workflow paused in Temporal (``temporal workflow pause``) is refused by the
server before the workflow sees it: ``is_paused`` tells that refusal apart, for
the web app and the CLI alike. Never import this from workflow code.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.exceptions import FailureError
from temporalio.service import RPCError, RPCStatusCode

from trip import (
    UPDATE_APPROVE_UNDO,
    UPDATE_CONFIRM,
    UPDATE_DECLINE,
    UPDATE_KEEP,
    UPDATE_RESOLVE,
    UPDATE_RETRY_COMPENSATION,
)
from trip.status import (
    ConfirmInput,
    ConfirmResult,
    OperatorActionResult,
    ResolveInput,
    RetryCompensationInput,
    UndoDecisionInput,
)


async def retry_compensation(
    handle: WorkflowHandle[Any, Any],
    *,
    operator: str,
    note: str,
    steps: list[str] | None = None,
    batch: str | None = None,
    update_id: str | None = None,
) -> OperatorActionResult:
    """Send the ``retry_compensation`` Update and wait until the undos have run.

    A bulk operation passes its ``batch`` id (kept in the audit trail) and an
    ``update_id`` of its own: Temporal answers a second Update with the same id
    on the same run with the first one's outcome instead of running it again.
    """
    result: OperatorActionResult = await handle.execute_update(
        UPDATE_RETRY_COMPENSATION,
        RetryCompensationInput(steps=steps, operator=operator, note=note, batch=batch),
        id=update_id,
        result_type=OperatorActionResult,
    )
    return result


async def resolve(
    handle: WorkflowHandle[Any, Any],
    *,
    step: str,
    operator: str,
    note: str,
    batch: str | None = None,
    update_id: str | None = None,
) -> OperatorActionResult:
    """Send the ``resolve`` Update: ``step`` was released outside the system (``batch``, ``update_id``: as above)."""
    result: OperatorActionResult = await handle.execute_update(
        UPDATE_RESOLVE,
        ResolveInput(step=step, operator=operator, note=note, batch=batch),
        id=update_id,
        result_type=OperatorActionResult,
    )
    return result


async def decide_undo(
    handle: WorkflowHandle[Any, Any], *, approve: bool, step: str, operator: str, note: str
) -> OperatorActionResult:
    """Send ``approve_undo`` (cancel and pay; returns once the undo ran) or ``keep`` for a held costly undo."""
    result: OperatorActionResult = await handle.execute_update(
        UPDATE_APPROVE_UNDO if approve else UPDATE_KEEP,
        UndoDecisionInput(step=step, operator=operator, note=note),
        result_type=OperatorActionResult,
    )
    return result


async def decide(handle: WorkflowHandle[Any, Any], *, confirm: bool, note: str = "") -> ConfirmResult:
    """Send the traveller's ``confirm`` (or ``decline``) Update to a held trip.

    Returns once the workflow accepted it; the saga then tickets (or unwinds)
    on its own.
    """
    result: ConfirmResult = await handle.execute_update(
        UPDATE_CONFIRM if confirm else UPDATE_DECLINE, ConfirmInput(note=note), result_type=ConfirmResult
    )
    return result


def rejection_message(err: BaseException) -> str:
    """The validator's own words from a rejected Update."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, FailureError):
        return cause.message
    return str(err)


#: What the web app and the CLI say when an Update meets a paused workflow.
PAUSED_MESSAGE = "paused in Temporal; unpause it first"


def is_paused(err: BaseException) -> bool:
    """Whether ``err`` is the server refusing an Update because the workflow is paused.

    Server 1.32 answers FAILED_PRECONDITION "Workflow is paused. Cannot update
    the workflow." with no typed detail, so the words are all there is to tell
    it from other failed preconditions; ``tests/system/test_pause.py`` pins them.
    """
    return (
        isinstance(err, RPCError)
        and err.status == RPCStatusCode.FAILED_PRECONDITION
        and "workflow is paused" in err.message.lower()
    )
