"""The booking gauges on the web app's ``/metrics``, from Temporal's visibility.

* ``booking_needs_attention{task_queue}``: bookings waiting for an operator now;
* ``booking_needs_attention_oldest_age_seconds{task_queue}``: how long ago the
  oldest of them started (0 when there is none);
* ``booking_awaiting_confirmation{task_queue}``: held trips waiting for the
  traveller's answer;
* ``booking_visibility_up``: 1 when the last visibility answer came, 0 when
  Temporal did not answer (the gauges above are then left out, not guessed).

A worker only sees the runs in its cache, and a booking that waits for days is
evicted long before, so no worker can count them; visibility can, in one call.
Counted over the app's own task queue, on runs still open (running or paused:
a paused booking still waits for an operator), by the ``BookingStatus`` search
attribute. The dev server's SQL visibility has no ``ORDER BY``, so the oldest is
the earliest start among at most ``OLDEST_SCAN`` rows. One answer serves every
scrape for ``VISIBILITY_METRICS_TTL`` seconds, so parallel scrapers (two
Prometheus replicas, a person with curl) cost Temporal one refresh. Why these
come from here and not from the worker: docs/observability.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client

from trip import SA_BOOKING_STATUS, WORKFLOW_TYPE
from trip.status import SagaStatus
from web.portal import PORTAL_KEY, TemporalPortal

#: At most this many rows are read to find the oldest booking in NEEDS_ATTENTION
#: (one page). SQL visibility lists open runs newest first, so past it the gauge
#: reports the oldest of the newest OLDEST_SCAN: an underestimate, while the
#: count says how many there are.
OLDEST_SCAN = 1000

log = logging.getLogger(__name__)
#: Open runs: a paused booking is still waiting.
_OPEN = 'ExecutionStatus IN ("Running", "Paused")'


def open_bookings_query(task_queue: str, status: SagaStatus) -> str:
    """Open booking runs on ``task_queue`` whose saga status is ``status``."""
    return (
        f'WorkflowType = "{WORKFLOW_TYPE}" AND TaskQueue = "{task_queue}" AND {_OPEN} '
        f'AND {SA_BOOKING_STATUS.name} = "{status.value}"'
    )


@dataclass(frozen=True)
class Snapshot:
    needs_attention: int
    #: Start time of the oldest booking in NEEDS_ATTENTION, None when there is none.
    oldest_start: datetime | None
    awaiting_confirmation: int


async def read_snapshot(client: Client, task_queue: str) -> Snapshot:
    """Two count calls and, only when something waits, one bounded list."""
    attention = open_bookings_query(task_queue, SagaStatus.NEEDS_ATTENTION)
    needs_attention = (await client.count_workflows(attention)).count
    awaiting = (await client.count_workflows(open_bookings_query(task_queue, SagaStatus.AWAITING_CONFIRMATION))).count
    oldest: datetime | None = None
    if needs_attention:
        # The raw call, one page: the SDK's list_workflows cannot decode a paused
        # run's status (wiring.paused_status), and the memo is not needed here.
        page = await client.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(namespace=client.namespace, query=attention, page_size=OLDEST_SCAN),
            retry=True,
        )
        oldest = min((info.start_time.ToDatetime(tzinfo=UTC) for info in page.executions), default=None)
    return Snapshot(needs_attention, oldest, awaiting)


class VisibilityGauges(Collector):
    """A prometheus_client collector that reads visibility at most once per ``ttl`` seconds."""

    def __init__(
        self,
        read: Callable[[], Snapshot],
        task_queue: str,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._task_queue = task_queue
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._snapshot: Snapshot | None = None
        #: How many times visibility was asked (for the tests of the cache).
        self.reads = 0

    def current(self) -> Snapshot | None:
        """The cached answer, refreshed when older than ``ttl``; None when Temporal did not answer.

        A failure is cached too: a Temporal that is down must not make every
        scrape wait for its timeout.
        """
        with self._lock:  # parallel scrapes wait for the one refresh and share it
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._ttl:
                self.reads += 1
                try:
                    self._snapshot = self._read()
                except Exception as err:  # unreachable, timed out, refused: say so with booking_visibility_up 0
                    log.warning("booking gauges: visibility did not answer: %s", err)
                    self._snapshot = None
                self._read_at = self._clock()
            return self._snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.current()
        yield GaugeMetricFamily(
            "booking_visibility_up",
            "1 when Temporal's visibility answered the last refresh of the booking gauges, else 0",
            value=0 if snapshot is None else 1,
        )
        if snapshot is None:
            return
        labels = ["task_queue"]
        values = [self._task_queue]
        for name, doc, value in (
            ("booking_needs_attention", "Open bookings waiting for an operator", snapshot.needs_attention),
            (
                "booking_needs_attention_oldest_age_seconds",
                "Seconds since the oldest booking waiting for an operator started (0: none waits)",
                _age(snapshot.oldest_start),
            ),
            (
                "booking_awaiting_confirmation",
                "Held trips waiting for the traveller's answer",
                snapshot.awaiting_confirmation,
            ),
        ):
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric(values, value)
            yield family


def _age(start: datetime | None) -> float:
    if start is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - start).total_seconds())


def make_gauges(app: Flask) -> VisibilityGauges:
    """The app's collector, asking Temporal through the app's one portal."""
    portal: TemporalPortal = app.extensions[PORTAL_KEY]
    task_queue: str = app.config["TASK_QUEUE"]
    timeout = float(app.config["VISIBILITY_METRICS_TIMEOUT"])
    return VisibilityGauges(
        lambda: portal.call(lambda client: read_snapshot(client, task_queue), timeout=timeout),
        task_queue,
        ttl=float(app.config["VISIBILITY_METRICS_TTL"]),
    )
