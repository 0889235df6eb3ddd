"""``GET /bookings``: recent bookings from Temporal visibility, filterable by status.

An operator sees every booking. Anyone else sees only the bookings this
browser started (``web.owners``), or nothing: the list must never hand out
other travellers' booking ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, current_app, render_template, request
from temporalio.client import Client

from trip import SA_BOOKING_STATUS, WORKFLOW_TYPE
from trip.models import WORKFLOW_ID_RE
from trip.status import TERMINAL, SagaStatus
from web.owners import is_operator, own_bookings
from web.portal import current_portal
from wiring.client import web_ui_url
from wiring.paused_status import list_executions

bp = Blueprint("listing", __name__)

PAGE_SIZE = 50
TERMINAL_VALUES = {s.value for s in TERMINAL}


@dataclass(frozen=True)
class Row:
    workflow_id: str
    traveller: str | None
    status: str | None
    temporal_status: str
    start_time: datetime
    web_ui_url: str


@bp.get("/bookings")
def list_bookings() -> tuple[str, int]:
    wanted = request.args.get("status", "")
    valid = {s.value for s in SagaStatus}
    if wanted and wanted not in valid:
        return render_template(
            "list.html",
            rows=[],
            statuses=sorted(valid),
            wanted="",
            error=f"Unknown status filter; choose one of: {', '.join(sorted(valid))}.",
            operator=is_operator(),
        ), 400
    operator = is_operator()
    mine = own_bookings()
    query = f'WorkflowType = "{WORKFLOW_TYPE}"'
    if not operator:
        ids = [wid for wid in mine if WORKFLOW_ID_RE.match(wid)]  # no quotes in an id: safe to embed
        if not ids:
            return render_template(
                "list.html", rows=[], statuses=sorted(valid), wanted=wanted, error=None, operator=False
            ), 200
        query += " AND (" + " OR ".join(f'WorkflowId = "{wid}"' for wid in ids) + ")"
    if wanted:  # validated against the enum above, so safe to embed
        query += f' AND {SA_BOOKING_STATUS.name} = "{wanted}"'
        if wanted not in TERMINAL_VALUES:
            # A terminated or timed-out run keeps the BookingStatus it had (RUNNING, ...).
            query += ' AND ExecutionStatus != "Terminated" AND ExecutionStatus != "TimedOut"'
    ui_base = current_app.config["TEMPORAL_UI_URL"]

    async def fetch(client: Client) -> list[Row]:
        rows = []
        for wf in await list_executions(client, query, limit=PAGE_SIZE):
            rows.append(
                Row(
                    workflow_id=wf.workflow_id,
                    traveller=wf.traveller,
                    status=wf.shown_status,
                    temporal_status=wf.status,
                    start_time=wf.start_time,
                    web_ui_url=web_ui_url(wf.workflow_id, client.namespace, base=ui_base),
                )
            )
        return rows

    rows = current_portal().call(fetch)
    return render_template(
        "list.html", rows=rows, statuses=sorted(valid), wanted=wanted, error=None, operator=operator
    ), 200
