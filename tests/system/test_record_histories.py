"""The replay guard can always take a new label: ``make histories`` records
today's code, and what it records replays.

The recorder broke once without anyone noticing (it could not start a booking
once payloads were encrypted), and the guard only ever takes a new label when
someone runs it. This runs it for one scenario into a temp folder, as a real
process with its own dev server, and replays what it wrote.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from tests.conftest import ROOT
from tests.workflow.test_replay import replayer


async def test_the_recorder_writes_histories_that_replay_on_todays_code(tmp_path: Path) -> None:
    out = tmp_path / "recorded"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.workflow.histories.record", "check", "--out", str(out), "--scenario", "happy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    files = sorted(p.name for p in out.glob("*.json"))
    assert files == ["happy-parallel.json", "happy-sequential.json"], files
    for path in sorted(out.glob("*.json")):
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        kinds = [event.event_type for event in history.events]
        assert kinds[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, path.name
        # Recorded on a versioned worker, as shipped: its workflow tasks name the version they ran on.
        completed = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
        assert completed and all(
            e.workflow_task_completed_event_attributes.deployment_version.build_id for e in completed
        ), path.name
        await replayer().replay_workflow(history)
