"""How a booking ended, and the wait for it that rides out a Temporal outage.

An outcome is only ever reported once it was observed: when Temporal stops
answering for longer than the caller would wait, the wait raises
``TemporalUnreachable`` rather than guess. Never import this from workflow code.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError, FailureError
from temporalio.service import RPCError

from trip.errors import ErrorType
from trip.status import BookingResult, SagaStatus
from wiring.client import is_unreachable
from wiring.paused_status import describe_execution


@dataclass(frozen=True)
class Outcome:
    """How a booking ended, as the CLI and the web app report it."""

    status: SagaStatus | None
    result: BookingResult | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_details: Any = None
    #: ``execution_status_name`` of a run that ended some other way (e.g. TERMINATED).
    execution_status: str | None = None


_ERROR_STATUS = {
    ErrorType.BOOKING_ROLLED_BACK.value: SagaStatus.ROLLED_BACK,
    ErrorType.ROLLBACK_INCOMPLETE.value: SagaStatus.ROLLBACK_INCOMPLETE,
    ErrorType.TRIP_INCOMPLETE.value: SagaStatus.TRIP_INCOMPLETE,
}


class TemporalUnreachable(Exception):
    """Temporal did not answer for longer than the caller would wait; the workflow itself lives on."""

    def __init__(self, workflow_id: str, waited_s: float, last_error: BaseException | None) -> None:
        reason = f" (last error: {last_error})" if last_error else ""
        super().__init__(
            f"Temporal has not answered for {waited_s:.0f}s while waiting for booking {workflow_id}{reason}"
        )
        self.workflow_id = workflow_id


async def await_outcome(
    client: Client,
    handle: WorkflowHandle[Any, BookingResult],
    *,
    outage_timeout: float | None = None,
    probe_every: float = 1.0,
) -> Outcome:
    """Wait for the booking to close and say how it ended, through server outages.

    ``client`` is the one ``handle`` came from. The SDK retries a broken long
    poll for about 20 s, then raises ``RPCError``; here the wait starts again,
    for as long as Temporal has answered within the last ``outage_timeout``
    seconds (``None``: forever). A probe checks every ``probe_every`` seconds
    that the server answers: a probe refused, or unanswered within its own
    timeout (a hung server), counts as no answer. Past the bound, raises
    ``TemporalUnreachable``: an outcome is never guessed.
    """
    last_answer = time.monotonic()
    last_error: BaseException | None = None
    waiting = asyncio.ensure_future(outcome_of(client, handle))
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=probe_every)
            if done:
                try:
                    return waiting.result()
                except RPCError as err:
                    if not is_unreachable(err):
                        raise
                    last_error = err
                    waiting = asyncio.ensure_future(outcome_of(client, handle))
            if outage_timeout is None:
                continue  # no bound: no need to probe
            try:
                await client.workflow_service.get_system_info(
                    GetSystemInfoRequest(), retry=False, timeout=timedelta(seconds=max(probe_every, 1.0))
                )
            except RPCError as err:
                if is_unreachable(err):
                    last_error = err
                    down_for = time.monotonic() - last_answer
                    if down_for >= outage_timeout:
                        raise TemporalUnreachable(handle.id, down_for, last_error) from None
                    continue
            last_answer = time.monotonic()  # it answered, even if with an error
    finally:
        waiting.cancel()


async def outcome_of(client: Client, handle: WorkflowHandle[Any, BookingResult]) -> Outcome:
    """Wait for the run to close (no outage handling) and say how it ended."""
    try:
        result = await handle.result()
    except WorkflowFailureError as err:
        cause: BaseException | None = err.cause
        if isinstance(cause, CancelledError):
            return Outcome(SagaStatus.CANCELLED, error_type="Cancelled", error_message="the booking was cancelled")
        if isinstance(cause, ApplicationError):
            return Outcome(
                _ERROR_STATUS.get(cause.type or ""),
                error_type=cause.type,
                error_message=cause.message,
                error_details=cause.details[0] if cause.details else None,
            )
        message = cause.message if isinstance(cause, FailureError) else str(cause or err)
        execution = await describe_execution(client, handle.id, handle.run_id)
        return Outcome(None, error_type=type(cause).__name__, error_message=message, execution_status=execution.status)
    if not isinstance(result, BookingResult):
        # A handle from ``client.get_workflow_handle(id)`` (the web app's) has no
        # result type, so the converter hands back the JSON as a dict.
        result = BookingResult.model_validate(result)
    return Outcome(SagaStatus.COMPLETED, result=result)
