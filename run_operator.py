"""Act on a booking that waits for an operator (saga status NEEDS_ATTENTION).

``python run_operator.py retry --workflow-id ID --operator NAME --note WHY [--step book_car ...]``
runs the stuck undos again with a fresh budget and waits for them.
``python run_operator.py resolve --workflow-id ID --step book_car --operator NAME --note WHY``
records that the reservation was released outside the system.

Both send a Workflow Update (``retry_compensation`` / ``resolve``), exactly what
``temporal workflow update execute`` sends. Exit codes: 0 done, 2 rejected (the
workflow's validator said why; nothing changed) or no such booking, 4 cannot
reach Temporal or connect to it (one line names the cause: no client
certificate, an untrusted one, a wrong server name, a refused API key).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from wiring.client import ConnectFailed, connect
from wiring.entry_point import run_entry_point
from wiring.updates import rejection_message, resolve, retry_compensation

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
    except ConnectFailed as err:
        kind = "unreachable" if err.unreachable else "connect_failed"
        _print(args, {"error": kind, "message": str(err)}, f"error: {err}", error=True)
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
        if err.status == RPCStatusCode.NOT_FOUND:
            message = f"no running booking {args.workflow_id!r}"
            _print(args, {"error": "not_found", "message": message}, f"error: {message}", error=True)
            return EXIT_REJECTED
        _print(args, {"error": "unreachable", "message": err.message}, f"error: {err.message}", error=True)
        return EXIT_UNREACHABLE
    data = {"workflow_id": args.workflow_id, **result.model_dump(mode="json")}
    lines = [f"{step}: {state}" for step, state in result.outcomes.items()]
    lines.append(f"booking is now {result.status.value}; outstanding: {', '.join(result.outstanding) or 'none'}")
    _print(args, data, "\n".join(lines))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    run_entry_point(main)
