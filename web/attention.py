"""``GET /attention``: every booking that waits for an operator, for operators.

Before the pivot that is a rollback that could not undo every reservation
(still held); past it, a step that is not finished yet (never undone).

The list comes from visibility (``BookingStatus = "NEEDS_ATTENTION"``, running
or paused in Temporal: a paused booking still waits for someone); each row's
details (what is held, since when, the deadline) from that booking's ``status``
query, asked for all rows at once and each bounded by the query timeout. A
paused booking answers no query, so its row says paused instead. The nav bar's
count badge is one visibility count call.

A filter (stuck step or provider, last error type, age) narrows the list, and
the page counts every booking it matches; "Retry all" and "Resolve all" act on
those after a confirmation step (``web.bulk``).

Above it, the bookings whose costly undo waits for a decision
(``AWAITING_UNDO_APPROVAL``): each is decided on its own page (approve or keep,
with a note), never in bulk, since each decision spends or saves money.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, Flask, current_app, render_template, request
from flask_login import current_user
from temporalio.client import Client

from trip import SA_BOOKING_STATUS, WORKFLOW_TYPE
from trip.status import Attention, SagaStatus, UndoApproval
from web.auth import operator_required
from web.bulk import FilterError, filter_fields, filter_from, matching
from web.portal import TemporalUnavailable, current_portal
from wiring.executions import Execution
from wiring.live_status import fetch_status
from wiring.paused_status import list_executions

bp = Blueprint("attention", __name__)

MAX_ROWS = 50
_OPEN = f'WorkflowType = "{WORKFLOW_TYPE}" AND ExecutionStatus IN ("Running", "Paused")'
QUERY = f'{_OPEN} AND {SA_BOOKING_STATUS.name} = "{SagaStatus.NEEDS_ATTENTION.value}"'
APPROVAL_QUERY = f'{_OPEN} AND {SA_BOOKING_STATUS.name} = "{SagaStatus.AWAITING_UNDO_APPROVAL.value}"'
#: The nav bar's badge counts both: each waits for an operator.
BADGE_QUERY = (
    f"{_OPEN} AND {SA_BOOKING_STATUS.name} IN "
    f'("{SagaStatus.NEEDS_ATTENTION.value}", "{SagaStatus.AWAITING_UNDO_APPROVAL.value}")'
)


@dataclass(frozen=True)
class HeldUndoBooking:
    """A booking whose costly undo waits for an operator's approve or keep."""

    workflow_id: str
    traveller: str | None
    held: list[UndoApproval]
    paused: bool = False


async def _awaiting_approval(client: Client, query_timeout: timedelta) -> list[HeldUndoBooking]:
    found = await list_executions(client, APPROVAL_QUERY, limit=MAX_ROWS)

    async def one(wf: Execution) -> HeldUndoBooking:
        if wf.paused:
            return HeldUndoBooking(wf.workflow_id, wf.traveller, [], paused=True)
        try:
            status = await fetch_status(client, client.get_workflow_handle(wf.workflow_id), rpc_timeout=query_timeout)
        except Exception:  # no worker answering: still list it, without details
            return HeldUndoBooking(wf.workflow_id, wf.traveller, [])
        held = [a for a in status.undo_approvals if a.decision is None]
        return HeldUndoBooking(wf.workflow_id, status.traveller or wf.traveller, held)

    return list(await asyncio.gather(*(one(wf) for wf in found)))


@dataclass(frozen=True)
class StuckBooking:
    workflow_id: str
    traveller: str | None
    attention: Attention | None
    paused: bool = False

    def waiting_for(self, now: datetime) -> str:
        if self.attention is None:
            return ""
        return _duration(now - self.attention.since)


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} days"


async def _stuck(client: Client, query_timeout: timedelta) -> list[StuckBooking]:
    # The SDK's own list cannot name the PAUSED status (wiring.paused_status).
    found = await list_executions(client, QUERY, limit=MAX_ROWS)

    async def one(wf: Execution) -> StuckBooking:
        # The name is from the encrypted memo; the search attribute only has a tag.
        if wf.paused:
            return StuckBooking(wf.workflow_id, wf.traveller, None, paused=True)
        try:
            status = await fetch_status(client, client.get_workflow_handle(wf.workflow_id), rpc_timeout=query_timeout)
        except Exception:  # no worker answering: still list it, without details
            return StuckBooking(wf.workflow_id, wf.traveller, None)
        return StuckBooking(wf.workflow_id, status.traveller or wf.traveller, status.attention)

    return list(await asyncio.gather(*(one(wf) for wf in found)))


@bp.get("/attention")
@operator_required
def attention_list() -> tuple[str, int]:
    return render_attention(request.args.to_dict())


def render_attention(values: dict[str, str], *, bulk_error: str | None = None, status: int = 200) -> tuple[str, int]:
    """The page for the filter in ``values`` (the form's fields), with a bulk form's error if any."""
    timeout = timedelta(seconds=current_app.config["QUERY_TIMEOUT"])
    rows = current_portal().call(lambda client: _stuck(client, timeout))
    approvals = current_portal().call(lambda client: _awaiting_approval(client, timeout))
    now = datetime.now().astimezone()
    try:
        chosen = filter_from(values)
    except FilterError as err:
        return render_template(
            "attention.html",
            rows=rows,
            approvals=approvals,
            now=now,
            fields=values,
            filter_error=str(err),
            note=values.get("note", ""),
        ), 400
    filtered = chosen != type(chosen)()
    if filtered:
        rows = [r for r in rows if chosen.steps(r.attention, now)]
    return render_template(
        "attention.html",
        rows=rows,
        approvals=approvals,
        now=now,
        fields=filter_fields(chosen),
        filter=chosen,
        filtered=filtered,
        match_count=len(matching(chosen)),
        bulk_error=bulk_error,
        note=values.get("note", ""),
    ), status


def attention_count() -> int | None:
    """How many bookings wait for an operator; None when Temporal does not say."""

    async def count(client: Client) -> int:
        return (await client.count_workflows(BADGE_QUERY)).count

    try:
        return current_portal().call(count, timeout=current_app.config["BADGE_TIMEOUT"])
    except (TemporalUnavailable, Exception):
        return None


def register(app: Flask) -> None:
    @app.context_processor
    def badge() -> dict[str, object]:
        if not current_user.is_authenticated:
            return {"attention_count": None}
        return {"attention_count": attention_count()}
