"""Fuzz the input model: what it accepts survives the trip to the worker; what
it refuses, it refuses by field, with a message.

Generated input is the demo trip with parts replaced, removed or added (wrong
types, odd and huge unicode, control characters, lone surrogates as the CLI
gets them from undecodable arguments), nested as an API caller sends it, and
flat as the form and the CLI send it.
"""

from __future__ import annotations

import unicodedata
from datetime import date, timedelta
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from temporalio.contrib.pydantic import pydantic_data_converter

import tests.fuzzing  # noqa: F401  (the hypothesis profiles)
from trip.forms import FLAT_FIELDS, BookingInputError, booking_from_flat, booking_from_user, demo_trip
from trip.models import BookingRequest, Mode, Scenario

TODAY = date(2030, 6, 1)
START = TODAY + timedelta(days=30)

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
odd_text = st.text(
    st.one_of(st.characters(codec=None), SURROGATES, st.sampled_from(" \t\n\x00\x7f\u200b")), max_size=30
)
huge_text = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "é", "\U0001f600"]), st.integers(60, 5000))
near_valid = st.sampled_from(
    [
        "Ada Lovelace",
        "ada@example.com",
        "Lisbon",
        "São Paulo",
        " Rome ",
        "O'Hare",
        "2030-07-01",
        "2030-07-05",
        "P1D",
        "0",
    ]
)
dates = st.dates(min_value=TODAY - timedelta(days=3), max_value=TODAY + timedelta(days=400)).map(date.isoformat)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), odd_text, huge_text, near_valid, dates
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3))


def nested_trip() -> dict[str, Any]:
    return {
        "traveller": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "car": {"city": "Lisbon", "pickup": START.isoformat(), "dropoff": (START + timedelta(days=4)).isoformat()},
        "hotel": {
            "city": "Lisbon",
            "check_in": START.isoformat(),
            "check_out": (START + timedelta(days=4)).isoformat(),
        },
        "flight": {"origin": "London", "destination": "Lisbon", "date": START.isoformat()},
        "mode": "parallel",
        "scenario": "happy",
    }


OPTIONAL = {
    "retry": st.dictionaries(
        st.sampled_from(
            [
                "initial_interval_s",
                "backoff",
                "max_interval_s",
                "max_attempts",
                "activity_timeout_s",
                "undo_max_attempts",
                "undo_max_interval_s",
            ]
        ),
        st.one_of(st.floats(-1, 700), st.integers(-1, 120), values),
        max_size=4,
    ),
    "attention_deadline": st.one_of(st.floats(-10, 4e7), st.integers(-10, 4 * 10**7), values),
    "mode": st.one_of(st.sampled_from([m.value for m in Mode]), values),
    "scenario": st.one_of(st.sampled_from([s.value for s in Scenario]), values),
}


@st.composite
def nested_inputs(draw: st.DrawFn) -> Any:
    data = nested_trip()
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["leaf", "section", "remove", "add", "optional"]))
        if how == "leaf":
            section = draw(st.sampled_from(["traveller", "car", "hotel", "flight"]))
            if isinstance(data.get(section), dict) and data[section]:
                data[section][draw(st.sampled_from(sorted(data[section])))] = draw(values)
        elif how == "section":
            data[draw(st.sampled_from(sorted(data)))] = draw(values)
        elif how == "remove" and data:
            del data[draw(st.sampled_from(sorted(data)))]
        elif how == "add":
            data[draw(odd_text)] = draw(values)
        else:
            name = draw(st.sampled_from(sorted(OPTIONAL)))
            data[name] = draw(OPTIONAL[name])
    return data


def texts(value: Any) -> list[str]:
    """Every string in a model dump."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def check_accepted(req: BookingRequest) -> None:
    assert round_trip(req) == req
    # Control characters would reach pages, terminals and provider ledgers.
    for text in texts(req.model_dump(mode="json")):
        assert not any(unicodedata.category(ch).startswith("C") for ch in text), f"accepted {text!r}"


def round_trip(req: BookingRequest) -> BookingRequest:
    """Through the data converter that the client and the worker both use."""
    converter = pydantic_data_converter.payload_converter
    (decoded,) = converter.from_payloads(converter.to_payloads([req]), [BookingRequest])
    assert isinstance(decoded, BookingRequest)
    return decoded


UNKNOWN = "is not a known field"


def check_refusal(err: BookingInputError, allowed: set[str] | None) -> None:
    """Each error is keyed by the field it is about, with a message, all printable.

    ``allowed``: the only keys the caller can show (the form's fields).
    """
    assert err.errors, "refused without saying why"
    for field, message in err.errors.items():
        assert isinstance(message, str) and message.strip(), f"no message for {field!r}"
        assert field.strip(), f"an error keyed {field!r} names no field: {err.errors}"
        # Shown in a page, a terminal and JSON: must be encodable text.
        (field + message).encode()
        if allowed is not None:
            assert field in allowed, f"error keyed {field!r}, which is no form field: {err.errors}"
        elif message != UNKNOWN:
            assert field in FLAT_FIELDS or field.split(".")[0] in BookingRequest.model_fields, err.errors


@given(nested_inputs())
# Regression: an unknown key "" was reported under the name "", which names nothing.
@example({**nested_trip(), "": None})
@example({**nested_trip(), "car": {**nested_trip()["car"], "\udcff": 1}})
def test_nested_input_round_trips_or_is_refused_by_field(data: Any) -> None:
    try:
        req = booking_from_user(data, today=TODAY)
    except BookingInputError as err:
        check_refusal(err, None)
        return
    check_accepted(req)


@st.composite
def flat_inputs(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = dict(demo_trip(TODAY))
    for name in draw(st.lists(st.sampled_from(sorted(FLAT_FIELDS)), max_size=4, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            del data[name]
        else:
            data[name] = draw(st.one_of(odd_text, huge_text, near_valid, dates))
    return data


@given(flat_inputs())
# Regression: an email with a control character in it was accepted.
@example({**demo_trip(TODAY), "traveller_email": "a\x07@example.com"})
def test_form_and_cli_input_round_trips_or_is_refused_next_to_a_form_field(data: dict[str, Any]) -> None:
    try:
        req = booking_from_flat(data, today=TODAY)
    except BookingInputError as err:
        check_refusal(err, set(FLAT_FIELDS))
        return
    check_accepted(req)
