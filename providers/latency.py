"""Seeded provider latency profiles: how long a real car, hotel or airline API takes to answer.

``--latency-profile realistic`` makes every call the saga makes wait a draw
from a log-normal distribution around its provider's median (car 120 ms, hotel
180 ms, flight 350 ms): real APIs answer in a spread with a long right tail,
not in a fixed time. The draw is a pure function of the seed, the booking, the
kind and the operation, so a booking gets the same latency on every run and
in every order of arrival, and two runs with the same seed are comparable
call for call. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyProfile:
    #: Median answer time per provider kind, in milliseconds.
    median_ms: dict[str, float]
    #: Spread of the log-normal (the standard deviation of the log): 0.3 puts
    #: the p95 at about 1.6 times the median.
    sigma: float
    seed: int = 0

    def draw_ms(self, booking_id: str, kind: str, op: str) -> float:
        """The latency of one call: the same booking, kind and operation always get the same draw."""
        median = self.median_ms.get(kind)
        if median is None:
            return 0.0
        rng = random.Random(f"{self.seed}/{booking_id}/{kind}/{op}")
        return rng.lognormvariate(math.log(median), self.sigma)


PROFILES = {"realistic": LatencyProfile(median_ms={"car": 120.0, "hotel": 180.0, "flight": 350.0}, sigma=0.3)}
