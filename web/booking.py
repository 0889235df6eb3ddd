"""The booking form: ``GET /`` shows it, ``POST /bookings`` starts a saga.

Validation is ``BookingRequest``, the model the workflow itself takes. A valid
form starts the workflow and redirects at once (303); it never waits for the
saga. The workflow id comes from the form's one-time token and the request's
digest, so a double submit finds the booking the first submit started, while
the same form sent back with changes (Back, edit, submit) starts its own.

The booking started is remembered in this browser's session, which is what
lets it confirm, decline or cancel the trip later (``web.owners``), but only
if the form's token was issued to this session.

"Hold and let me confirm" (checkbox ``hold``) sends ``confirm_within`` from the
minutes field; unchecked, the minutes field is ignored and the trip is booked
outright, exactly as without the option.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from werkzeug.wrappers import Response

from trip.forms import BookingInputError, booking_from_flat, demo_trip
from trip.models import MAX_CONFIRM_WITHIN, BookingRequest, Mode, Scenario
from trip.scenarios import SCENARIOS
from web.owners import issue_form_token, own_bookings, remember_booking, was_issued
from web.portal import current_portal
from wiring.start import start_booking

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
#: The form's "confirm within" when the traveller does not change it.
DEFAULT_CONFIRM_MINUTES = 10
_MAX_CONFIRM_MINUTES = int(MAX_CONFIRM_WITHIN.total_seconds() // 60)


def form_defaults(today: date) -> dict[str, str]:
    """What a fresh form shows: the demo trip, booked outright."""
    return {**demo_trip(today), "hold": "", "confirm_within_minutes": str(DEFAULT_CONFIRM_MINUTES)}


def booking_request(values: dict[str, str], today: date) -> BookingRequest:
    """The form's values as the workflow's input; ``BookingInputError`` keyed by form field.

    The minutes become ``confirm_within`` only when ``hold`` is ticked. The
    range is the model's own rule; only its message is put in minutes here.
    """
    # Only the checkbox holds a trip: a ``confirm_within`` posted by hand is ignored.
    ignored = ("hold", "confirm_within_minutes", "confirm_within")
    flat: dict[str, object] = {k: v for k, v in values.items() if k not in ignored}
    if values.get("hold"):
        try:
            minutes = float(values.get("confirm_within_minutes", "").strip())
        except ValueError:
            minutes = math.nan
        if not math.isfinite(minutes):
            raise BookingInputError({"confirm_within_minutes": "must be a number of minutes, like 10"})
        flat["confirm_within"] = minutes * 60  # seconds: pydantic reads a number as seconds
    try:
        return booking_from_flat(flat, today=today)
    except BookingInputError as exc:
        errors = dict(exc.errors)
        if errors.pop("confirm_within", None) is not None:
            errors["confirm_within_minutes"] = (
                f"must be more than 0 and at most {_MAX_CONFIRM_MINUTES} minutes ({MAX_CONFIRM_WITHIN.days} days)"
            )
        raise BookingInputError(errors) from None


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
    form_token = values.get("form_token")
    if not form_token:
        # Only a token this app made is issued to the session: one echoed back
        # from a posted form may be copied from someone else's booking id.
        form_token = uuid.uuid4().hex
        issue_form_token(form_token)
    return (
        render_template(
            "form.html",
            sections=SECTIONS,
            modes=MODES,
            scenarios=SCENARIO_CHOICES,
            values=values,
            errors=errors,
            form_token=form_token,
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
    return render_form(form_defaults(date.today()), {})


@bp.post("/bookings")
def create_booking() -> Response | tuple[str, int, dict[str, str]]:
    values = {key: request.form.get(key, "") for key in [*form_defaults(date.today()), "form_token"]}
    values["hold"] = "on" if values["hold"] else ""
    token = values["form_token"]
    if not FORM_TOKEN_RE.match(token):
        values["form_token"] = ""
        return render_form(values, {"form": "The form is out of date; please submit it again."}, 400)
    try:
        req = booking_request(values, date.today())
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
    if was_issued(token) or workflow_id in own_bookings():
        # This browser may now confirm, decline or cancel it (web.owners).
        remember_booking(workflow_id)
    else:
        flash(
            "This form was not issued to this browser (or it is too old), so this browser cannot confirm, "
            "decline or cancel the booking. Book from a fresh form, or ask an operator.",
            "warning",
        )
    response = redirect(url_for("status.booking_page", workflow_id=workflow_id), code=303)
    # How long Temporal took to accept the start: visible in browser dev tools.
    response.headers["Server-Timing"] = f"temporal;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response
