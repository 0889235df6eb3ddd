"""The seeded provider latency profile (``providers.latency``): a pure function, so its
shape is checked on the draws themselves, never on a clock; and the provider app
really waits each draw and reports it per booking."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from providers import handling
from providers.app import create_app
from providers.latency import PROFILES
from providers.ledger import Ledger

REALISTIC = PROFILES["realistic"]


def test_a_booking_gets_the_same_draw_every_time_and_another_booking_another() -> None:
    first = REALISTIC.draw_ms("b-1", "car", "reservations")
    assert REALISTIC.draw_ms("b-1", "car", "reservations") == first
    assert REALISTIC.draw_ms("b-2", "car", "reservations") != first
    assert REALISTIC.draw_ms("b-1", "car", "cancellations") != first
    assert replace(REALISTIC, seed=1).draw_ms("b-1", "car", "reservations") != first


@pytest.mark.parametrize(("kind", "median"), [("car", 120.0), ("hotel", 180.0), ("flight", 350.0)])
def test_each_provider_answers_around_its_median_with_a_right_tail(kind: str, median: float) -> None:
    draws = sorted(REALISTIC.draw_ms(f"b-{i}", kind, "reservations") for i in range(4000))
    assert statistics.median(draws) == pytest.approx(median, rel=0.05)
    p95 = draws[int(0.95 * len(draws))]
    assert p95 - median > median - draws[int(0.05 * len(draws))]  # log-normal: the slow tail is the longer
    assert min(draws) > 0


def test_an_unknown_kind_waits_nothing() -> None:
    assert REALISTIC.draw_ms("b-1", "boat", "reservations") == 0


def body(booking_id: str) -> dict[str, object]:
    return {
        "booking_id": booking_id,
        "idempotency_key": f"{booking_id}:flight",
        "traveller": {"name": "Ada", "email": "ada@example.com"},
        "details": {"origin": "London", "destination": "Lisbon", "date": "2030-01-01"},
    }


async def test_the_provider_waits_each_calls_draw_and_reports_its_answer_time_per_booking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(handling.asyncio, "sleep", recording_sleep)
    app = create_app(Ledger(tmp_path / "ledger.db", default_capacity=100), latency_profile=REALISTIC)
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/flight/reservations", json=body("b-7"))).status == 201
        assert (await client.post("/flight/cancellations", json=body("b-7"))).status == 200
        stats = await (await client.get("/stats", params=[("booking_id", "b-7"), ("booking_id", "b-8")])).json()
    assert [s for s in slept if s] == [  # aiohttp's own zero-second yields aside
        pytest.approx(REALISTIC.draw_ms("b-7", "flight", "reservations") / 1000),
        pytest.approx(REALISTIC.draw_ms("b-7", "flight", "cancellations") / 1000),
    ]
    answers = stats["answer_ms"]
    assert set(answers["b-7"]) == {"flight reservations", "flight cancellations"} and answers["b-8"] == {}
    assert all(ms > 0 for ms in answers["b-7"].values())


async def test_without_a_profile_the_happy_path_waits_nothing_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(handling.asyncio, "sleep", recording_sleep)
    async with TestClient(TestServer(create_app(Ledger(tmp_path / "ledger.db", default_capacity=100)))) as client:
        assert (await client.post("/flight/reservations", json=body("b-7"))).status == 201
        stats = await (await client.get("/stats", params={"booking_id": "b-7"})).json()
    assert not any(slept) and stats["answer_ms"] == {"b-7": {}}
