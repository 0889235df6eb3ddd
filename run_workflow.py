"""Book a trip from the command line and watch the saga.

``python run_workflow.py`` books a demo trip; every input field has a flag.
Exit codes: 0 COMPLETED, 1 ROLLED_BACK, 2 bad input (nothing started),
3 ROLLBACK_INCOMPLETE, 4 cannot reach Temporal, 5 CANCELLED, 6 ended some
other way (terminated or timed out by an operator), 7 NEEDS_ATTENTION (an undo
is stuck; the workflow stays open and waits for ``run_operator.py``),
8 TRIP_INCOMPLETE (held and confirmed, the ticket is issued, but a booking was
still not finalized at the attention deadline).

``--confirm-within SECONDS`` holds the trip and waits for the traveller's
``confirm`` or ``decline`` Update before ticketing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import date, timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from trip import ENV_TASK_QUEUE, TASK_QUEUE, UPDATE_CONFIRM, UPDATE_DECLINE
from trip.models import (
    FLAT_FIELDS,
    WORKFLOW_ID_RULE,
    BookingInputError,
    BookingRequest,
    RetryOverrides,
    Scenario,
    check_workflow_id,
    demo_trip,
)
from trip.scenarios import SCENARIOS
from trip.temporal import (
    Outcome,
    WorkflowPaused,
    await_outcome,
    connect,
    fetch_status,
    new_workflow_id,
    start_booking,
    web_ui_url,
)
from workflows.status import BookingStatus, SagaStatus

EXIT = {
    SagaStatus.COMPLETED: 0,
    SagaStatus.ROLLED_BACK: 1,
    SagaStatus.ROLLBACK_INCOMPLETE: 3,
    SagaStatus.CANCELLED: 5,
    SagaStatus.NEEDS_ATTENTION: 7,
    SagaStatus.TRIP_INCOMPLETE: 8,
}
EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_OTHER = 2, 4, 6
POLL_S = 0.25

_RETRY_FLAGS = {
    "max_attempts": (int, "attempts per booking step (default: each step's own, 5)"),
    "initial_interval": (float, "seconds before the first retry"),
    "backoff": (float, "retry backoff coefficient"),
    "max_interval": (float, "longest wait between retries, seconds"),
    "activity_timeout": (float, "timeout of one provider call attempt, seconds"),
    "undo_max_attempts": (int, "attempt budget of each undo (default 10)"),
    "undo_max_interval": (float, "longest wait between undo retries, seconds"),
}
_FLAG_HELP = {
    "confirm_within": "hold the trip and wait this many SECONDS for the traveller's confirm (default: book outright)",
}
_RETRY_FIELDS = {
    "initial_interval": "initial_interval_s",
    "max_interval": "max_interval_s",
    "activity_timeout": "activity_timeout_s",
    "undo_max_interval": "undo_max_interval_s",
}


def parse_args(argv: list[str] | None, today: date) -> argparse.Namespace:
    scenarios = "\n".join(f"  {s.value:18} {SCENARIOS[s].description}" for s in Scenario)
    parser = argparse.ArgumentParser(
        description="Book a car, a hotel and a flight as one Temporal saga.",
        epilog=f"scenarios:\n{scenarios}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = demo_trip(today)
    # Values are validated by BookingRequest, not argparse, so the messages
    # match the web form's word for word.
    for field in FLAT_FIELDS:
        parser.add_argument(
            f"--{field.replace('_', '-')}",
            dest=field,
            default=defaults[field],
            metavar="VALUE",
            help=_FLAG_HELP.get(field, f"(default: {defaults[field]})"),
        )
    for flag, (kind, help_text) in _RETRY_FLAGS.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, default=None, help=help_text)
    parser.add_argument(
        "--attention-deadline",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a stuck rollback waits for an operator before closing (default: 7 days)",
    )
    parser.add_argument(
        "--workflow-id",
        default=None,
        help="default: a new unique id; letters, digits and . _ : %% - only (no / ? # or spaces)",
    )
    parser.add_argument("--task-queue", default=os.environ.get(ENV_TASK_QUEUE, TASK_QUEUE))
    parser.add_argument("--profile", default=None, help="Temporal env-config profile")
    parser.add_argument("--no-wait", action="store_true", help="start the booking and exit 0 at once")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    return parser.parse_args(argv)


def build_request(args: argparse.Namespace, today: date) -> BookingRequest:
    if args.workflow_id is not None:
        try:
            check_workflow_id(args.workflow_id)
        except ValueError:
            # Checked here, before Temporal is contacted, so nothing starts.
            raise BookingInputError({"workflow_id": f"{args.workflow_id!r} {WORKFLOW_ID_RULE}"}) from None
    retry_values = {
        _RETRY_FIELDS.get(flag, flag): getattr(args, flag) for flag in _RETRY_FLAGS if getattr(args, flag) is not None
    }
    req = BookingRequest.from_flat(vars(args), today=today)
    if retry_values:
        try:
            retry = RetryOverrides.model_validate(retry_values)
        except ValueError as exc:
            raise BookingInputError({"retry": str(exc).splitlines()[-1].strip()}) from None
        req = req.model_copy(update={"retry": retry})
    if args.attention_deadline is not None:
        try:
            req = BookingRequest.model_validate(
                {**req.model_dump(), "attention_deadline": timedelta(seconds=args.attention_deadline)}
            )
        except ValueError:
            raise BookingInputError({"attention_deadline": "must be more than 0 and at most 365 days"}) from None
    return req


def _step_line(step: Any) -> str:
    extra = []
    if step.attempts > 1:
        extra.append(f"attempt {step.attempts}")
    if step.confirmation:
        extra.append(step.confirmation)
    if step.error and step.state.value in ("failed", "compensating", "compensated", "compensation-failed"):
        extra.append(f"{step.error_type}: {step.error}")
    if step.undo_error:
        extra.append(f"undo: {step.undo_error}")
    return f"  {step.name:12} {step.state.value:20} {' · '.join(extra)}"


async def watch(handle: WorkflowHandle[Any, Any], quiet: bool) -> tuple[Outcome, BookingStatus | None]:
    """Print step changes until the workflow closes or needs an operator; return its outcome."""
    result_task = asyncio.ensure_future(await_outcome(handle))
    seen: dict[str, str] = {}
    was_paused = False
    while True:
        done = result_task.done()
        try:
            status = await fetch_status(handle)
        except RPCError:
            status = None  # e.g. no worker yet: the query cannot be answered
        except WorkflowPaused as paused:
            status = None  # `temporal workflow pause`: no query is answered until it is unpaused
            if not quiet and not was_paused:
                print(f"  Paused in Temporal: {paused.execution.pause_reason}", flush=True)
            was_paused = True
        else:
            if not quiet and was_paused:
                print("  Unpaused in Temporal", flush=True)
            was_paused = False
        if status is not None and not quiet:
            for step in status.steps:
                line = _step_line(step)
                if seen.get(step.name) != line:
                    seen[step.name] = line
                    print(line, flush=True)
        if done:
            return result_task.result(), status
        if status is not None and status.status is SagaStatus.NEEDS_ATTENTION:
            result_task.cancel()
            held = ", ".join(status.outstanding)
            return Outcome(
                SagaStatus.NEEDS_ATTENTION,
                error_type="NeedsAttention",
                error_message=f"an undo is stuck; the booking waits for an operator. Still held: {held}",
            ), status
        await asyncio.wait({result_task}, timeout=POLL_S)


def report(workflow_id: str, namespace: str, outcome: Outcome, status: BookingStatus | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "workflow_id": workflow_id,
        "status": outcome.status.value if outcome.status else (outcome.execution_status or "UNKNOWN"),
        "steps": [
            {
                "name": s.name,
                "state": s.state.value,
                "attempts": s.attempts,
                "confirmation": s.confirmation,
                "undo_attempts": s.undo_attempts,
            }
            for s in (status.steps if status else [])
        ],
        "web_ui_url": web_ui_url(workflow_id, namespace),
    }
    if status is not None and status.attention is not None:
        out["outstanding"] = [o.model_dump(mode="json") for o in status.attention.outstanding]
        out["attention_deadline"] = status.attention.deadline.isoformat()
    if status is not None and status.confirmation is not None:
        out["confirmation_deadline"] = status.confirmation.deadline.isoformat()
        out["decision"] = status.confirmation.decision
    if status is not None and status.ticket is not None:
        out["ticket"] = status.ticket
    if outcome.result is not None:
        out["confirmations"] = outcome.result.confirmations
    else:
        out["error"] = {"type": outcome.error_type, "message": outcome.error_message, "details": outcome.error_details}
    return out


async def run(args: argparse.Namespace, req: BookingRequest) -> int:
    try:
        client: Client = await connect(args.profile)
    except Exception as err:  # connection errors surface as RuntimeError
        print(f"error: cannot reach Temporal: {err}. Is it running? (`make run` starts one)", file=sys.stderr)
        return EXIT_UNREACHABLE
    workflow_id = args.workflow_id or new_workflow_id()
    url = web_ui_url(workflow_id, client.namespace)
    try:
        handle = await start_booking(client, req, workflow_id=workflow_id, task_queue=args.task_queue)
    except RPCError as err:
        print(f"error: could not start the booking: {err.message}", file=sys.stderr)
        return EXIT_UNREACHABLE if "unavailable" in err.status.name.lower() else EXIT_BAD_INPUT
    if not args.json:
        print(f"Booking {workflow_id} started ({req.mode.value}, scenario {req.scenario.value})")
        print(f"  Web UI: {url}", flush=True)
        if req.confirm_within is not None:
            print(
                f"  Held: confirm within {req.confirm_within} with\n"
                f"    temporal workflow update execute --workflow-id {workflow_id}"
                f" --name {UPDATE_CONFIRM} --input '{{}}'\n"
                f"  (or --name {UPDATE_DECLINE}), or on the booking's page.",
                flush=True,
            )
    if args.no_wait:
        if args.json:
            print(json.dumps({"workflow_id": workflow_id, "status": "RUNNING", "web_ui_url": url}))
        return 0
    outcome, status = await watch(handle, quiet=args.json)
    data = report(workflow_id, client.namespace, outcome, status)
    if args.json:
        print(json.dumps(data))
    else:
        print(f"Outcome: {data['status']}")
        if outcome.result is not None:
            for kind, confirmation in outcome.result.confirmations.items():
                print(f"  {kind}: {confirmation}")
        else:
            print(f"  {outcome.error_type}: {outcome.error_message}")
        if outcome.status is SagaStatus.NEEDS_ATTENTION:
            print(f"  Operator: python run_operator.py retry|resolve --workflow-id {workflow_id} ...")
        print(f"  Web UI: {url}")
    return EXIT.get(outcome.status, EXIT_OTHER) if outcome.status else EXIT_OTHER


def main(argv: list[str] | None = None) -> int:
    today = date.today()
    args = parse_args(argv, today)
    try:
        req = build_request(args, today)
    except BookingInputError as exc:
        if args.json:
            print(json.dumps({"status": "BAD_INPUT", "error": {"type": "BadInput", "fields": exc.errors}}))
        print("error: the booking was not started:", file=sys.stderr)
        for field, message in exc.errors.items():
            print(f"  --{field.replace('_', '-')}: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return asyncio.run(run(args, req))
    except KeyboardInterrupt:
        print("\ninterrupted: the booking goes on in Temporal; follow it in the Web UI", file=sys.stderr)
        return 130


def exit_now(code: int) -> None:
    """Exit without interpreter finalisation.

    The SDK's Rust runtime threads can call back into Python while a
    short-lived client process finalises, which aborts it with "PyGILState_Release:
    thread state must be current" (temporalio/sdk-python#300) and replaces our
    exit code with SIGABRT. Everything we print is flushed first.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
