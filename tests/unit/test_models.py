"""The one input model: every rule, with the message a person reads."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from trip.forms import BookingInputError, booking_from_flat, booking_from_user, demo_trip
from trip.models import (
    BookingRequest,
    CancelRequest,
    CancelResult,
    CarRequest,
    Kind,
    Mode,
    Reservation,
    ReserveRequest,
    RetryOverrides,
    Scenario,
    Traveller,
    check_workflow_id,
)

TODAY = date(2030, 6, 1)


def valid() -> dict[str, str]:
    return demo_trip(TODAY)


def errors_for(**changes: str) -> dict[str, str]:
    data = {**valid(), **changes}
    with pytest.raises(BookingInputError) as info:
        booking_from_flat(data, today=TODAY)
    return info.value.errors


def test_valid_flat_input_builds_the_nested_model() -> None:
    req = booking_from_flat(
        {**valid(), "traveller_email": " Ada@Example.COM ", "mode": "sequential", "scenario": "flight-sold-out"},
        today=TODAY,
    )
    assert req.traveller.email == "ada@example.com"
    assert req.mode is Mode.SEQUENTIAL and req.scenario is Scenario.FLIGHT_SOLD_OUT
    assert req.flight.date == TODAY + timedelta(days=30)


def test_blank_mode_and_scenario_fall_back_to_defaults() -> None:
    req = booking_from_flat({**valid(), "mode": "", "scenario": ""}, today=TODAY)
    assert (req.mode, req.scenario) == (Mode.PARALLEL, Scenario.HAPPY)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("traveller_name", "", "is required"),
        ("traveller_name", "x" * 101, "at most 100 characters"),
        ("traveller_name", "<script>alert(1)</script>", "must be a name"),
        ("traveller_name", "Ada\x00", "control characters"),
        ("traveller_email", "not-an-email", "must be an email address"),
        ("traveller_email", "a@b", "must be an email address"),
        ("car_city", "", "is required"),
        ("car_city", "P" * 65, "at most 64 characters"),
        ("car_city", "Paris<b>", "must be a place name"),
        ("car_pickup", "tomorrow", "must be a date"),
        ("car_pickup", "2030-05-31", "must not be in the past"),
        ("car_dropoff", "2030-07-01", "must not be before the pick-up date"),
        ("hotel_check_in", "2031-06-02", "within 365 days"),
        ("hotel_check_out", "2030-07-01", "must be after the check-in date"),
        ("hotel_check_out", "2030-10-01", "at most 60 nights"),
        ("flight_to", "london", "different place"),
        ("flight_date", "2030-02-30", "must be a date"),
        ("mode", "fast", "must be one of"),
        ("scenario", "meteor", "must be one of"),
    ],
)
def test_each_bad_field_gets_a_clear_message_on_that_field(field: str, value: str, message: str) -> None:
    changes = {field: value}
    if field == "car_dropoff":
        changes["car_pickup"] = "2030-07-05"
    if field == "hotel_check_out":
        changes["hotel_check_in"] = "2030-07-05" if value == "2030-07-01" else "2030-07-01"
    errors = errors_for(**changes)
    assert field in errors, errors
    assert message in errors[field]


def test_unknown_field_in_user_input_is_rejected_not_dropped() -> None:
    with pytest.raises(BookingInputError) as info:
        booking_from_user({**make_nested(), "coupon": "FREE"}, today=TODAY)
    assert info.value.errors == {"coupon": "is not a known field"}
    nested = make_nested()
    nested["car"] = {**nested["car"], "colour": "red"}  # type: ignore[dict-item]
    with pytest.raises(BookingInputError, match=r"car\.colour: is not a known field"):
        booking_from_user(nested, today=TODAY)


def _extra(model: BaseModel) -> dict[str, Any]:
    """A newer sender's payload: the model's fields plus ones this version does not know."""
    data: dict[str, Any] = model.model_dump(mode="json")
    data["added_in_a_later_release"] = {"anything": [1, 2]}
    for value in data.values():
        if isinstance(value, dict):
            value["nested_addition"] = True
    return data


@pytest.mark.parametrize(
    "message",
    [
        booking_from_flat(demo_trip(TODAY), today=TODAY),
        ReserveRequest(
            kind=Kind.CAR,
            booking_id="b",
            idempotency_key="b:car",
            traveller=Traveller(name="Ada", email="ada@example.com"),
            details=CarRequest(city="Lisbon", pickup=TODAY, dropoff=TODAY),
        ),
        Reservation(kind=Kind.HOTEL, reservation_id="r", confirmation="HTL-1"),
        CancelRequest(kind=Kind.FLIGHT, booking_id="b", idempotency_key="b:flight"),
        CancelResult(kind=Kind.CAR, idempotency_key="b:car", outcome="cancelled"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_a_message_with_fields_from_a_newer_release_decodes_on_this_one(message: BaseModel) -> None:
    # During a rolling deploy an old worker must read what a newer sender wrote, unknown fields and all.
    converter = pydantic_data_converter.payload_converter
    payload = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(_extra(message)).encode())
    (decoded,) = converter.from_payloads([payload], [type(message)])
    assert decoded == message
    (again,) = converter.from_payloads(converter.to_payloads([decoded]), [type(message)])
    assert again == message


@pytest.mark.parametrize("workflow_id", ["trip-1", "x%41y", "a.b:c_d-e", "A" * 200])
def test_documented_workflow_ids_are_accepted(workflow_id: str) -> None:
    assert check_workflow_id(workflow_id) == workflow_id


@pytest.mark.parametrize("workflow_id", ["", "a/b", "a?b", "a#b", "a b", "-a", "A" * 201, "é"])
def test_other_workflow_ids_are_refused_with_the_character_set(workflow_id: str) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        check_workflow_id(workflow_id)


def make_nested() -> dict[str, object]:
    return booking_from_flat(valid(), today=TODAY).model_dump(mode="json")


def test_past_dates_are_only_checked_with_a_today_context() -> None:
    # A replay long after the trip must still deserialise its input.
    old = booking_from_flat(valid(), today=TODAY).model_dump(mode="json")
    assert BookingRequest.model_validate(old).car.pickup < date.today() + timedelta(days=10_000)
    with pytest.raises(ValueError, match="past"):
        BookingRequest.model_validate(old, context={"today": TODAY + timedelta(days=40)})


def test_retry_overrides_refuse_a_longest_wait_shorter_than_the_first() -> None:
    with pytest.raises(ValueError, match="max_interval_s must not be shorter than initial_interval_s"):
        RetryOverrides(initial_interval_s=1.0, max_interval_s=0.5)


def test_one_bound_alone_never_makes_a_policy_temporal_rejects() -> None:
    # --max-interval 0.5 alone, against the steps' 1 s default first wait: this used to fail every workflow task.
    from workflows.booking import STEP_POLICIES

    for policy in STEP_POLICIES.values():
        retry = policy.retry_policy(RetryOverrides(max_interval_s=0.5))
        assert retry.maximum_interval is not None and retry.initial_interval <= retry.maximum_interval
        retry._validate()  # what the SDK runs before it schedules the activity
