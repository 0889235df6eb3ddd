"""The flat, one-level view of a booking that the web form and the CLI share.

A ``BookingRequest`` is nested (``traveller.name``, ``car.pickup``); a form
input or a CLI flag is one flat name (``traveller_name``, ``car_pickup``).
This module maps one onto the other, turns pydantic's validation errors into
one plain-language message per flat field, and refuses unknown keys in user
input. The rules themselves stay in ``trip.models``: this is presentation, so
it must not import Flask (the CLI uses it too) or any workflow code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from trip.models import BookingRequest, Mode, Scenario


def booking_from_flat(data: Mapping[str, Any], *, today: date) -> BookingRequest:
    """Build from flat form/CLI fields; raise ``BookingInputError`` keyed by field."""
    nested: dict[str, Any] = {}
    for flat, path in FLAT_FIELDS.items():
        value = data.get(flat)
        if value is None or (isinstance(value, str) and value.strip() == "" and len(path) == 1):
            continue  # mode/scenario fall back to their defaults
        target = nested
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    for section in ("traveller", "car", "hotel", "flight"):
        nested.setdefault(section, {})
    return booking_from_user(nested, today=today)


def booking_from_user(data: Mapping[str, Any], *, today: date) -> BookingRequest:
    """Validate nested user input: unknown keys are errors, not dropped.

    The models themselves ignore unknown keys (see ``trip.models._Model``), so
    this is where a typo in user input is caught.
    """
    unknown = _unknown_keys(BookingRequest, data)
    if unknown:
        raise BookingInputError({_path_name(path): "is not a known field" for path in unknown})
    try:
        return BookingRequest.model_validate(data, context={"today": today})
    except ValidationError as exc:
        raise BookingInputError.from_validation_error(exc) from None


def _unknown_keys(model: type[BaseModel], data: Any, where: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths in ``data`` that ``model`` has no field for, nested models included."""
    if not isinstance(data, Mapping):
        return []
    found: list[tuple[str, ...]] = []
    for key, value in data.items():
        field = model.model_fields.get(str(key))
        if field is None:
            found.append((*where, str(key)))
            continue
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found.extend(_unknown_keys(arg, value, (*where, str(key))))
                break
    return found


def _path_name(path: tuple[str, ...]) -> str:
    """A dotted path a person can read, whatever the keys: ``car.colour``, ``"".x``.

    A key that is not a plain name (empty, a dot or a space in it, odd
    unicode) is shown JSON-quoted with ASCII escapes, so that the error can be
    printed and sent back as JSON even for a lone surrogate.
    """
    return ".".join(part if part.isidentifier() and part.isascii() else json.dumps(part) for part in path)


def demo_trip(today: date) -> dict[str, str]:
    """Flat field values for a valid demo trip a month from ``today``."""
    start, end = today + timedelta(days=30), today + timedelta(days=35)
    return {
        "traveller_name": "Ada Lovelace",
        "traveller_email": "ada@example.com",
        "car_city": "Lisbon",
        "car_pickup": start.isoformat(),
        "car_dropoff": end.isoformat(),
        "hotel_city": "Lisbon",
        "hotel_check_in": start.isoformat(),
        "hotel_check_out": end.isoformat(),
        "flight_from": "London",
        "flight_to": "Lisbon",
        "flight_date": start.isoformat(),
        "mode": Mode.PARALLEL.value,
        "scenario": Scenario.HAPPY.value,
        # Empty: book outright. Seconds: hold and wait for the traveller's confirm.
        "confirm_within": "",
        # Empty: each step's own deadline for a provider's confirmation callback.
        "async_deadline": "",
    }


#: Flat field name (form input, CLI flag) → path in ``BookingRequest``.
FLAT_FIELDS: dict[str, tuple[str, ...]] = {
    "traveller_name": ("traveller", "name"),
    "traveller_email": ("traveller", "email"),
    "car_city": ("car", "city"),
    "car_pickup": ("car", "pickup"),
    "car_dropoff": ("car", "dropoff"),
    "hotel_city": ("hotel", "city"),
    "hotel_check_in": ("hotel", "check_in"),
    "hotel_check_out": ("hotel", "check_out"),
    "flight_from": ("flight", "origin"),
    "flight_to": ("flight", "destination"),
    "flight_date": ("flight", "date"),
    "mode": ("mode",),
    "scenario": ("scenario",),
    "confirm_within": ("confirm_within",),
    "async_deadline": ("async_deadline_s",),
}
_PATH_TO_FLAT = {path: flat for flat, path in FLAT_FIELDS.items()}
#: Where an error about a whole section (e.g. date order) is shown.
_SECTION_ERROR_FIELD: dict[tuple[str, ...], str] = {
    ("car",): "car_dropoff",
    ("hotel",): "hotel_check_out",
    ("flight",): "flight_to",
}

_FRIENDLY = {
    "string_too_short": lambda e: (
        "is required" if not e.get("input") else f"must be at least {e['ctx']['min_length']} characters"
    ),
    "string_too_long": lambda e: f"must be at most {e['ctx']['max_length']} characters",
    "missing": lambda e: "is required",
    "date_from_datetime_parsing": lambda e: "must be a date like 2030-01-31",
    "date_parsing": lambda e: "must be a date like 2030-01-31",
    "date_type": lambda e: "must be a date like 2030-01-31",
    "enum": lambda e: f"must be one of: {e['ctx']['expected']}",
    "extra_forbidden": lambda e: "is not a known field",
    "string_type": lambda e: "must be text",
    "time_delta_parsing": lambda e: "must be a number of seconds, e.g. 600",
}


class BookingInputError(ValueError):
    """Bad input, with one plain-language message per flat field."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in errors.items()))

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> BookingInputError:
        errors: dict[str, str] = {}
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            field = _PATH_TO_FLAT.get(loc) or _SECTION_ERROR_FIELD.get(loc) or ".".join(loc) or "form"
            friendly = _FRIENDLY.get(err["type"])
            message = friendly(err) if friendly else str(err["msg"]).removeprefix("Value error, ")
            errors.setdefault(field, message)
        return cls(errors)
