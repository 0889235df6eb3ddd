"""The one table of error types.

Retry policies match failures by the exact ``type`` string of an
``ApplicationError``, so every type the saga raises or matches is named here
once. Activities raise them, the workflow's retry policies list them (and so
decide which of them end a step), and the tests assert them: nobody spells a
type name by hand.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    # Business answers from a provider: retrying cannot change them.
    SOLD_OUT = "SoldOut"
    INVALID_BOOKING = "InvalidBooking"
    #: The reservation was cancelled before this booking call arrived (an undo
    #: overtook an in-flight booking). Retrying would never book it.
    RESERVATION_VOIDED = "ReservationVoided"
    #: The airline refused to issue the ticket (the pivot failed): unwind.
    TICKETING_REFUSED = "TicketingRefused"
    #: The hold lapsed at the provider before it was finalized or ticketed.
    HOLD_EXPIRED = "HoldExpired"

    # Infrastructure trouble: retried by the activity's retry policy.
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    PROVIDER_TIMEOUT = "ProviderTimeout"
    PROVIDER_PROTOCOL = "ProviderProtocolError"

    # How a saga ends when it could not complete.
    BOOKING_ROLLED_BACK = "BookingRolledBack"
    ROLLBACK_INCOMPLETE = "RollbackIncomplete"
    #: Raised by the generic saga core with every undo failure collected.
    COMPENSATION_FAILED = "CompensationFailed"
    #: Causes of a rolled-back held trip: the traveller said no, or did not answer in time.
    DECLINED = "Declined"
    CONFIRMATION_TIMEOUT = "ConfirmationTimeout"
    #: A provider answered a booking 202 (pending) and did not call back with
    #: its confirmation before the step's deadline: the step fails, the saga unwinds.
    CALLBACK_TIMED_OUT = "CallbackTimedOut"
    #: Past the pivot, a retriable step was still not done when the attention
    #: deadline passed: the ticket is issued, the rest needs a person.
    TRIP_INCOMPLETE = "TripIncomplete"

    #: An Update the workflow's validator refused (a traveller's decision or an
    #: operator's action that does not apply now): sending it again unchanged
    #: cannot succeed, so it is non-retryable.
    UPDATE_REJECTED = "UpdateRejected"


#: The answers that mean "no": retrying cannot change them. The pivot's retry
#: policy lists exactly these as non-retryable, so any other failure (even an
#: answer nobody could read, which may hide an issued ticket) is asked again.
NON_RETRYABLE_BUSINESS_ERRORS: tuple[str, ...] = (
    ErrorType.SOLD_OUT.value,
    ErrorType.INVALID_BOOKING.value,
    ErrorType.RESERVATION_VOIDED.value,
    ErrorType.TICKETING_REFUSED.value,
    ErrorType.HOLD_EXPIRED.value,
)
#: What ends an ordinary step (a booking, a finalize) at once: a refusal, or an
#: answer the activity could not use (sending the same request again cannot
#: help). Every forward step's ``RetryPolicy.non_retryable_error_types`` but the
#: pivot's. Activities never mark an error non-retryable themselves: the
#: step's policy is the one place that decides.
STEP_NON_RETRYABLE_ERRORS: tuple[str, ...] = (*NON_RETRYABLE_BUSINESS_ERRORS, ErrorType.PROVIDER_PROTOCOL.value)

#: HTTP status a provider answers with → the business errors it may mean.
#: Several errors share a status (409 is both ``SoldOut`` and
#: ``TicketingRefused``): the answer's ``"error"`` field picks among them, and
#: the first is what a body without a known name means. The provider derives
#: its own status for each error from this table (``ERROR_STATUS``), so both
#: sides read one table. Whether a retry can help is the type's business, in
#: the tables above.
HTTP_STATUS_ERRORS: dict[int, tuple[ErrorType, ...]] = {
    409: (ErrorType.SOLD_OUT, ErrorType.TICKETING_REFUSED),
    410: (ErrorType.RESERVATION_VOIDED, ErrorType.HOLD_EXPIRED),
    422: (ErrorType.INVALID_BOOKING,),
    503: (ErrorType.PROVIDER_UNAVAILABLE,),
}

#: Error name → the HTTP status a provider answers it with (the inverse table).
ERROR_STATUS: dict[str, int] = {
    error.value: status for status, errors in HTTP_STATUS_ERRORS.items() for error in errors
}


def error_for_status(status: int, error_name: object = None) -> ErrorType | None:
    """The error a provider's ``status`` answer means.

    ``error_name`` is the answer's ``"error"`` field, if any: it selects among
    the types registered for that status, and anything else (a proxy's page,
    an unknown name) falls back to the status's first type. ``None`` for a
    status the table does not know.
    """
    errors = HTTP_STATUS_ERRORS.get(status)
    if errors is None:
        return None
    return next((e for e in errors if e.value == error_name), errors[0])


#: Provider answers that are part of normal operation: business refusals, and
#: the provider saying it is briefly unavailable (what the fault scenarios
#: inject). The activities raise them in the SDK's benign category, so a worker
#: logs one line for each instead of a warning with a traceback.
EXPECTED_HTTP_STATUSES = frozenset({409, 410, 422, 503})
