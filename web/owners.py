"""Which bookings this browser started: who may confirm, decline or cancel one.

A confirm issues a flight ticket that cannot be undone, so the booking id in a
URL is not enough to act on a booking: the id travels in shared links and used
to be on the public list. The right to act lives in Flask's *signed* session
cookie instead. ``create_booking`` adds the booking it starts there (most
recent first, bounded so the cookie stays small), and only that browser, or a
logged-in operator, may send ``confirm``, ``decline`` or a cancel.

Anyone can rebuild a booking's id from its status page: the form's one-time
token is part of it, and the page shows the trip the digest covers. So
re-posting the same form must not hand the booking to whoever re-posts it:
a booking is remembered only when its form token was issued to this very
session (``issue_form_token`` when the form is drawn). Never trust an id or a
token from the request alone here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import abort, session
from flask_login import current_user

F = TypeVar("F", bound=Callable[..., Any])

#: Session keys: the bookings this browser started, and the form tokens it was given.
BOOKINGS_KEY = "bookings"
FORMS_KEY = "form_tokens"
#: A booking id is ~55 characters and a token 32, so both lists together stay
#: near 1.5 KB before the cookie's compression: far from browsers' 4 KB limit,
#: with room for the CSRF secret and an operator's login.
MAX_BOOKINGS = 20
MAX_FORM_TOKENS = 10


def _listed(key: str) -> list[str]:
    value = session.get(key)
    return [str(item) for item in value] if isinstance(value, list) else []


def _push(key: str, item: str, limit: int) -> None:
    session[key] = [item, *(other for other in _listed(key) if other != item)][:limit]


def issue_form_token(token: str) -> None:
    """The form drawn for this browser carries ``token``: a booking made with it is this browser's."""
    _push(FORMS_KEY, token, MAX_FORM_TOKENS)


def was_issued(token: str) -> bool:
    return token in _listed(FORMS_KEY)


def remember_booking(workflow_id: str) -> None:
    _push(BOOKINGS_KEY, workflow_id, MAX_BOOKINGS)


def own_bookings() -> list[str]:
    """The bookings this browser started, most recent first."""
    return _listed(BOOKINGS_KEY)


def is_operator() -> bool:
    return bool(current_user.is_authenticated)


def may_act(workflow_id: str) -> bool:
    """May this request confirm, decline or cancel ``workflow_id``?"""
    return is_operator() or workflow_id in own_bookings()


def owner_required(view: F) -> F:
    """Only the browser that booked ``workflow_id``, or an operator: anyone else gets 403, nothing sent."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not may_act(str(kwargs.get("workflow_id", ""))):
            abort(403)
        return view(*args, **kwargs)

    return cast(F, wrapped)
