"""Act on a booking that waits for an operator (saga status NEEDS_ATTENTION or AWAITING_UNDO_APPROVAL).

``python run_operator.py retry --workflow-id ID [--operator NAME] [--note WHY] [--step book_car ...]``
runs the stuck undos again with a fresh budget and waits for them (the
operator defaults to the login name).
``python run_operator.py resolve --workflow-id ID --step book_car --operator NAME --note WHY``
records that the reservation was released outside the system.

``python run_operator.py approve-undo|keep --workflow-id ID --step book_hotel --operator NAME --note WHY``
decides an undo held because it costs money (AWAITING_UNDO_APPROVAL): cancel
and pay the fee, or keep the reservation.

Each sends a Workflow Update (``retry_compensation``, ``resolve``,
``approve_undo``, ``keep``), exactly what
``temporal workflow update execute`` sends. Exit codes: 0 done; 2 nothing was
done: rejected (the workflow's validator said why), paused in Temporal (unpause
it first), already ended (the outcome is printed) or no such booking; 4 cannot
reach Temporal or connect to it (one line names the cause: no client
certificate, an untrusted one, a wrong server name, a refused API key).

``--all`` instead of ``--workflow-id`` acts on every booking in NEEDS_ATTENTION
that matches ``--step``/``--provider``/``--error-type``/``--older-than``
(``wiring.bulk``). Exit codes then: 0 every matched booking was settled (or
nothing matched), 7 some still wait (the summary says why), 2 some were
rejected, failed or could not be read, 4 cannot reach Temporal, 130 Ctrl-C
(after printing what was done).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any, TextIO

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from trip.status import BookingResult
from wiring import bulk
from wiring.client import ConnectFailed, connect
from wiring.entry_point import run_entry_point
from wiring.outcome import outcome_of
from wiring.paused_status import describe_execution
from wiring.updates import (
    PAUSED_MESSAGE,
    decide_undo,
    is_paused,
    rejection_message,
    resolve,
    retry_compensation,
)

EXIT_OK, EXIT_REJECTED, EXIT_UNREACHABLE = 0, 2, 4
#: ``--all`` only: some matched bookings still wait for an operator; Ctrl-C.
EXIT_STILL_WAITING, EXIT_INTERRUPTED = 7, 130


#: The decisions on an undo held because it costs money (no ``--all``: each spends or saves money).
DECISIONS = {
    "approve-undo": "cancel a reservation whose undo costs money, accepting the fee",
    "keep": "do not cancel a reservation whose undo costs money: it stays, recorded as kept",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Retry or resolve the stuck undos of a booking in NEEDS_ATTENTION.")
    sub = parser.add_subparsers(dest="action", required=True)
    for name, help_text in (
        ("retry", "run the outstanding undos again with a fresh retry budget"),
        ("resolve", "record that a reservation was released outside the system"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        which = cmd.add_mutually_exclusive_group(required=True)
        which.add_argument("--workflow-id")
        which.add_argument(
            "--all", action="store_true", help="every booking in NEEDS_ATTENTION that matches the filters below"
        )
        if name == "retry":
            cmd.add_argument(
                "--operator",
                default=getpass.getuser(),
                help="who is acting (kept in the audit trail; default: your login name)",
            )
            cmd.add_argument("--note", default=None, help="why (kept in the audit trail; default: says it was a retry)")
        else:
            cmd.add_argument("--operator", required=True, help="who is acting (kept in the audit trail)")
            cmd.add_argument("--note", required=True, help="how it was released (kept in the audit trail)")
        cmd.add_argument("--profile", default=None, help="Temporal env-config profile")
        cmd.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
        if name == "retry":
            cmd.add_argument(
                "--step",
                action="append",
                dest="steps",
                help="a step to retry (repeatable; default: all outstanding); with --all, the stuck step to match",
            )
        else:
            cmd.add_argument("--step", help="the outstanding step, e.g. book_car (required without --all)")
        bulk_flags = cmd.add_argument_group("with --all")
        bulk_flags.add_argument("--provider", choices=["car", "hotel", "flight"], help="any of its steps stuck")
        bulk_flags.add_argument("--error-type", help="the stuck step's last error type, e.g. Unavailable")
        bulk_flags.add_argument(
            "--older-than", type=_age, help="waiting for an operator at least this long: 30s, 10m, 2h, 1d"
        )
        bulk_flags.add_argument("--dry-run", action="store_true", help="list what would be acted on; send nothing")
        bulk_flags.add_argument(
            "--concurrency",
            type=_positive_int,
            default=bulk.DEFAULT_CONCURRENCY,
            help=f"bookings acted on at once (default {bulk.DEFAULT_CONCURRENCY})",
        )
        bulk_flags.add_argument(
            "--rate",
            type=_positive_float,
            default=bulk.DEFAULT_RATE,
            help=f"Updates started per second, at most (default {bulk.DEFAULT_RATE:g})",
        )
        bulk_flags.add_argument(
            "--batch", help="the batch id (default: a new one); run a batch again to finish it, nothing is done twice"
        )
        bulk_flags.add_argument(
            "--limit",
            type=_positive_int,
            default=bulk.DEFAULT_LIMIT,
            help=f"bookings read from visibility, at most (default {bulk.DEFAULT_LIMIT})",
        )
    for name, help_text in DECISIONS.items():
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--workflow-id", required=True)
        cmd.add_argument("--step", required=True, help="the step whose undo waits for approval, e.g. book_hotel")
        cmd.add_argument("--operator", required=True, help="who is deciding (kept in the audit trail)")
        cmd.add_argument("--note", required=True, help="why (kept in the audit trail)")
        cmd.add_argument("--profile", default=None, help="Temporal env-config profile")
        cmd.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
        cmd.set_defaults(all=False)
    args = parser.parse_args(argv)
    if args.action in DECISIONS:
        return args  # one booking, one step: none of the bulk flags apply
    if args.note is None:
        args.note = "bulk retry from run_operator.py" if args.all else "retry from run_operator.py"
    single_step = args.steps if args.action == "retry" else [args.step] if args.step else []
    if args.all:
        if single_step and len(single_step) > 1:
            parser.error("with --all, give one --step to match")
        if args.action == "resolve" and not (args.step or args.provider):
            parser.error("resolve --all needs --step or --provider: it records a release done by hand")
    else:
        if args.action == "resolve" and not args.step:
            parser.error("resolve needs --step")
        extra = [f for f in ("provider", "error_type", "older_than", "batch") if getattr(args, f)]
        if extra or args.dry_run:
            parser.error(f"--{(extra or ['dry_run'])[0].replace('_', '-')} only goes with --all")
    return args


def _age(text: str) -> Any:
    try:
        return bulk.parse_age(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _print(args: argparse.Namespace, data: dict[str, Any], text: str, *, error: bool = False) -> None:
    if args.json:
        print(json.dumps(data))
    else:
        print(text, file=sys.stderr if error else sys.stdout)


async def run(args: argparse.Namespace) -> int:
    try:
        client = await connect(args.profile)
    except ConnectFailed as err:
        kind = "unreachable" if err.unreachable else "connect_failed"
        _print(args, {"error": kind, "message": str(err)}, f"error: {err}", error=True)
        return EXIT_UNREACHABLE
    if args.all:
        return await run_bulk(args, client)
    handle = client.get_workflow_handle(args.workflow_id)
    try:
        if args.action == "retry":
            result = await retry_compensation(handle, operator=args.operator, note=args.note, steps=args.steps)
        elif args.action in DECISIONS:
            approve = args.action == "approve-undo"
            result = await decide_undo(handle, approve=approve, step=args.step, operator=args.operator, note=args.note)
        else:
            result = await resolve(handle, step=args.step, operator=args.operator, note=args.note)
    except WorkflowUpdateFailedError as err:
        message = rejection_message(err)
        _print(args, {"error": "rejected", "message": message}, f"error: rejected: {message}", error=True)
        return EXIT_REJECTED
    except RPCError as err:
        if is_paused(err):
            unpause = f"temporal workflow unpause --workflow-id {args.workflow_id}"
            message = f"booking {args.workflow_id!r} is {PAUSED_MESSAGE} ({unpause})"
            _print(args, {"error": "paused", "message": message}, f"error: {message}", error=True)
            return EXIT_REJECTED
        if err.status == RPCStatusCode.NOT_FOUND:
            code, message = await _not_running(client, args.workflow_id)
            _print(args, {"error": code, "message": message}, f"error: {message}", error=True)
            return EXIT_REJECTED
        _print(args, {"error": "unreachable", "message": err.message}, f"error: {err.message}", error=True)
        return EXIT_UNREACHABLE
    data = {"workflow_id": args.workflow_id, **result.model_dump(mode="json")}
    lines = [f"{step}: {state}" for step, state in result.outcomes.items()]
    lines.append(f"booking is now {result.status.value}; outstanding: {', '.join(result.outstanding) or 'none'}")
    _print(args, data, "\n".join(lines))
    return EXIT_OK


class ProgressBar:
    """One line on a terminal's stderr, redrawn after each booking; nothing when stderr is not a terminal."""

    def __init__(self, stream: TextIO, verb: str) -> None:
        self.stream, self.verb = stream, verb
        self.enabled = stream.isatty()
        self.counts: dict[str, int] = {}

    def __call__(self, done: int, total: int, item: bulk.Item) -> None:
        self.counts[item.outcome.value] = self.counts.get(item.outcome.value, 0) + 1
        if not self.enabled:
            return
        width = 30
        filled = width * done // max(total, 1)
        tally = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in sorted(self.counts.items()))
        self.stream.write(f"\r{self.verb} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {tally}\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.counts:
            self.stream.write("\n")
            self.stream.flush()


async def run_bulk(args: argparse.Namespace, client: Any) -> int:
    """``--all``: select by the filters, act on each (bounded and rate-limited), print one summary."""
    step = (args.steps or [None])[0] if args.action == "retry" else args.step
    op_filter = bulk.Filter(step=step, provider=args.provider, error_type=args.error_type, older_than=args.older_than)
    progress = ProgressBar(sys.stderr, "retrying" if args.action == "retry" else "resolving")
    operation = bulk.BulkOperation(
        client,
        bulk.Action(args.action),
        op_filter,
        operator=args.operator,
        note=args.note,
        concurrency=args.concurrency,
        rate=args.rate,
        limit=args.limit,
        on_progress=progress,
        **({"batch": args.batch} if args.batch else {}),
    )
    report = bulk.Report(operation.batch, operation.action, op_filter, dry_run=args.dry_run)
    try:
        await operation.run(dry_run=args.dry_run, report=report)
    except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task; say what was done
        report.interrupted = True
    except RPCError as err:
        progress.finish()
        _print(args, {"error": "unreachable", "message": err.message}, f"error: {err.message}", error=True)
        return EXIT_UNREACHABLE
    progress.finish()
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        for item in report.items:
            if item.outcome is not bulk.Outcome.DONE:
                print(f"{item.workflow_id}: {item.outcome.value}{': ' + item.reason if item.reason else ''}")
        print(report.summary())
    if report.interrupted:
        return EXIT_INTERRUPTED
    if any(report.of(o) for o in (bulk.Outcome.REJECTED, bulk.Outcome.FAILED, bulk.Outcome.UNREADABLE)):
        return EXIT_REJECTED
    return EXIT_STILL_WAITING if report.of(bulk.Outcome.STILL_WAITING) else EXIT_OK


async def _not_running(client: Client, workflow_id: str) -> tuple[str, str]:
    """Why an Update found no running booking: it ended (and how), or there is none."""
    try:
        execution = await describe_execution(client, workflow_id)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return "not_found", f"no booking {workflow_id!r}"
    outcome = await outcome_of(client, client.get_workflow_handle(workflow_id, result_type=BookingResult))
    status = outcome.status.value if outcome.status else outcome.execution_status or execution.status
    why = f": {outcome.error_message}" if outcome.error_message else ""
    return "ended", f"booking {workflow_id!r} has already ended, {status}{why}; there is nothing to act on"


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    run_entry_point(main)
