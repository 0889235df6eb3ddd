"""Starting a booking: its workflow id, search attributes, memo and summaries, set once.

The CLI, the web app, the tests and the bench all start bookings here, so
every run carries the same metadata. Never import this from workflow code.
"""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from trip import SA_BOOKING_STATUS, SA_TRAVELLER, TASK_QUEUE, WORKFLOW_ID_PREFIX
from trip.models import BookingRequest, check_workflow_id
from trip.status import BookingResult, SagaStatus
from wiring.codec import KeyRing, keyring_of, traveller_tag
from wiring.summaries import MEMO_TRAVELLER, static_details, static_summary
from workflows.booking import BookingWorkflow


def new_workflow_id() -> str:
    return f"{WORKFLOW_ID_PREFIX}-{uuid.uuid4().hex[:12]}"


async def start_booking(
    client: Client,
    req: BookingRequest,
    *,
    workflow_id: str | None = None,
    task_queue: str = TASK_QUEUE,
    search_attributes: bool = True,
    request_eager_start: bool = False,
    id_conflict_policy: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.FAIL,
    keyring: KeyRing | None = None,
) -> WorkflowHandle[Any, BookingResult]:
    """Start one booking without waiting for it.

    A workflow id is never reused (``REJECT_DUPLICATE``): the providers'
    idempotency keys derive from it, so a second run under the same id would
    find the first run's reservations.

    Raises ``ValueError`` before anything starts if ``workflow_id`` is outside
    the documented character set (``trip.models.WORKFLOW_ID_PATTERN``).
    The traveller's tag is made with ``keyring``, by default the one of the
    client's encrypting converter (``TypeError`` if it does not encrypt).
    """
    if workflow_id is not None:
        check_workflow_id(workflow_id)
    attrs = (
        TypedSearchAttributes(
            [
                SearchAttributePair(SA_BOOKING_STATUS, SagaStatus.RUNNING.value),
                SearchAttributePair(
                    SA_TRAVELLER, traveller_tag(req.traveller.name, keyring or keyring_of(client.data_converter))
                ),
            ]
        )
        if search_attributes
        else TypedSearchAttributes.empty
    )
    return await client.start_workflow(
        BookingWorkflow.run,
        req,
        id=workflow_id or new_workflow_id(),
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=id_conflict_policy,
        search_attributes=attrs,
        memo={MEMO_TRAVELLER: req.traveller.name},
        static_summary=static_summary(req),
        static_details=static_details(req),
        request_eager_start=request_eager_start,
    )
