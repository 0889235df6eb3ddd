"""run_workflow.py's flags for an undo that costs money reach the booking's input, and bad values are refused."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

import run_workflow
from saga import UndoDecision
from trip.forms import BookingInputError


def request(*flags: str) -> run_workflow.BookingRequest:
    today = date.today()
    return run_workflow.build_request(run_workflow.parse_args(list(flags), today), today)


def test_the_flags_set_the_threshold_the_deadline_and_the_default() -> None:
    req = request("--undo-fee-threshold", "99.50", "--undo-approval-deadline", "600", "--undo-approval-default", "keep")
    assert req.undo_fee_threshold == Decimal("99.50")
    assert req.undo_approval_deadline == timedelta(minutes=10)
    assert req.undo_approval_default is UndoDecision.KEEP
    # Without them: any fee needs approval, the 12-hour default deadline, then approve.
    plain = request()
    assert (plain.undo_fee_threshold, plain.undo_approval_deadline) == (Decimal(0), None)
    assert plain.undo_approval_default is UndoDecision.APPROVE


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--undo-fee-threshold", "-1"], "undo_fee_threshold"),
        (["--undo-approval-deadline", "0"], "undo_approval_deadline"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_field(flags: list[str], field: str) -> None:
    with pytest.raises(BookingInputError) as refused:
        request(*flags)
    assert field in str(refused.value) and "errors.pydantic.dev" not in str(refused.value)
