"""The one table of error types.

Retry policies match failures by the exact ``type`` string of an
``ApplicationError``, so every type the saga raises or matches is named here
once. Activities raise them, the workflow's retry policies list them, and the
tests assert them: nobody spells a type name by hand.
"""

from __future__ import annotations

from enum import Enum


class ErrorType(str, Enum):
    # Business answers from a provider: retrying cannot change them.
    SOLD_OUT = "SoldOut"
    INVALID_BOOKING = "InvalidBooking"
    #: The reservation was cancelled before this booking call arrived (an undo
    #: overtook an in-flight booking). Retrying would never book it.
    RESERVATION_VOIDED = "ReservationVoided"

    # Infrastructure trouble: retried by the activity's retry policy.
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    PROVIDER_TIMEOUT = "ProviderTimeout"
    PROVIDER_PROTOCOL = "ProviderProtocolError"

    # How a saga ends when it could not complete.
    BOOKING_ROLLED_BACK = "BookingRolledBack"
    ROLLBACK_INCOMPLETE = "RollbackIncomplete"
    #: Raised by the generic saga core with every undo failure collected.
    COMPENSATION_FAILED = "CompensationFailed"


#: Passed to every forward step's ``RetryPolicy.non_retryable_error_types``.
NON_RETRYABLE_BUSINESS_ERRORS: tuple[str, ...] = (
    ErrorType.SOLD_OUT.value,
    ErrorType.INVALID_BOOKING.value,
    ErrorType.RESERVATION_VOIDED.value,
)

#: HTTP status a provider answers with, mapped to the error the activity raises
#: and whether a retry could help.
HTTP_STATUS_ERRORS: dict[int, tuple[ErrorType, bool]] = {
    409: (ErrorType.SOLD_OUT, False),
    410: (ErrorType.RESERVATION_VOIDED, False),
    422: (ErrorType.INVALID_BOOKING, False),
    503: (ErrorType.PROVIDER_UNAVAILABLE, True),
}

#: Provider answers that are part of normal operation: business refusals, and
#: the provider saying it is briefly unavailable (what the fault scenarios
#: inject). The activities raise them in the SDK's benign category, so a worker
#: logs one line for each instead of a warning with a traceback.
EXPECTED_HTTP_STATUSES = frozenset({409, 410, 422, 503})
