"""Act on a booking that waits for an operator (saga status NEEDS_ATTENTION).

``python run_operator.py retry --workflow-id ID --operator NAME --note WHY [--step book_car ...]``
runs the stuck undos again with a fresh budget and waits for them.
``python run_operator.py resolve --workflow-id ID --step book_car --operator NAME --note WHY``
records that the reservation was released outside the system.

Both send a Workflow Update (``retry_compensation`` / ``resolve``), exactly what
``temporal workflow update execute`` sends. Exit codes: 0 done; 2 nothing was
done: rejected (the workflow's validator said why), paused in Temporal (unpause
it first), already ended (the outcome is printed) or no such booking; 4 cannot
reach Temporal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from trip.status import BookingResult
from wiring.client import connect
from wiring.entry_point import run_entry_point
from wiring.outcome import outcome_of
from wiring.paused_status import describe_execution
from wiring.updates import PAUSED_MESSAGE, is_paused, rejection_message, resolve, retry_compensation

EXIT_OK, EXIT_REJECTED, EXIT_UNREACHABLE = 0, 2, 4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Retry or resolve the stuck undos of a booking in NEEDS_ATTENTION.")
    sub = parser.add_subparsers(dest="action", required=True)
    for name, help_text in (
        ("retry", "run the outstanding undos again with a fresh retry budget"),
        ("resolve", "record that a reservation was released outside the system"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--workflow-id", required=True)
        cmd.add_argument("--operator", required=True, help="who is acting (kept in the audit trail)")
        cmd.add_argument("--note", required=True, help="why (kept in the audit trail)")
        cmd.add_argument("--profile", default=None, help="Temporal env-config profile")
        cmd.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
        if name == "retry":
            cmd.add_argument(
                "--step", action="append", dest="steps", help="a step to retry (repeatable; default: all outstanding)"
            )
        else:
            cmd.add_argument("--step", required=True, help="the outstanding step, e.g. book_car")
    return parser.parse_args(argv)


def _print(args: argparse.Namespace, data: dict[str, Any], text: str, *, error: bool = False) -> None:
    if args.json:
        print(json.dumps(data))
    else:
        print(text, file=sys.stderr if error else sys.stdout)


async def run(args: argparse.Namespace) -> int:
    try:
        client = await connect(args.profile)
    except Exception as err:  # connection errors surface as RuntimeError
        _print(args, {"error": "unreachable", "message": str(err)}, f"error: cannot reach Temporal: {err}", error=True)
        return EXIT_UNREACHABLE
    handle = client.get_workflow_handle(args.workflow_id)
    try:
        if args.action == "retry":
            result = await retry_compensation(handle, operator=args.operator, note=args.note, steps=args.steps)
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
