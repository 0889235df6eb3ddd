"""The web submit: our ``POST /bookings`` (start, then redirect) against the sample's
request that connects a client and waits for the saga's result (``bench.sample_app``).
"""

from __future__ import annotations

import re
import time
from datetime import date
from typing import Any

import httpx

from bench.harness import Harness, interleaved
from bench.sides import BASELINE, OURS
from bench.stats import summary
from trip.forms import demo_trip


async def web_submit(h: Harness, ours_url: str, sample_url: str) -> dict[str, dict[str, Any]]:
    async with (
        httpx.AsyncClient(base_url=ours_url, timeout=60) as ours,
        httpx.AsyncClient(base_url=sample_url, timeout=120) as sample,
    ):

        async def submit() -> float:
            page = (await ours.get("/")).text
            tokens = {
                n: re.search(rf'name="{n}" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
                for n in ("csrf_token", "form_token")
            }
            data = {**demo_trip(date.today()), **tokens}
            started = time.perf_counter()
            response = await ours.post("/bookings", data=data)
            elapsed = time.perf_counter() - started
            assert response.status_code == 303, response.text
            return elapsed * 1000

        async def blocking() -> float:
            started = time.perf_counter()
            response = await sample.post("/book")
            elapsed = time.perf_counter() - started
            assert response.status_code == 200 and response.json()["status"] == "completed", response.text
            return elapsed * 1000

        samples = await interleaved(h.plan.web_runs, {OURS: submit, BASELINE: blocking})
    return {name: {**summary(values), "samples_ms": values} for name, values in samples.items()}
