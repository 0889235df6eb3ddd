"""The booking gauges' cache (``web.gauges.VisibilityGauges``) without a server:
parallel scrapes share one visibility read, a stale answer is refreshed, and a
failed read is reported as ``booking_visibility_up 0`` and cached too."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from web.gauges import Snapshot, VisibilityGauges


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def values(gauges: VisibilityGauges) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(gauges)
    text = generate_latest(registry).decode()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}


def test_parallel_scrapes_share_one_read_until_it_is_stale() -> None:
    started = datetime.now(UTC) - timedelta(minutes=10)
    release = threading.Event()

    def read() -> Snapshot:
        release.wait(5)  # every scrape arrives while the first read is still out
        return Snapshot(needs_attention=2, oldest_start=started, awaiting_confirmation=3)

    clock = Clock()
    gauges = VisibilityGauges(read, "q", ttl=5, clock=clock)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(values, gauges) for _ in range(8)]
        release.set()
        answers = [f.result() for f in futures]
    assert gauges.reads == 1
    for found in answers:
        assert found["booking_needs_attention"] == 2
        assert found["booking_awaiting_confirmation"] == 3
        assert found["booking_visibility_up"] == 1
        assert 600 <= found["booking_needs_attention_oldest_age_seconds"] < 660

    clock.now += 4.9
    values(gauges)
    assert gauges.reads == 1
    clock.now += 0.2
    values(gauges)
    assert gauges.reads == 2


def test_nothing_waiting_is_an_age_of_zero() -> None:
    gauges = VisibilityGauges(lambda: Snapshot(0, None, 0), "q", ttl=5, clock=Clock())
    assert values(gauges)["booking_needs_attention_oldest_age_seconds"] == 0


def test_a_failed_read_leaves_the_gauges_out_and_is_not_retried_on_every_scrape() -> None:
    def read() -> Snapshot:
        raise TimeoutError("Temporal did not answer in time")

    clock = Clock()
    gauges = VisibilityGauges(read, "q", ttl=5, clock=clock)
    found = values(gauges)
    assert found == {"booking_visibility_up": 0}
    values(gauges)
    assert gauges.reads == 1
    clock.now += 5
    values(gauges)
    assert gauges.reads == 2
