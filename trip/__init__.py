"""Names every part of the booking saga agrees on.

The task queue, the search attribute keys and the environment variable names
live here so that the worker, the CLI, the web app, the tests and the dev stack
cannot drift apart. This module must stay import-light: workflow code imports
it inside the sandbox.

The ``trip`` package is the shared vocabulary, the bottom layer of the booking
code: these names, the models (``models``), the status model (``status``), the
error table (``errors``), the scenarios (``scenarios``) and the form/CLI field
view (``forms``). It imports only ``saga`` from this project; the plumbing that
connects it all to Temporal is in ``wiring``.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TASK_QUEUE = "booking-saga"
WORKFLOW_TYPE = "BookingWorkflow"
WORKFLOW_ID_PREFIX = "trip"

#: Workflow Updates an operator sends to a booking in NEEDS_ATTENTION. The
#: Temporal CLI calls them by these names: never rename them.
UPDATE_RETRY_COMPENSATION = "retry_compensation"
UPDATE_RESOLVE = "resolve"
#: Workflow Updates an operator sends to a booking whose costly undo waits
#: for a decision (AWAITING_UNDO_APPROVAL): cancel and pay, or keep it.
UPDATE_APPROVE_UNDO = "approve_undo"
UPDATE_KEEP = "keep"
#: Workflow Updates the traveller sends to a held trip (AWAITING_CONFIRMATION).
UPDATE_CONFIRM = "confirm"
UPDATE_DECLINE = "decline"
#: Returns once the bookings are held or the unwind has begun (Update-with-Start).
UPDATE_HOLDS = "holds"
#: A provider's confirmation of a step it answered 202 to; the web app's
#: callback receiver sends it, with the kind, delivery id and body digest as the Update id.
UPDATE_PROVIDER_CONFIRMED = "provider_confirmed"

#: Custom search attributes. ``make run`` registers them on the dev server; on
#: any other cluster create them once with ``temporal operator search-attribute
#: create --name BookingStatus --type Keyword`` (and the same for the traveller).
SA_BOOKING_STATUS = SearchAttributeKey.for_keyword("BookingStatus")
#: A keyed tag of the traveller's name (``wiring.codec.traveller_tag``), never the
#: name: visibility cannot be encrypted.
SA_TRAVELLER = SearchAttributeKey.for_keyword("BookingTraveller")
SEARCH_ATTRIBUTES = (SA_BOOKING_STATUS, SA_TRAVELLER)

DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_TEMPORAL_UI_URL = "http://127.0.0.1:8233"
DEFAULT_PROVIDERS_URL = "http://127.0.0.1:8001"

ENV_PROVIDERS_URL = "PROVIDERS_URL"
ENV_TEMPORAL_UI_URL = "TEMPORAL_UI_URL"
