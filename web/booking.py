"""The booking form: ``GET /`` shows it, ``POST /bookings`` starts a saga.

Validation is ``BookingRequest``, the model the workflow itself takes. A valid
form starts the workflow and redirects at once (303); it never waits for the
saga. The workflow id comes from the form's one-time token and the request's
digest, so a double submit finds the booking the first submit started, while
the same form sent back with changes (Back, edit, submit) starts its own.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from werkzeug.wrappers import Response

from trip.models import BookingInputError, BookingRequest, Mode, Scenario, demo_trip
from trip.scenarios import SCENARIOS
from trip.temporal import start_booking
from web.portal import current_portal

bp = Blueprint("booking", __name__)

FORM_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    type: str = "text"
    autocomplete: str = "off"
    maxlength: int | None = None


@dataclass(frozen=True)
class Section:
    title: str
    fields: list[Field] = field(default_factory=list)


SECTIONS = [
    Section(
        "Traveller",
        [
            Field("traveller_name", "Full name", autocomplete="name", maxlength=100),
            Field("traveller_email", "Email", "email", "email", 254),
        ],
    ),
    Section(
        "Car",
        [
            Field("car_city", "Pick-up city", maxlength=64),
            Field("car_pickup", "Pick-up date", "date"),
            Field("car_dropoff", "Drop-off date", "date"),
        ],
    ),
    Section(
        "Hotel",
        [
            Field("hotel_city", "City", maxlength=64),
            Field("hotel_check_in", "Check-in", "date"),
            Field("hotel_check_out", "Check-out", "date"),
        ],
    ),
    Section(
        "Flight",
        [
            Field("flight_from", "From", maxlength=64),
            Field("flight_to", "To", maxlength=64),
            Field("flight_date", "Date", "date"),
        ],
    ),
]
MODES = [
    (Mode.PARALLEL.value, "parallel: car, hotel and flight book at the same time"),
    (Mode.SEQUENTIAL.value, "sequential: one after another, like the classic sample"),
]
SCENARIO_CHOICES = [(s.value, SCENARIOS[s].description) for s in Scenario]


def workflow_id_for(form_token: str, req: BookingRequest) -> str:
    """One booking per form *and* content.

    Submitting the same form twice (a double click, a retried POST) gives the
    same id, so the second submit finds the first run. A browser's Back button
    can bring the form back with its one-time token; sent again with changed
    details it is a different request, so the request's digest is part of the
    id and it starts a booking of its own.
    """
    digest = hashlib.sha256(req.model_dump_json().encode()).hexdigest()[:16]
    return f"trip-{form_token}-{digest}"


#: The form is never served from a cache, so Back shows it with a fresh
#: one-time token rather than the one already spent.
NO_STORE = {"Cache-Control": "no-store"}


def render_form(values: dict[str, Any], errors: dict[str, str], status: int = 200) -> tuple[str, int, dict[str, str]]:
    return (
        render_template(
            "form.html",
            sections=SECTIONS,
            modes=MODES,
            scenarios=SCENARIO_CHOICES,
            values=values,
            errors=errors,
            form_token=values.get("form_token") or uuid.uuid4().hex,
        ),
        status,
        NO_STORE,
    )


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness for load balancers: answers without touching Temporal."""
    return {"status": "ok"}


@bp.get("/")
def new_booking() -> tuple[str, int, dict[str, str]]:
    return render_form(demo_trip(date.today()), {})


@bp.post("/bookings")
def create_booking() -> Response | tuple[str, int, dict[str, str]]:
    values = {key: request.form.get(key, "") for key in [*demo_trip(date.today()), "form_token"]}
    token = values["form_token"]
    if not FORM_TOKEN_RE.match(token):
        values["form_token"] = ""
        return render_form(values, {"form": "The form is out of date; please submit it again."}, 400)
    try:
        req = BookingRequest.from_flat(values, today=date.today())
    except BookingInputError as exc:
        return render_form(values, exc.errors, 400)

    workflow_id = workflow_id_for(token, req)
    task_queue = current_app.config["TASK_QUEUE"]

    async def start(client: Client) -> None:
        try:
            # A second submit of the same form while the first runs gets that run.
            await start_booking(
                client,
                req,
                workflow_id=workflow_id,
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except WorkflowAlreadyStartedError:
            pass  # ... and after it closed, the same: the booking exists already.

    started = time.perf_counter()
    current_portal().call(start)
    response = redirect(url_for("status.booking_page", workflow_id=workflow_id), code=303)
    # How long Temporal took to accept the start: visible in browser dev tools.
    response.headers["Server-Timing"] = f"temporal;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response
