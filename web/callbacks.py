"""``POST /callbacks/<kind>``: a provider's signed confirmation of a booking it answered 202.

It authenticates by signature (``trip.callbacks``), not by a session, so it is
exempt from login and CSRF. A verified callback becomes the booking
workflow's ``provider_confirmed`` Update, sent through the app's one Temporal
portal with an Update id made of the kind, the delivery id and the body's
digest: Temporal keeps one outcome per Update id in a run, so a replayed
delivery is answered from the first one and changes nothing, while another
provider's delivery with the same id, or another body under a used id, is a
callback of its own. The workflow's validator decides the rest, synchronously:

=====================================================  ======  ====================
callback                                               answer  effect
=====================================================  ======  ====================
accepted (the step waited for it)                      200     the step succeeds
replayed (an accepted delivery id, same body)          200     none the second time
no, or a wrong, signature; signed over 5 minutes away  401     none
signed, but another step's reference (or kind)         401     none
unknown booking                                        404     none
past the step's deadline, a step not waiting, or ended  409     none
body over ``MAX_BODY_BYTES``                           413     none
body not a callback                                    400     none
=====================================================  ======  ====================

409 rather than 410: the provider's retries are how a callback that came too
early (before the booking call's answer reached the workflow) gets in, so the
answer says "not now", not "gone for good"; past the deadline the saga's undo
cancels the reservation, and the provider stops sending once it sees that.

Metrics (``/metrics``): ``booking_callback_latency_seconds{kind}``, from the
step starting to wait to its callback being accepted (workflow time), and
``booking_callbacks_rejected_total{kind,reason}``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from werkzeug.wrappers import Response

from trip import UPDATE_PROVIDER_CONFIRMED
from trip.callbacks import (
    HEADER_DELIVERY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    MAX_BODY_BYTES,
    BadSignature,
    CallbackAccepted,
    CallbackBody,
    CallbackRefusal,
    ProviderConfirmation,
    load_secrets,
    verify,
)
from trip.models import Kind
from web.portal import TemporalUnavailable, current_portal
from web.settings import WebSettings

bp = Blueprint("callbacks", __name__)
log = logging.getLogger(__name__)

#: ``app.config`` key: each kind's secret, ``{Kind: bytes}``; ``None`` reads
#: ``CALLBACK_SECRETS_FILE`` and ``CALLBACK_SECRET_<KIND>``.
SECRETS_KEY = "CALLBACK_SECRETS"
_METRICS_KEY = "callback_metrics"

_STATUS_OF_REFUSAL = {
    CallbackRefusal.WRONG_REFERENCE.value: 401,
    CallbackRefusal.PAST_DEADLINE.value: 409,
    CallbackRefusal.NOT_WAITING.value: 409,
}


def register(app: Flask, registry: CollectorRegistry) -> None:
    """Add the receiver and its metrics; called by ``create_app`` after the metrics registry exists."""
    if app.config.get(SECRETS_KEY) is None:
        try:
            app.config[SECRETS_KEY] = load_secrets(WebSettings.load().callback_secrets_file)
        except (OSError, ValueError) as err:
            # The app still serves the site; every callback is refused until the file is fixed.
            log.error("cannot read the callback secrets: %s", err)
            app.config[SECRETS_KEY] = {}
    app.extensions[_METRICS_KEY] = (
        Histogram(
            "booking_callback_latency_seconds",
            "From a step starting to wait for its provider's callback to the callback being accepted",
            ["kind"],
            buckets=(0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=registry,
        ),
        Counter(
            "booking_callbacks_rejected",
            "Provider callbacks refused, by reason",
            ["kind", "reason"],
            registry=registry,
        ),
    )
    app.register_blueprint(bp)


def _refuse(kind: str, status: int, reason: str, message: str) -> tuple[Response, int]:
    current_app.extensions[_METRICS_KEY][1].labels(kind, reason).inc()
    return jsonify({"error": reason, "message": message}), status


@bp.post("/callbacks/<kind>")
def receive(kind: str) -> Any:
    try:
        provider = Kind(kind)
    except ValueError:
        return _refuse("unknown", 404, "unknown_kind", f"no provider kind {kind!r}")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _refuse(kind, 413, "too_large", f"a callback body is at most {MAX_BODY_BYTES} bytes")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        return _refuse(kind, 413, "too_large", f"a callback body is at most {MAX_BODY_BYTES} bytes")
    secret = current_app.config[SECRETS_KEY].get(provider)
    if secret is None:
        return _refuse(kind, 401, "no_secret", f"no callback secret is configured for the {kind} provider")
    try:
        headers = {h: request.headers.get(h, "") for h in (HEADER_TIMESTAMP, HEADER_SIGNATURE, HEADER_DELIVERY)}
        delivery_id = verify(secret, headers, raw, now=time.time())
    except BadSignature as err:
        return _refuse(kind, 401, err.reason, str(err))
    try:
        body = CallbackBody.model_validate_json(raw)
    except ValidationError as err:
        return _refuse(kind, 400, "malformed", f"not a callback: {err.errors()[0]['msg']}")
    if body.kind is not provider:
        return _refuse(kind, 401, "wrong_reference", f"a {body.kind.value} callback was sent to /callbacks/{kind}")
    update = ProviderConfirmation(
        kind=provider, reference=body.reference, confirmation=body.confirmation, delivery_id=delivery_id
    )
    # One delivery of one callback: each provider numbers its own deliveries, and
    # only the same body again is a replay to answer from the first outcome.
    update_id = f"callback-{provider.value}-{delivery_id}-{hashlib.sha256(raw).hexdigest()[:32]}"
    try:
        accepted = current_portal().call(lambda client: _confirm(client, body.booking_id, update, update_id))
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        refusal = cause.type if isinstance(cause, ApplicationError) else None
        status = _STATUS_OF_REFUSAL.get(refusal or "", 409)
        message = cause.message if isinstance(cause, ApplicationError) else str(err)
        return _refuse(kind, status, _reason(refusal), message)
    except BookingClosed:
        return _refuse(kind, 409, "booking_closed", f"booking {body.booking_id!r} has ended; nothing waits")
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return _refuse(kind, 404, "unknown_booking", f"no booking {body.booking_id!r}")
        raise
    except TemporalUnavailable as err:
        return jsonify({"error": "unavailable", "message": str(err)}), 503
    current_app.extensions[_METRICS_KEY][0].labels(kind).observe(accepted.waited_s)
    return jsonify({"step": accepted.step, "waited_s": accepted.waited_s, "delivery_id": delivery_id}), 200


class BookingClosed(Exception):
    """The booking exists but has ended: nothing in it can wait for a callback."""


async def _confirm(client: Client, booking_id: str, update: ProviderConfirmation, update_id: str) -> CallbackAccepted:
    handle = client.get_workflow_handle(booking_id)
    try:
        return await handle.execute_update(
            UPDATE_PROVIDER_CONFIRMED, update, id=update_id, result_type=CallbackAccepted
        )
    except RPCError as err:
        # A closed run answers NOT_FOUND too ("workflow execution already
        # completed"), unless the Update id was accepted before it closed (a
        # replay, answered from the first outcome). Tell the two apart.
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
        try:
            await handle.describe()
        except RPCError:
            raise err from None
        raise BookingClosed() from err


def _reason(refusal: str | None) -> str:
    return {
        CallbackRefusal.WRONG_REFERENCE.value: "wrong_reference",
        CallbackRefusal.PAST_DEADLINE.value: "past_deadline",
        CallbackRefusal.NOT_WAITING.value: "not_waiting",
    }.get(refusal or "", "refused")
