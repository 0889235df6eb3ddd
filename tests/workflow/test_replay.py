"""Runs already in flight must survive a deploy: recorded histories replay
against today's workflow code.

``tests/workflow/histories/v1/`` was recorded with the workflow as it was before
NEEDS_ATTENTION (every scenario in both modes, plus a run captured mid-unwind).
Never re-record a folder to make this test green: a red replay means the
change needs ``workflow.patched``. ``make histories`` records today's code
under a new label (see ``tests/workflow/histories/record.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from wiring.worker import workflow_runner
from workflows.approval import PATCH_UNDO_APPROVAL
from workflows.booking import PATCH_NEEDS_ATTENTION, BookingWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
FILES = sorted(HISTORIES.glob("*/*.json"))


def replayer() -> Replayer:
    return Replayer(
        workflows=[BookingWorkflow], data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"{path.parent.name}/{path.stem}", path.read_text())


def test_every_scenario_and_both_modes_were_recorded() -> None:
    # Guards against a test that passes because there is nothing to replay.
    names = {p.relative_to(HISTORIES).as_posix() for p in FILES}
    assert len([n for n in names if n.startswith("v1/")]) == 15
    assert "v1/car-cancel-broken-sequential-mid-unwind.json" in names
    # Hold and confirm: every held scenario in both modes, awaiting, declined.
    assert len([n for n in names if n.startswith("v3-hold-and-confirm/") and "-held" in n]) == 10
    # A provider that confirms later: confirmed by callback and timed out, in both modes.
    assert len([n for n in names if n.startswith("v6-async-confirmation/flight-async-lost-")]) == 4


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_recorded_history_replays_on_todays_code(path: Path) -> None:
    await replayer().replay_workflow(load(path))


@pytest.mark.parametrize("name", ["car-cancel-broken-sequential", "car-cancel-broken-sequential-mid-unwind"])
async def test_the_guard_fails_without_the_patch(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Without ``workflow.patched`` an old run would take the new path and break on replay."""
    monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id == PATCH_NEEDS_ATTENTION)
    result = await replayer().replay_workflow(load(HISTORIES / "v1" / f"{name}.json"), raise_on_replay_failure=False)
    assert isinstance(result.replay_failure, NondeterminismError), result.replay_failure


def test_the_undo_approval_paths_were_recorded() -> None:
    names = {p.relative_to(HISTORIES).as_posix() for p in FILES}
    assert {
        "v6-undo-approval/hotel-cancel-fee-sequential-approved.json",
        "v6-undo-approval/hotel-cancel-fee-parallel-kept.json",
    } <= names


async def test_a_held_undo_replays_only_with_its_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run recorded before the undo gate must not take it on replay: the gate asks for its patch."""
    history = load(HISTORIES / "v6-undo-approval" / "hotel-cancel-fee-sequential-approved.json")
    monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id != PATCH_UNDO_APPROVAL)
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert isinstance(result.replay_failure, NondeterminismError), result.replay_failure
