"""One workflow execution as the pages and the CLI show it, whatever the SDK's enum knows.

``Execution`` is built from the server's own ``WorkflowExecutionInfo`` (the
API's protos), never from the SDK's ``WorkflowExecutionStatus``, which lacks
the PAUSED status (see ``wiring.paused_status`` for the calls that fetch it).
Never import this from workflow code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import WorkflowExecutionStatus as RawExecutionStatus
from temporalio.api.workflow.v1 import PendingActivityInfo, WorkflowExecutionInfo
from temporalio.client import Client
from temporalio.common import TypedSearchAttributes
from temporalio.converter import decode_typed_search_attributes

from trip import SA_BOOKING_STATUS, SA_TRAVELLER
from wiring.summaries import MEMO_TRAVELLER

_STATUS_PREFIX = "WORKFLOW_EXECUTION_STATUS_"
RUNNING, PAUSED = "RUNNING", "PAUSED"
#: Execution statuses of a workflow that has not closed.
OPEN_STATUSES = frozenset({RUNNING, PAUSED})
#: How a run ends when its own code closes it: it returned, raised, or accepted
#: a cancellation. Any other closed status (TERMINATED, TIMED_OUT) was imposed
#: from outside, and the saga's last recorded status never caught up with it.
SELF_CLOSED_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED"})


def execution_status_name(raw_status: int) -> str:
    """The name of a server execution status (``RUNNING``, ``PAUSED``, ...),
    from the API's own enum, which knows values the SDK's enum lacks."""
    try:
        return RawExecutionStatus.Name(raw_status).removeprefix(_STATUS_PREFIX)  # type: ignore[arg-type]
    except ValueError:  # a status newer than these protos
        return f"STATUS_{raw_status}"


@dataclass(frozen=True)
class Execution:
    """One workflow execution as the server describes or lists it."""

    workflow_id: str
    run_id: str
    #: ``execution_status_name`` of the server's status.
    status: str
    start_time: datetime
    #: Our search attribute: the saga status.
    booking_status: str | None = None
    #: The traveller's name, decrypted from the memo (never the search attribute's tag).
    traveller: str | None = None
    #: Why it was paused (``temporal workflow pause --reason``); describe only.
    pause_reason: str | None = None
    pending_activities: tuple[PendingActivityInfo, ...] = field(default=(), repr=False)

    @property
    def paused(self) -> bool:
        return self.status == PAUSED

    @property
    def closed(self) -> bool:
        return self.status not in OPEN_STATUSES

    @property
    def closed_from_outside(self) -> bool:
        """Terminated or timed out: the saga never got to record how it ended.

        Its ``BookingStatus`` and its ``status`` query (replayed to the last
        event) still say RUNNING or COMPENSATING, so callers show this
        execution status instead.
        """
        return self.closed and self.status not in SELF_CLOSED_STATUSES

    @property
    def shown_status(self) -> str | None:
        """The status to show in a list: the saga's own, unless the run was closed from outside."""
        return self.status if self.closed_from_outside else self.booking_status


class WorkflowPaused(Exception):
    """The workflow is paused: the server answers no query until it is unpaused."""

    def __init__(self, execution: Execution) -> None:
        super().__init__(f"workflow {execution.workflow_id} is paused: {execution.pause_reason}")
        self.execution = execution


async def _traveller(client: Client, info: WorkflowExecutionInfo, attrs: TypedSearchAttributes) -> str | None:
    """The traveller's name, decrypted from the memo through the client's codec.

    Runs started before the memo existed kept the plain name in the search
    attribute; newer runs keep only a tag there, which is no name to show.
    """
    field = info.memo.fields.get(MEMO_TRAVELLER)
    if field is not None:
        try:
            [name] = await client.data_converter.decode([field], [str])
        except Exception:  # a key this process lacks: show no name rather than fail the page
            return None
        return str(name)
    legacy = attrs.get(SA_TRAVELLER)
    return None if legacy is None or legacy.startswith("t-") else legacy


async def execution_from_info(client: Client, info: WorkflowExecutionInfo, **extra: Any) -> Execution:
    """The ``Execution`` of the server's ``info``; ``client`` decodes the memo."""
    attrs = decode_typed_search_attributes(info.search_attributes)
    return Execution(
        workflow_id=info.execution.workflow_id,
        run_id=info.execution.run_id,
        status=execution_status_name(info.status),
        start_time=info.start_time.ToDatetime().replace(tzinfo=UTC),
        booking_status=attrs.get(SA_BOOKING_STATUS),
        traveller=await _traveller(client, info, attrs),
        **extra,
    )
