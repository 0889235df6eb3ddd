"""What a saga's history says about where its time went, on the server's clock."""

from __future__ import annotations

from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client


async def unwind_ms(client: Client, workflow_id: str) -> float:
    """From the failed booking to the workflow's close, on the server's clock."""
    events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
    failed = next(e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)
    return float((events[-1].event_time.ToDatetime() - failed.event_time.ToDatetime()).total_seconds() * 1000)


def time_split(events: Any) -> dict[str, float]:
    """Split a saga's server-side time: workflow tasks (scheduled to completed,
    i.e. waiting for and running workflow code) against activities in flight."""
    t0 = events[0].event_time.ToDatetime()

    def ms(event: Any) -> float:
        return float((event.event_time.ToDatetime() - t0).total_seconds() * 1000)

    wft_ms, wfts, scheduled_at = 0.0, 0, None
    activity_spans: dict[int, float] = {}
    spans: list[tuple[float, float]] = []
    for event in events:
        kind = EventType.Name(event.event_type)
        if kind == "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED":
            scheduled_at = ms(event)
        elif kind == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED" and scheduled_at is not None:
            wft_ms += ms(event) - scheduled_at
            wfts += 1
        elif kind == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED":
            activity_spans[event.event_id] = ms(event)
        elif kind in ("EVENT_TYPE_ACTIVITY_TASK_COMPLETED", "EVENT_TYPE_ACTIVITY_TASK_FAILED"):
            attrs = (
                event.activity_task_completed_event_attributes
                if kind.endswith("COMPLETED")
                else event.activity_task_failed_event_attributes
            )
            spans.append((activity_spans.pop(attrs.scheduled_event_id), ms(event)))
    busy, end = 0.0, 0.0  # union of activity intervals: time with any activity in flight
    for start, stop in sorted(spans):
        busy += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return {
        "workflow_tasks": wfts,
        "workflow_task_ms": wft_ms,
        "activities_in_flight_ms": busy,
        "history_ms": ms(events[-1]),
    }
