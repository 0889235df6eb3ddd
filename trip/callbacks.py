"""The signed provider callback: one definition for the sender and the receiver.

A provider that answers a booking ``202`` (pending) confirms it later by
``POST /callbacks/<kind>`` to the booking service. The body is a
``CallbackBody`` in JSON; the headers carry when it was signed
(``HEADER_TIMESTAMP``, Unix seconds), the signature (``HEADER_SIGNATURE``,
``v1=`` and the hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under the
provider's secret) and the delivery id (``HEADER_DELIVERY``), which stays the
same across retries of one callback so that the receiver can tell a replay.

The provider service (``providers.callbacks``) signs with ``sign``; the web
app (``web.callbacks``) checks with ``verify``. Secrets are per provider kind,
read from a 0600 JSON file (``CALLBACK_SECRETS_FILE``) or the environment
(``CALLBACK_SECRET_FLIGHT`` ...). No Temporal calls here; the workflow imports
only the models.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from trip.models import Kind

HEADER_TIMESTAMP = "X-Callback-Timestamp"
HEADER_SIGNATURE = "X-Callback-Signature"
HEADER_DELIVERY = "X-Callback-Delivery"
SIGNATURE_VERSION = "v1"
#: A callback signed further than this from the receiver's clock is refused:
#: a captured callback cannot be replayed later with a new delivery id.
WINDOW_S = 300
#: The largest callback body the receiver reads; a real one is a few hundred bytes.
MAX_BODY_BYTES = 8 * 1024

ENV_SECRETS_FILE = "CALLBACK_SECRETS_FILE"
SECRET_VARIABLE_PREFIX = "CALLBACK_SECRET_"
#: Where the provider service sends callbacks: the receiver's base URL.
ENV_CALLBACK_URL = "CALLBACK_BASE_URL"

_Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class CallbackBody(BaseModel):
    """What a provider says when it confirms a pending booking."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    booking_id: _Text
    idempotency_key: _Text
    kind: Kind
    #: The provider's reference, as in its 202 answer: it names the step.
    reference: _Text
    #: The booking's confirmation code, the one the traveller keeps.
    confirmation: _Text
    status: Literal["confirmed"] = "confirmed"


class ProviderConfirmation(BaseModel):
    """The ``provider_confirmed`` Update's input: a verified callback."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Kind
    reference: str
    confirmation: str
    delivery_id: str


class CallbackAccepted(BaseModel):
    """What ``provider_confirmed`` returns: the step, and how long it had waited (workflow time)."""

    step: str
    waited_s: float


class CallbackRefusal(StrEnum):
    """Why the workflow refused a verified callback (the Update validator's error type)."""

    #: The reference is not the one the waiting step got: another booking's step.
    WRONG_REFERENCE = "WrongReference"
    #: The step's deadline passed; it failed and its undo cancels the reservation.
    PAST_DEADLINE = "PastDeadline"
    #: The step does not wait for a callback (not yet, or no longer).
    NOT_WAITING = "NotWaiting"


class BadSignature(Exception):
    """A callback whose headers do not prove it came from the provider now."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        #: ``missing``, ``expired`` or ``forged``: a metric label.
        self.reason = reason


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``HEADER_SIGNATURE`` value for ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def signed_headers(secret: bytes, timestamp: int, body: bytes, delivery_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: sign(secret, timestamp, body),
        HEADER_DELIVERY: delivery_id,
    }


def verify(secret: bytes, headers: Mapping[str, str], body: bytes, *, now: float) -> str:
    """Check the signature and the clock window; return the delivery id or raise ``BadSignature``.

    The signature is compared in constant time, and checked before the window,
    so that a forger learns nothing about the clock.
    """
    stamp, signature, delivery = (headers.get(h) for h in (HEADER_TIMESTAMP, HEADER_SIGNATURE, HEADER_DELIVERY))
    if not stamp or not signature or not delivery or len(delivery) > 200:
        raise BadSignature("missing", "the callback lacks its timestamp, signature or delivery id")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise BadSignature("missing", "the callback's timestamp is not a number of seconds") from None
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not a "no").
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode("utf-8", "replace")):
        raise BadSignature("forged", "the callback's signature does not match its body")
    if abs(now - timestamp) > WINDOW_S:
        raise BadSignature("expired", f"the callback was signed more than {WINDOW_S} s from now")
    return delivery


def generate_secrets() -> str:
    """A new secrets file's text: one random secret per provider kind."""
    return json.dumps({kind.value: secrets.token_hex(32) for kind in Kind}, indent=2) + "\n"


def load_secrets(path: Path | None = None, env: Mapping[str, str] | None = None) -> dict[Kind, bytes]:
    """Each provider kind's secret: from ``path`` (or ``CALLBACK_SECRETS_FILE``), then the environment.

    A ``CALLBACK_SECRET_<KIND>`` variable wins over the file. Kinds with no
    secret are left out: a callback for them is refused. A file that group or
    others may read is a ``ValueError``.
    """
    env = os.environ if env is None else env
    found: dict[Kind, bytes] = {}
    path = path or (Path(env[ENV_SECRETS_FILE]) if env.get(ENV_SECRETS_FILE) else None)
    if path is not None:
        # Whoever can read the file can forge confirmations: refuse one that is
        # open to group or others rather than trust secrets that may have leaked.
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ValueError(f"{path} is readable by others (mode {mode:04o}): chmod 600 it")
        data = json.loads(path.read_text())
        found.update({Kind(k): str(v).encode() for k, v in data.items() if k in set(Kind) and v})
    for kind in Kind:
        value = env.get(SECRET_VARIABLE_PREFIX + kind.value.upper())
        if value:
            found[kind] = value.encode()
    return found
