"""The bulk operation's pure parts: the age flag, the filter on a booking's stuck steps, the summary's words."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from run_operator import ProgressBar
from saga import StepKind
from trip.status import Attention, OutstandingStep
from wiring.bulk import Action, Filter, Item, Outcome, Report, parse_age

NOW = datetime(2027, 1, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5h", 5400)]
)
def test_ages_read_as_an_operator_writes_them(text: str, seconds: float) -> None:
    assert parse_age(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "ten minutes", "-5m", "10w", "m"])
def test_a_bad_age_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="try 30s, 10m"):
        parse_age(text)


def stuck(*steps: OutstandingStep, waiting: timedelta = timedelta(minutes=15)) -> Attention:
    return Attention(since=NOW - waiting, deadline=NOW + timedelta(days=7), outstanding=list(steps))


CAR_DOWN = OutstandingStep(step="book_car", undo_error_type="ProviderUnavailable", undo_error="503")
HOTEL_GONE = OutstandingStep(step="book_hotel", undo_error_type="Gone", undo_error="410")
#: Past the pivot: the step's own error, not an undo's.
FINALIZE = OutstandingStep(step="finalize_car", kind=StepKind.RETRIABLE, error_type="ProviderUnavailable", error="503")


@pytest.mark.parametrize(
    ("chosen", "picked"),
    [
        (Filter(), ["book_car", "book_hotel"]),
        (Filter(step="book_car"), ["book_car"]),
        (Filter(step="book_flight"), []),
        (Filter(provider="hotel"), ["book_hotel"]),
        (Filter(error_type="Gone"), ["book_hotel"]),
        (Filter(step="book_car", error_type="Gone"), []),
        (Filter(older_than=timedelta(minutes=10)), ["book_car", "book_hotel"]),
        (Filter(older_than=timedelta(minutes=20)), []),
    ],
)
def test_the_filter_picks_the_stuck_steps_that_match(chosen: Filter, picked: list[str]) -> None:
    assert chosen.steps(stuck(CAR_DOWN, HOTEL_GONE), NOW) == picked


def test_past_the_pivot_the_provider_and_the_steps_own_error_match() -> None:
    assert Filter(provider="car", error_type="ProviderUnavailable").steps(stuck(FINALIZE), NOW) == ["finalize_car"]
    assert Filter(step="book_car").steps(None, NOW) == []  # no details: never acted on


def test_only_an_age_narrows_the_visibility_query() -> None:
    assert "StartTime" not in Filter(step="book_car").visibility_query(NOW)
    query = Filter(older_than=timedelta(minutes=10)).visibility_query(NOW)
    assert 'BookingStatus = "NEEDS_ATTENTION"' in query and 'StartTime < "2027-01-04T11:50:00+00:00"' in query


def report(*items: Item, **kw: object) -> Report:
    return Report("bulk-1", Action.RETRY, Filter(step="book_car"), items=list(items), **kw)  # type: ignore[arg-type]


def test_the_summary_says_why_bookings_still_wait_and_counts_them_once_per_reason() -> None:
    why = "book_car: ProviderUnavailable: car provider outage"
    text = report(
        Item("a", Outcome.DONE),
        Item("b", Outcome.STILL_WAITING, reason=why),
        Item("c", Outcome.STILL_WAITING, reason=why),
    ).summary()
    assert text == (
        "batch bulk-1 (step book_car): 3 retried; 1 closed, nothing outstanding; 2 still waiting. "
        f"Why: 2 bookings: {why}."
    )


def test_the_summary_says_when_nothing_was_done() -> None:
    assert report().summary().endswith("nothing to do: no booking in NEEDS_ATTENTION matches.")
    settled = report(Item("a", Outcome.SETTLED, reason="now ROLLED_BACK")).summary()
    assert "1 already settled, skipped. Nothing was done." in settled


def test_an_interrupted_summary_says_how_to_finish_the_batch() -> None:
    text = report(Item("a", Outcome.DONE), Item("b", Outcome.INTERRUPTED), interrupted=True).summary()
    assert "1 retried" in text and "1 not done (interrupted)" in text and "--batch bulk-1" in text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_is_drawn_on_a_terminal_only() -> None:
    for stream, drawn in ((Terminal(), True), (io.StringIO(), False)):
        bar = ProgressBar(stream, "retrying")
        bar(1, 2, Item("a", Outcome.DONE))
        bar(2, 2, Item("b", Outcome.STILL_WAITING))
        bar.finish()
        shown = stream.getvalue()
        assert ("2/2  1 done, 1 still waiting" in shown and shown.endswith("\n")) is drawn, shown
        assert bar.counts == {"done": 1, "still_waiting": 1}
