"""Latency, one saga at a time: happy sagas (success latency) and ``flight-sold-out``
rollbacks (time to consistent), every side interleaved (A B C C B A), and what the
latest sagas' histories say about where their time went.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bench.harness import Harness, interleaved
from bench.histories import time_split
from bench.sides import SIDES, one_saga
from bench.stats import summary
from trip.models import Scenario

Ids = dict[str, list[str]]


async def latency(h: Harness, scenario: Scenario, runs: int) -> tuple[dict[str, dict[str, Any]], Ids]:
    """Each side's start-to-result time over ``runs`` sagas, and the sagas' workflow ids."""
    ids: Ids = {side: [] for side in SIDES}

    def variant(side: str) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            seconds, workflow_id, _ = await one_saga(h.client, side, scenario)
            ids[side].append(workflow_id)
            return seconds * 1000

        return run

    samples = await interleaved(runs, {side: variant(side) for side in SIDES})
    return {side: {**summary(values), "samples_ms": values} for side, values in samples.items()}, ids


async def history_cost(h: Harness, ids: Ids, sample: int = 20) -> dict[str, dict[str, float]]:
    """Events, state transitions, and where a saga's time goes, from its history."""
    out = {}
    for name, side_ids in ids.items():
        rows = []
        for workflow_id in side_ids[-sample:]:  # the latest: past warm-up effects
            handle = h.client.get_workflow_handle(workflow_id)
            history = await handle.fetch_history()
            description = await handle.describe()
            rows.append(
                {
                    "history_events": len(history.events),
                    "state_transitions": description.raw_description.workflow_execution_info.state_transition_count,
                    **time_split(history.events),
                }
            )
        out[name] = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]} | {"sampled": len(rows)}
    return out
