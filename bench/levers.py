"""CPU per saga, lever by lever: what each of the design's cost levers saves, in the same run.

At the reference concurrency (100 in flight), each lever against ours as
shipped, in A B B A halves, CPU from ``/proc`` for the worker and the server:

- *fewer workflow tasks*: ours in sequential mode (four workflow tasks) against
  parallel (two, or three when the completions straddle a task), same worker;
- *fewer history events and visibility writes*: ours started without search
  attributes, so it never upserts ``BookingStatus``, against as shipped;
- *interceptors*: a worker exporting spans (OTLP/HTTP to a sink in this
  process) against the shipped one, which exports nothing and so installs no
  tracing interceptor (``wiring.tracing.client_interceptors``).

The shared HTTP client and the sandbox are measured with the optimisations
(``bench.optimisations``). ``make bench`` runs these; ``python -m bench --quick
--levers`` adds them to the quick run.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from bench.harness import Harness, log
from bench.plan import sagas_at
from bench.sides import OURS, OURS_NO_SEARCH_ATTRIBUTES, SEQUENTIAL
from bench.stack import free_port
from bench.stats import merge_loads
from bench.throughput import reference_level


@asynccontextmanager
async def span_sink() -> AsyncIterator[str]:
    """An OTLP/HTTP endpoint that accepts every export and keeps nothing; its URL."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


Variant = tuple[str, dict[str, int], str | None]  # side, the pids to measure, the queue (None: the side's)


async def _ab(h: Harness, with_lever: Variant, without: Variant, *, shipped: bool) -> dict[str, Any]:
    """Sagas with the lever and without it, A B B A; the effect is with minus without (negative: saves)."""
    c = reference_level(h.plan)
    half = sagas_at(h.plan, c) // 2
    runs: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
    for name in ("with", "without", "without", "with"):
        side, pids, queue = with_lever if name == "with" else without
        runs[name].append(await h.load(side, half, c, pids, queue=queue))
    on, off = merge_loads(runs["with"]), merge_loads(runs["without"])
    return {
        "concurrency": c,
        "shipped": shipped,
        "with": on,
        "without": off,
        "worker_cpu_ms_effect": on["worker_cpu_ms_per_saga"] - off["worker_cpu_ms_per_saga"],
        "server_cpu_ms_effect": on["server_cpu_ms_per_saga"] - off["server_cpu_ms_per_saga"],
    }


async def levers(h: Harness) -> dict[str, Any]:
    log("levers: CPU per saga of sequential mode, of search attributes, of exported tracing")
    ours = (OURS, h.side_pids(OURS), None)
    out = {
        "fewer_workflow_tasks": await _ab(h, ours, (SEQUENTIAL, h.side_pids(SEQUENTIAL), None), shipped=True),
        "no_search_attributes": await _ab(
            h, (OURS_NO_SEARCH_ATTRIBUTES, h.side_pids(OURS_NO_SEARCH_ATTRIBUTES), None), ours, shipped=False
        ),
    }
    queue = f"bench-traced-{uuid.uuid4().hex[:6]}"
    async with span_sink() as endpoint:
        h.stack.start_worker("worker-traced", queue, env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        try:
            await h.wait_for_pollers(queue, 1)
            pids = {"worker": h.stack.pid("worker-traced"), "server": h.stack.pid("temporal")}
            out["no_tracing_interceptors"] = await _ab(h, ours, (OURS, pids, queue), shipped=True)
        finally:
            h.stack.stop_one("worker-traced")
    for name, lever in out.items():
        log(
            f"  {name}: worker {lever['worker_cpu_ms_effect']:+.1f} ms, "
            f"server {lever['server_cpu_ms_effect']:+.1f} ms per saga"
        )
    return out
