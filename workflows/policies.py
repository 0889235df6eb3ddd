"""Each step's retry policy and timeout, and how a booking's overrides tune them.

The policy is where retryability is decided: activities raise typed errors and
never mark them non-retryable, and each step's ``non_retryable_error_types``
says which of those types end it. A booking or a finalize gives up on a
refusal or an unreadable answer; the pivot (ticketing) gives up only on a
refusal, since an unreadable answer may hide an issued ticket. ``saga_for``
builds a booking's saga with its undo budget and the queue its undos run on;
reading the run's own task queue is its only Temporal call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from saga import DEFAULT_UNDO_RETRY, DEFAULT_UNDO_TIMEOUT, Saga
from trip.errors import NON_RETRYABLE_BUSINESS_ERRORS, STEP_NON_RETRYABLE_ERRORS
from trip.models import BookingRequest, Kind, Mode, RetryOverrides
from trip.steps import FINALIZING


@dataclass(frozen=True)
class StepPolicy:
    """A forward step's own retry policy and per-attempt timeout."""

    initial_interval: timedelta
    backoff: float
    maximum_interval: timedelta
    maximum_attempts: int
    timeout: timedelta
    #: The error types that end the step at once.
    non_retryable: tuple[str, ...] = STEP_NON_RETRYABLE_ERRORS
    #: How long the step waits for the provider's callback when it answers 202
    #: (pending); a booking's ``async_deadline_s`` overrides it.
    confirm_within: timedelta = timedelta(minutes=15)

    def retry_policy(self, overrides: RetryOverrides | None) -> RetryPolicy:
        own = RetryPolicy(
            initial_interval=self.initial_interval,
            backoff_coefficient=self.backoff,
            maximum_interval=self.maximum_interval,
            maximum_attempts=self.maximum_attempts,
            non_retryable_error_types=list(self.non_retryable),
        )
        return with_overrides(own, overrides)


def with_overrides(policy: RetryPolicy, overrides: RetryOverrides | None, *, undo: bool = False) -> RetryPolicy:
    """``policy`` with a booking's ``RetryOverrides`` applied: the one place they are merged.

    A forward step takes ``max_interval_s`` / ``max_attempts``; an undo
    (``undo=True``) takes ``undo_max_interval_s`` / ``undo_max_attempts``. The
    first interval and the backoff apply to both.
    """
    o = overrides or RetryOverrides()
    initial = seconds(o.initial_interval_s) or policy.initial_interval
    longest = seconds(o.undo_max_interval_s if undo else o.max_interval_s) or policy.maximum_interval or initial
    return dataclasses.replace(
        policy,
        initial_interval=initial,
        backoff_coefficient=o.backoff or policy.backoff_coefficient,
        # An override of one bound alone must not undercut the other's
        # default: Temporal rejects the policy, and every workflow task fails.
        maximum_interval=max(initial, longest),
        maximum_attempts=(o.undo_max_attempts if undo else o.max_attempts) or policy.maximum_attempts,
    )


def seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


#: Each provider gets its own policy: airlines are the flakiest, so the flight
#: waits longer between attempts before giving up.
STEP_POLICIES: dict[Kind, StepPolicy] = {
    Kind.CAR: StepPolicy(timedelta(seconds=1), 2.0, timedelta(seconds=10), 5, timedelta(seconds=10)),
    # A hotel that confirms by hand may take an hour.
    Kind.HOTEL: StepPolicy(
        timedelta(seconds=1), 2.0, timedelta(seconds=10), 5, timedelta(seconds=10), confirm_within=timedelta(hours=1)
    ),
    Kind.FLIGHT: StepPolicy(timedelta(seconds=1), 2.0, timedelta(seconds=20), 5, timedelta(seconds=15)),
}
#: Hold and confirm. Ticketing has no attempt cap (the saga core sees to that)
#: and ends only on a refusal; its intervals grow to a minute.
TICKET_POLICY = StepPolicy(
    timedelta(seconds=1), 2.0, timedelta(seconds=60), 0, timedelta(seconds=15), NON_RETRYABLE_BUSINESS_ERRORS
)
#: The holds that become bookings once the ticket is issued, and their policies.
FINALIZE_POLICIES: dict[Kind, StepPolicy] = {s.kind: STEP_POLICIES[s.kind] for s in FINALIZING}

#: Undos run ahead of bookings (which keep the server's default, 3) when the
#: task queue has a backlog: a rollback releases what new bookings may need,
#: and a traveller waits on it (``make bench``: rollback_under_backlog).
UNDO_PRIORITY_KEY = 1


def undo_task_queue(task_queue: str) -> str:
    """The queue a booking's undos run on, beside its own ``task_queue``.

    Every booking worker polls both (``wiring.worker.build_worker``), the undo
    queue with slots of its own: a rollback behind a backlog of new bookings
    waits for no booking's activity, only for its own workflow tasks.
    """
    return f"{task_queue}-undo"


def saga_for(req: BookingRequest, *, on_change: Callable[[], None]) -> Saga:
    """The booking's saga: its unwind mode, and the undo budget tuned by the booking's overrides."""
    retry = req.retry or RetryOverrides()
    return Saga(
        # Undos are independent, so in parallel mode they unwind together.
        parallel_compensation=req.mode is Mode.PARALLEL,
        undo_retry_policy=with_overrides(DEFAULT_UNDO_RETRY, retry, undo=True),
        undo_timeout=seconds(retry.activity_timeout_s) or DEFAULT_UNDO_TIMEOUT,
        on_change=on_change,
        attempts_from_failure=reported_attempt,
        attempts_from_result=lambda result: getattr(result, "attempt", None),
        undo_priority=Priority(priority_key=retry.undo_priority_key or UNDO_PRIORITY_KEY),
        undo_task_queue=undo_task_queue(workflow.info().task_queue),
    )


def reported_attempt(err: ActivityError) -> int | None:
    """Our activities put the attempt in their error's first detail (``activities.booking._fail``)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details:
        first = cause.details[0]
        if isinstance(first, dict) and isinstance(first.get("attempt"), int):
            return int(first["attempt"])
    return None
