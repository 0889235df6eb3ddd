"""Throughput and latency against concurrency: the baseline and ours at each level of
``plan.concurrency``, the order of the two alternating from one level to the next."""

from __future__ import annotations

from bench.harness import Harness
from bench.plan import Plan
from bench.sides import BASELINE, OURS

Levels = dict[int, dict[str, dict[str, float]]]


def reference_level(plan: Plan) -> int:
    """The concurrency whose CPU per saga and throughput target the report quotes: 100 if measured."""
    return 100 if 100 in plan.concurrency else plan.concurrency[-1]


async def against_concurrency(h: Harness) -> Levels:
    out: Levels = {}
    for i, c in enumerate(h.plan.concurrency):
        order = [BASELINE, OURS] if i % 2 == 0 else [OURS, BASELINE]
        out[c] = await h.throughput(c, order)
    return out
