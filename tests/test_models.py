"""The one input model: every rule, with the message a person reads."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from trip.models import BookingInputError, BookingRequest, Mode, RetryOverrides, Scenario, demo_trip

TODAY = date(2030, 6, 1)


def valid() -> dict[str, str]:
    return demo_trip(TODAY)


def errors_for(**changes: str) -> dict[str, str]:
    data = {**valid(), **changes}
    with pytest.raises(BookingInputError) as info:
        BookingRequest.from_flat(data, today=TODAY)
    return info.value.errors


def test_valid_flat_input_builds_the_nested_model() -> None:
    req = BookingRequest.from_flat(
        {**valid(), "traveller_email": " Ada@Example.COM ", "mode": "sequential", "scenario": "flight-sold-out"},
        today=TODAY,
    )
    assert req.traveller.email == "ada@example.com"
    assert req.mode is Mode.SEQUENTIAL and req.scenario is Scenario.FLIGHT_SOLD_OUT
    assert req.flight.date == TODAY + timedelta(days=30)


def test_blank_mode_and_scenario_fall_back_to_defaults() -> None:
    req = BookingRequest.from_flat({**valid(), "mode": "", "scenario": ""}, today=TODAY)
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


def test_unknown_field_is_rejected_not_dropped() -> None:
    with pytest.raises(ValueError, match="extra"):
        BookingRequest.model_validate({**make_nested(), "coupon": "FREE"})


def make_nested() -> dict[str, object]:
    return BookingRequest.from_flat(valid(), today=TODAY).model_dump(mode="json")


def test_past_dates_are_only_checked_with_a_today_context() -> None:
    # A replay long after the trip must still deserialise its input.
    old = BookingRequest.from_flat(valid(), today=TODAY).model_dump(mode="json")
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
