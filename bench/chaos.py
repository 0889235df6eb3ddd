"""``python -m bench.chaos``: many mixed sagas while their processes are killed.

The proof that the saga survives crashes, run as part of the project (``make
chaos``; a small run is in ``make test``). On its own stack (free loopback
ports, the dev server on a SQLite file in a temp dir so that it can be killed
and restarted on the same history) it:

* starts N sagas, every scenario of ``trip.scenarios`` whose outcome is reached
  without a person, in both modes, plus cancelled ones, with retry overrides
  short enough to finish and long enough to ride out each restart;
* SIGKILLs a random worker (of two or more) every 2 s and starts a new one;
* SIGKILLs the provider service once and the dev server once, mid-run, and
  restarts each on the same database and port;
* waits, bounded, for every saga to close, and checks each against its
  scenario's expected outcome and the providers' ledger.

Progress goes to stderr; the table (or ``--json``, one object) to stdout. Exits
1 on any violation, 2 if the stack itself cannot be started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError

from bench.stack import Stack
from trip.forms import booking_from_flat, demo_trip
from trip.models import BookingRequest, Mode, RetryOverrides, Scenario
from trip.scenarios import SCENARIOS, ScenarioSpec
from trip.status import BookingResult, SagaStatus
from wiring.codec import data_converter
from wiring.local_stack import free_port
from wiring.outcome import Outcome, await_outcome
from wiring.paused_status import describe_execution
from wiring.start import start_booking

#: Outcomes a saga reaches on its own. NEEDS_ATTENTION waits for an operator,
#: ROLLBACK_INCOMPLETE for a deadline of days: the harness drives neither.
HANDS_OFF = ("COMPLETED", "ROLLED_BACK")
CANCELLED = "CANCELLED"
KINDS = ("car", "hotel", "flight")

#: Short enough that ``hotel-down`` gives up in seconds; long enough that a
#: retry budget outlasts a provider or dev-server restart (about 13 s of
#: backoff) and an activity lost with a killed worker (a 5 s timeout).
CHAOS_RETRY = RetryOverrides(
    initial_interval_s=0.2,
    backoff=2.0,
    max_interval_s=2.0,
    max_attempts=10,
    activity_timeout_s=5.0,
    undo_max_attempts=10,
    undo_max_interval_s=2.0,
)


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- what to run -------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One kind of saga in the mix: a scenario, and whether the harness cancels it."""

    label: str
    scenario: Scenario
    expected: str
    cancel: bool = False


def select_cases(table: Mapping[Scenario, Any] = SCENARIOS) -> tuple[list[Case], dict[str, str]]:
    """The cases to run, read from the scenario table, and why each other scenario is left out.

    A scenario is driven when its expected outcome needs no person. A spec that
    says it needs a traveller's confirmation (hold-and-confirm scenarios) is
    left out too: this harness books outright, where such a scenario would not
    do what its ``expected`` says. A scenario with added latency is also run
    once more, cancelled right after it starts: it is still booking then, so
    it must end CANCELLED with nothing held.
    """
    cases: list[Case] = []
    skipped: dict[str, str] = {}
    for spec in table.values():
        name = spec.scenario.value
        expected = SagaStatus(spec.expected).value
        if getattr(spec, "needs_confirmation", False):
            skipped[name] = "needs a traveller's confirmation (hold and confirm)"
        elif getattr(spec, "needs_callback", False):
            skipped[name] = "needs a callback receiver (a provider that confirms later)"
        elif expected not in HANDS_OFF:
            skipped[name] = f"ends {expected}, which waits for a person"
        else:
            cases.append(Case(name, spec.scenario, expected))
    slow = [c for c in cases if _latency(table[c.scenario])]
    if slow:
        cases.append(Case(f"{slow[0].label}+cancel", slow[0].scenario, CANCELLED, cancel=True))
    return cases, skipped


def _latency(spec: ScenarioSpec) -> int:
    return max((fault.latency_ms for fault in spec.faults.values()), default=0)


@dataclass
class Saga:
    case: Case
    mode: Mode
    workflow_id: str
    handle: WorkflowHandle[Any, BookingResult] | None = None
    outcome: Outcome | None = None
    #: Server execution status if it never closed.
    open_status: str | None = None
    violations: list[str] = field(default_factory=list)

    @property
    def actual(self) -> str:
        if self.outcome is not None:
            status = self.outcome.status
            return status.value if status is not None else (self.outcome.execution_status or "UNKNOWN")
        return f"OPEN({self.open_status})" if self.open_status else "NOT_STARTED"


def plan(cases: list[Case], n: int, rng: random.Random) -> list[Saga]:
    """``n`` sagas cycling through every case in both modes, in a shuffled order."""
    combos = [(case, mode) for mode in (Mode.PARALLEL, Mode.SEQUENTIAL) for case in cases]
    sagas = [
        Saga(case, mode if not case.cancel else Mode.SEQUENTIAL, f"chaos-{uuid.uuid4().hex[:12]}")
        for case, mode in (combos[i % len(combos)] for i in range(n))
    ]
    rng.shuffle(sagas)
    return sagas


def request(saga: Saga, today: date) -> BookingRequest:
    flat = {**demo_trip(today), "mode": saga.mode.value, "scenario": saga.case.scenario.value}
    return booking_from_flat(flat, today=today).model_copy(update={"retry": CHAOS_RETRY})


# --- the checks --------------------------------------------------------------


def check_saga(expected: str, actual: str, rows: list[dict[str, Any]], result: BookingResult | None) -> list[str]:
    """What is wrong with one closed (or not) saga, given its ledger rows."""
    problems: list[str] = []
    if actual != expected:
        problems.append(f"ended {actual}, expected {expected}")
    per_kind = Counter(row["kind"] for row in rows)
    for kind, count in sorted(per_kind.items()):
        if count > 1:
            problems.append(f"{count} ledger rows for {kind}")
    active = sorted(row["kind"] for row in rows if row["status"] == "active")
    if actual == "COMPLETED":
        if active != sorted(KINDS):
            problems.append(f"COMPLETED with active {active or 'none'}, expected one of each kind")
        elif result is not None:
            held = sorted(row["confirmation"] for row in rows if row["status"] == "active")
            if sorted(result.confirmations.values()) != held:
                problems.append("confirmations returned differ from the ledger's")
    elif actual in ("ROLLED_BACK", CANCELLED) and active:
        problems.append(f"{actual} with {', '.join(active)} still active")
    return problems


# --- the run -----------------------------------------------------------------


@dataclass
class Chaos:
    stack: Stack
    client: Client
    sagas: list[Saga]
    task_queue: str
    workers: int
    interval: float
    min_kills: int
    rng: random.Random
    #: Seconds the providers and the dev server stay down when killed.
    downtime: float = 3.0
    kills: int = 0
    restarts: dict[str, int] = field(default_factory=lambda: {"providers": 0, "temporal": 0})
    #: Workers that exited without being killed (restarted too).
    worker_exits: int = 0
    started: int = 0
    start_errors: int = 0
    t0: float = field(default_factory=time.monotonic)

    def worker_names(self) -> list[str]:
        return [f"worker-{i}" for i in range(self.workers)]

    def start_workers(self) -> None:
        for name in self.worker_names():
            self.stack.start_worker(name, self.task_queue)

    def revive_workers(self) -> None:
        for name in self.worker_names():
            if self.stack.procs[name].poll() is not None:
                self.worker_exits += 1
                self.stack.respawn(name)

    async def start_all(self, rate: float) -> None:
        """Start every saga, at most ``rate`` a second, retrying through outages."""
        today = date.today()
        sem = asyncio.Semaphore(16)

        async def one(index: int, saga: Saga) -> None:
            await asyncio.sleep(index / rate)
            async with sem:
                req = request(saga, today)
                deadline = time.monotonic() + 120
                while True:
                    try:
                        saga.handle = await start_booking(
                            self.client, req, workflow_id=saga.workflow_id, task_queue=self.task_queue
                        )
                        break
                    except WorkflowAlreadyStartedError:
                        # An earlier try reached the server before its answer was lost.
                        saga.handle = self.client.get_workflow_handle(saga.workflow_id, result_type=BookingResult)
                        break
                    except RPCError:
                        self.start_errors += 1
                        if time.monotonic() > deadline:
                            return
                        await asyncio.sleep(0.5)  # the dev server is restarting
                self.started += 1
                if saga.case.cancel:
                    await self._cancel(saga)

        await asyncio.gather(*(one(i, s) for i, s in enumerate(self.sagas)))

    async def _cancel(self, saga: Saga) -> None:
        assert saga.handle is not None
        deadline = time.monotonic() + 120
        while True:
            try:
                await saga.handle.cancel()
                return
            except RPCError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def havoc(self, starting: asyncio.Task[None]) -> None:
        """Kill a random worker every ``interval`` (on a fixed cadence) until
        every saga started, ``min_kills`` is reached and both restarts are done.

        The providers are SIGKILLed a third of the way through, the dev server
        at two thirds; each stays down ``downtime`` seconds, then comes back on
        its own database and port, while the worker kills go on.
        """
        n = len(self.sagas)
        restarting: list[asyncio.Task[None]] = []
        next_kill = time.monotonic()
        while not (starting.done() and self.kills >= self.min_kills and all(self.restarts.values())):
            next_kill += self.interval
            await asyncio.sleep(max(0.0, next_kill - time.monotonic()))
            self.revive_workers()
            name = self.rng.choice(self.worker_names())
            self.stack.kill(name)
            self.kills += 1
            self.stack.respawn(name)
            progress = min(self.started / n, self.kills / self.min_kills)
            for service, at in (("providers", 1 / 3), ("temporal", 2 / 3)):
                if progress >= at and len(restarting) == ("providers", "temporal").index(service):
                    restarting.append(asyncio.create_task(self.restart(service)))
        await asyncio.gather(*restarting)

    async def restart(self, name: str) -> None:
        log(f"SIGKILL {name} (pid {self.stack.pid(name)}); down {self.downtime:.0f} s, then back on its own database")
        began = time.monotonic()
        self.stack.kill(name)
        await asyncio.sleep(self.downtime)
        await asyncio.to_thread(self.stack.respawn, name)
        self.restarts[name] += 1
        log(f"{name} back after {time.monotonic() - began:.1f} s")

    async def progress(self, phase: str, closed: list[int] | None = None) -> None:
        n = len(self.sagas)
        while True:
            await asyncio.sleep(5)
            done = f", closed {closed[0]}/{n}" if closed is not None else ""
            log(
                f"{phase}: t={time.monotonic() - self.t0:.0f}s started {self.started}/{n}{done},"
                f" kills {self.kills}, restarts providers {self.restarts['providers']}"
                f" temporal {self.restarts['temporal']}, unplanned worker exits {self.worker_exits}"
            )

    async def settle(self, timeout: float) -> None:
        """Wait, bounded, for every saga's outcome; read the rest as still open."""
        deadline = time.monotonic() + timeout
        closed = [0]
        sem = asyncio.Semaphore(50)

        async def one(saga: Saga) -> None:
            if saga.handle is None:
                return
            async with sem:
                while time.monotonic() < deadline:
                    try:
                        saga.outcome = await asyncio.wait_for(
                            await_outcome(self.client, saga.handle), timeout=max(0.1, deadline - time.monotonic())
                        )
                        closed[0] += 1
                        return
                    except RPCError:
                        await asyncio.sleep(0.5)
                    except TimeoutError:
                        break
            try:
                execution = await describe_execution(self.client, saga.workflow_id)
                saga.open_status = f"{execution.status}, {execution.booking_status}"
            except RPCError as err:
                saga.open_status = f"not described: {err.message}"

        ticker = asyncio.create_task(self.progress("settling", closed))
        try:
            await asyncio.gather(*(one(s) for s in self.sagas))
        finally:
            ticker.cancel()


def ledger_rows(providers_url: str) -> dict[str, list[dict[str, Any]]]:
    response = httpx.get(f"{providers_url}/reservations", timeout=30)
    response.raise_for_status()
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in response.json():
        rows.setdefault(row["booking_id"], []).append(row)
    return rows


def summarize(chaos: Chaos, cases: list[Case], skipped: dict[str, str], elapsed: float) -> dict[str, Any]:
    table = []
    for case in cases:
        mine = [s for s in chaos.sagas if s.case == case]
        table.append(
            {
                "case": case.label,
                "expected": case.expected,
                "sagas": len(mine),
                "actual": dict(Counter(s.actual for s in mine)),
                "violations": sum(1 for s in mine if s.violations),
            }
        )
    violations = [f"{s.workflow_id} ({s.case.label}, {s.mode.value}): {v}" for s in chaos.sagas for v in s.violations]
    if chaos.kills < chaos.min_kills:
        violations.append(f"only {chaos.kills} worker kills, wanted at least {chaos.min_kills}")
    violations += [f"{name} was never restarted" for name, count in chaos.restarts.items() if count < 1]
    return {
        "sagas": len(chaos.sagas),
        "workers": chaos.workers,
        "kill_interval_s": chaos.interval,
        "downtime_s": chaos.downtime,
        "kills": chaos.kills,
        "restarts": chaos.restarts,
        "unplanned_worker_exits": chaos.worker_exits,
        "start_retries": chaos.start_errors,
        "elapsed_s": round(elapsed, 1),
        "retry": CHAOS_RETRY.model_dump(exclude_none=True),
        "cases": table,
        "skipped": skipped,
        "violations": violations,
        "ok": not violations,
    }


def render(summary: dict[str, Any]) -> str:
    lines = [
        "| case | expected | sagas | actual | violations |",
        "|---|---|---|---|---|",
    ]
    for row in summary["cases"]:
        actual = ", ".join(f"{k} {v}" for k, v in sorted(row["actual"].items()))
        lines.append(f"| {row['case']} | {row['expected']} | {row['sagas']} | {actual} | {row['violations']} |")
    restarts = summary["restarts"]
    lines += [
        "",
        f"{summary['sagas']} sagas on {summary['workers']} workers in {summary['elapsed_s']} s; "
        f"{summary['kills']} worker SIGKILLs (one every {summary['kill_interval_s']} s), "
        f"provider restarts {restarts['providers']} and dev-server restarts {restarts['temporal']} "
        f"(SIGKILL, down {summary['downtime_s']} s), "
        f"unplanned worker exits {summary['unplanned_worker_exits']}, start retries {summary['start_retries']}.",
    ]
    for name, why in summary["skipped"].items():
        lines.append(f"Not driven: {name}: {why}.")
    lines.append(f"Violations: {len(summary['violations'])}")
    lines += [f"- {v}" for v in summary["violations"][:50]]
    return "\n".join(lines)


def quiet_runtime() -> Runtime:
    """An SDK runtime whose core logs go to stderr through Python logging.

    By default the core writes its WARN lines to stdout, which would break
    ``--json``. Only errors are kept: a WARN here is a call retried while the
    harness itself has the dev server down, one line per call in flight.
    """
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="[chaos %(asctime)s] %(name)s %(message)s")
    forwarding = LogForwardingConfig(logger=logging.getLogger("sdk"))
    filter_ = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=filter_, forwarding=forwarding)))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cases, skipped = select_cases()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="booking-chaos-"))
    stack = Stack(workdir=workdir)
    log(f"stack in {workdir}: dev server on a file, providers, {args.workers} workers")
    began = time.monotonic()
    try:
        stack.start_temporal(db_file=workdir / "temporal.db")
        stack.start_providers(None, port=free_port())
        client = await Client.connect(stack.temporal_address, data_converter=data_converter(), runtime=quiet_runtime())
        chaos = Chaos(
            stack=stack,
            client=client,
            sagas=plan(cases, args.sagas, rng),
            task_queue=f"chaos-{uuid.uuid4().hex[:8]}",
            workers=args.workers,
            interval=args.interval,
            min_kills=args.min_kills,
            rng=rng,
            downtime=args.downtime,
        )
        chaos.start_workers()
        # Spread the starts over the kills so that every kill meets sagas in flight.
        rate = args.sagas / max(1.0, args.min_kills * args.interval * 0.8)
        log(f"starting {args.sagas} sagas ({len(cases)} cases in 2 modes) at up to {rate:.1f}/s; killing workers")
        starting = asyncio.create_task(chaos.start_all(rate))
        ticker = asyncio.create_task(chaos.progress("chaos"))
        try:
            await chaos.havoc(starting)
            await starting
        finally:
            ticker.cancel()
        chaos.revive_workers()
        log(f"chaos over after {chaos.kills} kills; waiting up to {args.settle_timeout:.0f} s for every saga to close")
        await chaos.settle(args.settle_timeout)
        rows = ledger_rows(stack.providers_url)
        for saga in chaos.sagas:
            result = saga.outcome.result if saga.outcome else None
            saga.violations = check_saga(saga.case.expected, saga.actual, rows.get(saga.workflow_id, []), result)
        summary = summarize(chaos, cases, skipped, time.monotonic() - began)
    finally:
        stack.stop()
    if summary["ok"] and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
        summary["workdir"] = None
    else:
        log(f"logs and databases kept in {workdir}")
        summary["workdir"] = str(workdir)
    return summary


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between worker SIGKILLs")
    parser.add_argument("--min-kills", type=int, default=20)
    parser.add_argument(
        "--downtime", type=float, default=3.0, help="seconds the providers and the dev server stay down once killed"
    )
    parser.add_argument("--settle-timeout", type=float, default=600.0, help="seconds to wait for sagas to close")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases) even on success")
    parser.add_argument("--json", action="store_true", help="print one JSON summary instead of the table")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.workers < 2:
        parser.error("--workers must be at least 2: one keeps running while another is killed")
    # SIGTERM (a CI timeout, say) unwinds like Ctrl-C, so that the stack's
    # processes are stopped rather than left running.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = asyncio.run(run(args))
    except RuntimeError as err:  # the stack did not come up
        log(f"cannot run: {err}")
        return 2
    except KeyboardInterrupt:
        log("interrupted; the stack is stopped")
        return 130
    print(json.dumps(summary, indent=2) if args.json else render(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
