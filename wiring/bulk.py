"""Acting on many stuck bookings at once: bulk ``retry_compensation`` and ``resolve``.

Why a client-side loop and not Temporal's batch operations: a server batch
job (``StartBatchOperation``, ``temporal workflow signal|cancel|terminate
--query``) can signal, cancel, terminate, delete, reset, update options or
touch activities, but it cannot send a Workflow **Update**, and our operator
actions are Updates, because their validators refuse a wrong call before it
reaches history and their results say what each undo did. A signal instead
would lose both, and its payload would have to be encrypted by hand for the
codec. So this module lists the candidates from visibility, reads each one's
``status`` query (the stuck step and its last error live there, not in a
search attribute), and sends the same Updates one booking at a time, with
bounded concurrency and a rate limit.

Safe to run twice: a booking no longer in ``NEEDS_ATTENTION`` is skipped as
settled, one whose audit trail already names this batch is skipped, and every
Update carries the id ``<batch>:<action>:<steps>``, so a call repeated after a
crash or Ctrl-C is answered by Temporal with the first call's outcome, never
run twice. Never import this from workflow code.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from trip import SA_BOOKING_STATUS, WORKFLOW_TYPE
from trip.status import Attention, OperatorActionResult, OutstandingStep, SagaStatus
from trip.steps import STEPS
from wiring.executions import WorkflowPaused
from wiring.live_status import fetch_status
from wiring.paused_status import describe_execution, list_executions
from wiring.updates import PAUSED_MESSAGE, is_paused, rejection_message, resolve, retry_compensation

#: Bookings acted on at the same time: each retry calls a provider that may just have recovered.
DEFAULT_CONCURRENCY = 4
#: Updates started per second, at most.
DEFAULT_RATE = 5.0
#: Bookings read from visibility, at most, per bulk operation.
DEFAULT_LIMIT = 1000

#: Every booking whose saga status says it waits for an operator.
BASE_QUERY = f'WorkflowType = "{WORKFLOW_TYPE}" AND {SA_BOOKING_STATUS.name} = "{SagaStatus.NEEDS_ATTENTION.value}"'

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> timedelta:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` (a bare number is seconds); ``ValueError`` otherwise."""
    found = _DURATION.match(text)
    if not found:
        raise ValueError(f"not a duration: {text!r} (try 30s, 10m, 2h or 1d)")
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


class Action(StrEnum):
    RETRY = "retry"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class Filter:
    """Which stuck bookings a bulk operation takes. Every field set must match."""

    #: A step that is outstanding, e.g. ``book_car``.
    step: str | None = None
    #: A provider (``car``, ``hotel``, ``flight``): any of its steps outstanding.
    provider: str | None = None
    #: The outstanding step's last error type, e.g. ``Unavailable``.
    error_type: str | None = None
    #: Waiting for an operator at least this long.
    older_than: timedelta | None = None

    def visibility_query(self, now: datetime) -> str:
        # Paused runs too: they cannot take an Update, so the summary names them (unpause first).
        query = f'{BASE_QUERY} AND ExecutionStatus IN ("Running", "Paused")'
        if self.older_than is not None:
            # A booking has waited at least as long as it has existed, so this only narrows the
            # list; the exact age (since it began waiting) is checked on the status below.
            cutoff = (now - self.older_than).astimezone(UTC).isoformat(timespec="seconds")
            query += f' AND StartTime < "{cutoff}"'
        return query

    def steps(self, attention: Attention | None, now: datetime) -> list[str]:
        """The outstanding steps this filter picks from a booking's ``attention``; empty when it does not match."""
        if attention is None or (self.older_than is not None and now - attention.since < self.older_than):
            return []
        return [o.step for o in attention.outstanding if self._step_matches(o)]

    def _step_matches(self, o: OutstandingStep) -> bool:
        if self.step and o.step != self.step:
            return False
        if self.provider and o.step not in _provider_steps(self.provider):
            return False
        return not self.error_type or last_error_type(o) == self.error_type

    def describe(self) -> str:
        parts = [
            f"step {self.step}" if self.step else "",
            f"provider {self.provider}" if self.provider else "",
            f"last error {self.error_type}" if self.error_type else "",
            f"waiting over {age_text(self.older_than)}" if self.older_than else "",
        ]
        return ", ".join(p for p in parts if p) or "every booking in NEEDS_ATTENTION"


def _provider_steps(provider: str) -> set[str]:
    return {name for s in STEPS if s.kind.value == provider for name in (s.book, s.finalize) if name}


def age_text(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def last_error_type(o: OutstandingStep) -> str | None:
    """The error that left the step outstanding: its undo's, or (past the pivot) its own."""
    return o.undo_error_type or o.error_type


def last_error(o: OutstandingStep) -> str:
    kind = last_error_type(o) or "error"
    return f"{kind}: {o.undo_error or o.error or 'no message'}"


def new_batch_id() -> str:
    return f"bulk-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class Outcome(StrEnum):
    """What happened to one booking in a bulk operation."""

    #: Acted on; nothing is outstanding any more (the run closes).
    DONE = "done"
    #: Acted on, but it still waits for an operator (e.g. the provider is still down).
    STILL_WAITING = "still_waiting"
    #: ``--dry-run``: would be acted on.
    WOULD_ACT = "would_act"
    #: Not acted on: no longer waiting (settled by someone or something else).
    SETTLED = "settled"
    #: Not acted on: this batch already acted on it.
    ALREADY_IN_BATCH = "already_in_batch"
    #: Not acted on: paused in Temporal, or no worker answered its status query.
    UNREADABLE = "unreadable"
    #: The workflow refused the Update (its validator said why); nothing changed.
    REJECTED = "rejected"
    #: The call failed; whether it took effect is unknown (run the batch again to find out).
    FAILED = "failed"
    #: Ctrl-C came first: never sent, or sent and not waited for.
    INTERRUPTED = "interrupted"


ACTED = frozenset({Outcome.DONE, Outcome.STILL_WAITING})


@dataclass
class Item:
    workflow_id: str
    outcome: Outcome
    steps: list[str] = field(default_factory=list)
    #: Why: the still-failing undo's error, a rejection's words, a paused run's reason.
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "outcome": self.outcome.value,
            "steps": self.steps,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Candidate:
    workflow_id: str
    steps: list[str]


@dataclass
class Report:
    """A bulk operation's summary: one item per booking it looked at."""

    batch: str
    action: Action
    filter: Filter
    dry_run: bool = False
    #: Bookings that matched the filter when it started.
    matched: int = 0
    items: list[Item] = field(default_factory=list)
    interrupted: bool = False

    def counts(self) -> dict[str, int]:
        return dict(Counter(i.outcome.value for i in self.items))

    def reasons(self) -> dict[str, int]:
        """Why bookings still wait or were refused, with how many share each reason."""
        wanted = {Outcome.STILL_WAITING, Outcome.REJECTED, Outcome.FAILED, Outcome.UNREADABLE}
        return dict(Counter(i.reason for i in self.items if i.outcome in wanted and i.reason).most_common())

    @property
    def acted(self) -> int:
        return sum(1 for i in self.items if i.outcome in ACTED)

    def of(self, outcome: Outcome) -> int:
        return sum(1 for i in self.items if i.outcome is outcome)

    def summary(self) -> str:
        """One paragraph a person reads: what was done, and why anything is left."""
        verb = "retried" if self.action is Action.RETRY else "resolved"
        head = f"batch {self.batch} ({self.filter.describe()}): "
        if self.dry_run:
            return head + f"{self.of(Outcome.WOULD_ACT)} booking(s) would be {verb}; nothing was sent (dry run)."
        if not self.items:
            return head + "nothing to do: no booking in NEEDS_ATTENTION matches."
        parts = []
        if self.acted:
            parts.append(f"{self.acted} {verb}")
        if n := self.of(Outcome.DONE):
            parts.append(f"{n} closed, nothing outstanding")
        if n := self.of(Outcome.STILL_WAITING):
            parts.append(f"{n} still waiting")
        for outcome, words in (
            (Outcome.SETTLED, "already settled, skipped"),
            (Outcome.ALREADY_IN_BATCH, "already acted on by this batch, skipped"),
            (Outcome.UNREADABLE, "unreadable (paused, or no worker answered), skipped"),
            (Outcome.REJECTED, "rejected"),
            (Outcome.FAILED, "failed"),
            (Outcome.INTERRUPTED, "not done (interrupted)"),
        ):
            if n := self.of(outcome):
                parts.append(f"{n} {words}")
        text = head + "; ".join(parts) + "."
        if not self.acted and not self.interrupted:
            text += " Nothing was done."
        if self.reasons():
            text += " Why: " + "; ".join(f"{n} bookings: {why}" for why, n in self.reasons().items()) + "."
        if self.interrupted:
            text += f" Interrupted: run it again with --batch {self.batch} to finish; nothing is done twice."
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "action": self.action.value,
            "filter": self.filter.describe(),
            "dry_run": self.dry_run,
            "matched": self.matched,
            "acted": self.acted,
            "counts": self.counts(),
            "reasons": self.reasons(),
            "interrupted": self.interrupted,
            "summary": self.summary(),
            "items": [i.to_json() for i in self.items],
        }


class RateLimit:
    """At most ``rate`` starts per second, spaced evenly (no bursts after a pause)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class BulkOperation:
    """One bulk retry or resolve. ``select`` finds what it will touch; ``run`` acts on it."""

    client: Client
    action: Action
    filter: Filter
    operator: str
    note: str
    batch: str = field(default_factory=new_batch_id)
    concurrency: int = DEFAULT_CONCURRENCY
    rate: float = DEFAULT_RATE
    limit: int = DEFAULT_LIMIT
    #: Seconds a status query may wait for a worker.
    query_timeout: timedelta = timedelta(seconds=10)
    #: Called after each booking with (done so far, total, that booking's item).
    on_progress: Callable[[int, int, Item], None] | None = None

    def update_id(self, steps: Sequence[str]) -> str:
        return f"{self.batch}:{self.action.value}:{','.join(steps)}"

    async def select(self, only: Sequence[str] | None = None) -> tuple[list[Candidate], list[Item]]:
        """The bookings to act on, and those looked at and skipped (with why).

        ``only`` restricts it to these ids (the web app's confirmed list); each is
        still checked against the filter and its state now.
        """
        now = datetime.now(UTC)
        if only is None:
            ids = [
                e.workflow_id
                for e in await list_executions(self.client, self.filter.visibility_query(now), limit=self.limit)
            ]
        else:
            ids = list(dict.fromkeys(only))
        gate = asyncio.Semaphore(max(self.concurrency, 8))

        async def look(wf_id: str) -> Candidate | Item | None:
            async with gate:
                try:
                    execution = await describe_execution(self.client, wf_id, rpc_timeout=self.query_timeout)
                    if execution.closed:  # a run ended from outside still answers its last status
                        return Item(wf_id, Outcome.SETTLED, reason=f"closed: {execution.status}")
                    status = await fetch_status(
                        self.client,
                        self.client.get_workflow_handle(wf_id),
                        rpc_timeout=self.query_timeout,
                        execution=execution,
                    )
                except WorkflowPaused as err:
                    return Item(wf_id, Outcome.UNREADABLE, reason=f"paused in Temporal: {err.execution.pause_reason}")
                except Exception as err:  # no worker answered in time, or the server refused: skip it, say why
                    if isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND:
                        return Item(wf_id, Outcome.SETTLED, reason="no such booking")
                    return Item(wf_id, Outcome.UNREADABLE, reason=f"status unreadable: {getattr(err, 'message', err)}")
            if status.status is not SagaStatus.NEEDS_ATTENTION:
                return Item(wf_id, Outcome.SETTLED, reason=f"now {status.status.value}")
            steps = self.filter.steps(status.attention, now)
            if not steps:
                return None  # does not match: not part of this operation at all
            if any(a.batch == self.batch for a in status.audit):
                return Item(wf_id, Outcome.ALREADY_IN_BATCH, steps)
            return Candidate(wf_id, steps)

        looked = await asyncio.gather(*(look(i) for i in ids))
        return [c for c in looked if isinstance(c, Candidate)], [i for i in looked if isinstance(i, Item)]

    async def run(
        self, *, dry_run: bool = False, only: Sequence[str] | None = None, report: Report | None = None
    ) -> Report:
        """Select, then act on every candidate. Cancelling it (Ctrl-C) stops starting
        new Updates; ``report`` (pass one in to read it after a cancel) says what was done."""
        report = report or Report(self.batch, self.action, self.filter, dry_run=dry_run)
        candidates, skipped = await self.select(only)
        report.items.extend(skipped)
        report.matched = len(candidates) + sum(1 for i in skipped if i.outcome is Outcome.ALREADY_IN_BATCH)
        if dry_run:
            report.items.extend(Item(c.workflow_id, Outcome.WOULD_ACT, c.steps) for c in candidates)
            return report
        total, done = len(candidates), 0
        gate, rate = asyncio.Semaphore(max(self.concurrency, 1)), RateLimit(self.rate)
        pending = {c.workflow_id: c for c in candidates}
        sent: set[str] = set()

        async def one(c: Candidate) -> None:
            nonlocal done
            async with gate:
                await rate.wait()
                sent.add(c.workflow_id)
                item = await self._act(c)
            pending.pop(c.workflow_id, None)
            report.items.append(item)
            done += 1
            if self.on_progress is not None:
                self.on_progress(done, total, item)

        try:
            await asyncio.gather(*(one(c) for c in candidates))
        except asyncio.CancelledError:
            report.interrupted = True
            report.items.extend(
                Item(
                    c.workflow_id,
                    Outcome.INTERRUPTED,
                    c.steps,
                    "sent, its outcome not waited for" if c.workflow_id in sent else "not sent",
                )
                for c in pending.values()
            )
            raise
        return report

    async def _act(self, c: Candidate) -> Item:
        handle = self.client.get_workflow_handle(c.workflow_id)
        try:
            result: OperatorActionResult | None = None
            if self.action is Action.RETRY:
                result = await retry_compensation(
                    handle,
                    operator=self.operator,
                    note=self.note,
                    steps=c.steps,
                    batch=self.batch,
                    update_id=self.update_id(c.steps),
                )
            else:
                for step in c.steps:
                    result = await resolve(
                        handle,
                        step=step,
                        operator=self.operator,
                        note=self.note,
                        batch=self.batch,
                        update_id=self.update_id([step]),
                    )
        except WorkflowUpdateFailedError as err:
            return Item(c.workflow_id, Outcome.REJECTED, c.steps, rejection_message(err))
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # closed since it was selected
                return Item(c.workflow_id, Outcome.SETTLED, c.steps, "closed before the Update reached it")
            if is_paused(err):  # paused since it was selected
                return Item(c.workflow_id, Outcome.UNREADABLE, c.steps, PAUSED_MESSAGE)
            return Item(c.workflow_id, Outcome.FAILED, c.steps, err.message)
        except Exception as err:  # e.g. the wait for the Update's result timed out: unknown, not fatal to the rest
            return Item(c.workflow_id, Outcome.FAILED, c.steps, f"{type(err).__name__}: {err}")
        assert result is not None
        if not result.outstanding:
            return Item(c.workflow_id, Outcome.DONE, c.steps)
        return Item(c.workflow_id, Outcome.STILL_WAITING, c.steps, await self._why_waiting(c, result))

    async def _why_waiting(self, c: Candidate, result: OperatorActionResult) -> str:
        """The error that keeps the booking waiting, as its status reports it."""
        try:
            status = await fetch_status(
                self.client, self.client.get_workflow_handle(c.workflow_id), rpc_timeout=self.query_timeout
            )
        except Exception:  # only the reason is missing: the outcome itself is known
            return f"still outstanding: {', '.join(result.outstanding)}"
        held = [o for o in (status.attention.outstanding if status.attention else []) if o.step in c.steps]
        if not held:
            return f"still outstanding: {', '.join(result.outstanding)}"
        return "; ".join(f"{o.step}: {last_error(o)}" for o in held)
