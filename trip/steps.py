"""The one table of a trip's steps and the activities that serve them.

A step's book, undo and finalize activity names are recorded in every
workflow history, so they are written out here once, never worked out from
each other by editing strings: the workflow, the activities' registration, the
metrics and the clients look them up. Renaming one breaks every run in flight.

This module must stay import-light: workflow code imports it inside the
sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from trip.models import Kind


@dataclass(frozen=True)
class Step:
    """One provider's step: the saga step (its book activity) and its companions."""

    kind: Kind
    #: The forward activity, and the saga step's name in every status.
    book: str
    #: The activity that releases what ``book`` reserved.
    undo: str
    #: Hold and confirm: the activity that turns the hold into a booking once
    #: the ticket is issued. ``None``: the ticket itself settles it.
    finalize: str | None
    #: What a person calls it.
    label: str


STEPS: tuple[Step, ...] = (
    Step(Kind.CAR, book="book_car", undo="undo_book_car", finalize="finalize_car", label="car"),
    Step(Kind.HOTEL, book="book_hotel", undo="undo_book_hotel", finalize="finalize_hotel", label="hotel"),
    Step(Kind.FLIGHT, book="book_flight", undo="undo_book_flight", finalize=None, label="flight"),
)
#: The order a sequential booking runs its steps in.
STEP_ORDER: tuple[Kind, ...] = tuple(s.kind for s in STEPS)

#: Hold and confirm: the pivot, issuing the flight's ticket. It cannot be undone.
TICKET = "ticket_flight"
TICKET_KIND = Kind.FLIGHT

_BY_KIND = {s.kind: s for s in STEPS}
_BY_BOOK = {s.book: s for s in STEPS}
_BY_UNDO = {s.undo: s for s in STEPS}
_BY_FINALIZE = {s.finalize: s for s in STEPS if s.finalize is not None}

#: Steps past the pivot: the holds that become bookings once the ticket is issued.
FINALIZING: tuple[Step, ...] = tuple(_BY_FINALIZE.values())
#: Every forward activity: the bookings (holds), the ticket and the finalizing.
FORWARD_ACTIVITIES = frozenset({*_BY_BOOK, TICKET, *_BY_FINALIZE})
#: Every undo activity.
UNDO_ACTIVITIES = frozenset(_BY_UNDO)
#: Every activity a booking worker registers.
ALL_ACTIVITIES = FORWARD_ACTIVITIES | UNDO_ACTIVITIES


def step(kind: Kind) -> Step:
    return _BY_KIND[kind]


def booked_by(name: str) -> Step | None:
    """The step whose book activity (and saga step) is ``name``."""
    return _BY_BOOK.get(name)


def undone_by(activity: str) -> Step | None:
    """The step an undo activity releases; ``None`` if ``activity`` is no undo."""
    return _BY_UNDO.get(activity)


def finalized_by(name: str) -> Step | None:
    """The step whose hold the finalize step ``name`` turns into a booking."""
    return _BY_FINALIZE.get(name)


def saga_step_of(activity: str) -> str | None:
    """The saga step an activity serves: an undo reports the step it undoes.

    ``None`` for an activity that is not one of the trip's.
    """
    undone = undone_by(activity)
    if undone is not None:
        return undone.book
    return activity if activity in FORWARD_ACTIVITIES else None
