"""How the saga reads an activity's failure: who said no, how many attempts, what to show.

Pure functions of the SDK's exception types; no Temporal calls.
"""

from __future__ import annotations

from collections.abc import Collection

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, RetryState

from saga.records import FailureAttempts


def root_message(err: BaseException) -> tuple[str | None, str]:
    """The innermost Temporal failure's type and message: what a person needs."""
    cause: BaseException = err
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.type, cause.message
    if isinstance(cause, FailureError):
        return type(cause).__name__, cause.message
    return type(cause).__name__, str(cause) or type(cause).__name__


def attempts_from_failure(err: ActivityError, policy: RetryPolicy | None, reader: FailureAttempts | None) -> int:
    reported = reader(err) if reader is not None else None
    if reported is not None:
        return reported
    if err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED and policy and policy.maximum_attempts:
        return policy.maximum_attempts
    return 0


def refused(err: ActivityError) -> bool:
    """Did the step get a "no" that trying again cannot change?

    The activity answered with an ``ApplicationError`` and the retries stopped
    at once: either the step's retry policy lists its type in
    ``non_retryable_error_types`` (the usual way: the policy decides), or the
    activity raised it with ``non_retryable=True``. Either way the step did not
    happen, unlike a timeout or a spent budget, whose outcome is unknown.
    """
    return err.retry_state == RetryState.NON_RETRYABLE_FAILURE and isinstance(err.cause, ApplicationError)


def flagged_refusal(err: ActivityError, types: Collection[str] | None) -> bool:
    """The refusal test of pivots recorded before the pivot was one activity call.

    Then only an error the activity itself flagged non-retryable (and, with
    ``types``, only of those types) counted; kept so those histories replay.
    """
    cause = err.cause
    return (
        refused(err)
        and isinstance(cause, ApplicationError)
        and cause.non_retryable
        and (types is None or cause.type in types)
    )
