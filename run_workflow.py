"""Book a trip from the command line and watch the saga.

``python run_workflow.py`` books a demo trip; every input field has a flag.
Exit codes: 0 COMPLETED, 1 ROLLED_BACK, 2 bad input (nothing started),
3 ROLLBACK_INCOMPLETE, 4 cannot reach Temporal or connect to it (one line
names the cause: no client certificate, an untrusted one, a wrong server name,
a refused API key; also: it stopped answering for longer than
``--wait-timeout`` while we waited; the booking goes on), 5
CANCELLED, 6 ended some other way (terminated or timed out by an operator), 7
NEEDS_ATTENTION (an undo is stuck; the workflow stays open and waits for
``run_operator.py``), 8 TRIP_INCOMPLETE (held and confirmed, the ticket is
issued, but a booking was still not finalized at the attention deadline), 9
AWAITING_UNDO_APPROVAL (an undo costs money; the workflow stays open and waits
for an operator's ``approve_undo`` or ``keep``), 130
interrupted. An exit code always reports an outcome that was observed, never a
guess. With ``--json`` stdout carries exactly one JSON object in every one of
these cases.

``--confirm-within SECONDS`` holds the trip and waits for the traveller's
``confirm`` or ``decline`` Update before ticketing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, NoReturn

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from saga import UndoDecision
from trip import UPDATE_CONFIRM, UPDATE_DECLINE
from trip.forms import FLAT_FIELDS, BookingInputError, booking_from_flat, demo_trip
from trip.models import WORKFLOW_ID_RULE, BookingRequest, RetryOverrides, Scenario, check_workflow_id
from trip.scenarios import SCENARIOS
from trip.status import SagaStatus
from wiring.client import ConnectFailed, connect, is_unreachable, known_web_ui_url
from wiring.entry_point import run_entry_point
from wiring.outcome import TemporalUnreachable
from wiring.paused_status import describe_execution
from wiring.settings import ClientSettings, SettingsError
from wiring.start import new_workflow_id, start_booking
from wiring.tracing import configure_from_env
from wiring.watch import python_command, report, watch

EXIT = {
    SagaStatus.COMPLETED: 0,
    SagaStatus.ROLLED_BACK: 1,
    SagaStatus.ROLLBACK_INCOMPLETE: 3,
    SagaStatus.CANCELLED: 5,
    SagaStatus.NEEDS_ATTENTION: 7,
    SagaStatus.TRIP_INCOMPLETE: 8,
    SagaStatus.AWAITING_UNDO_APPROVAL: 9,
}
EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_OTHER, EXIT_INTERRUPTED = 2, 4, 6, 130
#: How long the CLI waits through a Temporal outage before it gives up (exit 4).
DEFAULT_WAIT_TIMEOUT_S = 600.0

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
    "async_deadline": "SECONDS a step may wait for a provider's confirmation callback (a 202 answer, as in"
    " flight-async) before it fails and the trip is undone (default: each step's own, 15 min; hotel 1 h)",
}
_RETRY_FIELDS = {
    "initial_interval": "initial_interval_s",
    "max_interval": "max_interval_s",
    "activity_timeout": "activity_timeout_s",
    "undo_max_interval": "undo_max_interval_s",
}


class InvalidArguments(Exception):
    """argparse refused the command line (unknown flag, a number that is not one)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Raised rather than printed, so that --json can still print its one object.
        raise InvalidArguments(f"{self.prog}: {message}")


def parse_args(argv: list[str] | None, today: date) -> argparse.Namespace:
    scenarios = "\n".join(f"  {s.value:18} {SCENARIOS[s].description}" for s in Scenario)
    parser = _Parser(
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
    approval = parser.add_argument_group("an undo that costs money (AWAITING_UNDO_APPROVAL, exit 9)")
    approval.add_argument(
        "--undo-fee-threshold",
        type=Decimal,
        default=None,
        metavar="AMOUNT",
        help="a cancellation fee above this holds the undo for an operator (default 0: any fee)",
    )
    approval.add_argument(
        "--undo-approval-deadline",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a held undo waits for approve_undo or keep (default: 12 hours)",
    )
    approval.add_argument(
        "--undo-approval-default",
        choices=[d.value for d in UndoDecision],
        default=None,
        help="what applies at that deadline (default: approve)",
    )
    parser.add_argument(
        "--workflow-id",
        default=None,
        help="default: a new unique id; letters, digits and . _ : %% - only (no / ? # or spaces)",
    )
    try:
        settings = ClientSettings.load()
    except SettingsError as err:
        raise InvalidArguments(f"{parser.prog}: {err}") from None
    parser.add_argument("--task-queue", default=settings.booking_task_queue)
    parser.add_argument("--profile", default=None, help="Temporal env-config profile")
    parser.add_argument("--no-wait", action="store_true", help="start the booking and exit 0 at once")
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT_S,
        metavar="SECONDS",
        help="while waiting, ride out a Temporal outage this long, then exit 4 (the booking goes on; "
        f"default {DEFAULT_WAIT_TIMEOUT_S:.0f})",
    )
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
    req = booking_from_flat(vars(args), today=today)
    if retry_values:
        try:
            retry = RetryOverrides.model_validate(retry_values)
        except ValueError as exc:
            raise BookingInputError({"retry": str(exc).splitlines()[-1].strip()}) from None
        req = req.model_copy(update={"retry": retry})
    if not args.wait_timeout > 0:
        raise BookingInputError({"wait_timeout": "must be more than 0 seconds"})
    if args.attention_deadline is not None:
        try:
            req = BookingRequest.model_validate(
                {**req.model_dump(), "attention_deadline": timedelta(seconds=args.attention_deadline)}
            )
        except ValueError:
            raise BookingInputError({"attention_deadline": "must be more than 0 and at most 365 days"}) from None
    approval = {
        "undo_fee_threshold": args.undo_fee_threshold,
        "undo_approval_deadline": None
        if args.undo_approval_deadline is None
        else timedelta(seconds=args.undo_approval_deadline),
        "undo_approval_default": args.undo_approval_default,
    }
    for field, value in approval.items():
        if value is None:
            continue
        try:
            req = BookingRequest.model_validate({**req.model_dump(), field: value})
        except ValidationError as exc:
            raise BookingInputError({field: exc.errors()[0]["msg"]}) from None
    return req


class Cli:
    """One run of the command: what it has learnt so far, and its one way to finish."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(getattr(args, "json", False))
        self.workflow_id: str | None = getattr(args, "workflow_id", None)
        self.url: str | None = None
        #: Whether the start request went out: after that, the booking may exist.
        self.sent = False

    def finish(self, code: int, data: dict[str, Any], lines: list[str], *, to_stderr: bool = False) -> int:
        """Print ``data`` as the one JSON object (``--json``), or ``lines`` as text."""
        if self.json:
            print(json.dumps(data), flush=True)
            # Failures still explain themselves on stderr; stdout stays one object.
            if to_stderr:
                for line in lines:
                    print(line, file=sys.stderr)
        else:
            for line in lines:
                print(line, file=sys.stderr if to_stderr else sys.stdout)
        return code

    def fail(self, code: int, status: str, error_type: str, message: str, **extra: Any) -> int:
        data = {
            "workflow_id": self.workflow_id,
            "status": status,
            "error": {"type": error_type, "message": message, **extra},
            "web_ui_url": self.url,
        }
        return self.finish(code, data, [f"error: {message}"], to_stderr=True)

    def unknown(self, message: str) -> int:
        """The booking may exist, but how it ends was not observed."""
        return self.fail(EXIT_UNREACHABLE, "UNKNOWN" if self.sent else "NOT_STARTED", "TemporalUnreachable", message)

    def ui_line(self) -> str:
        if self.url:
            return f"  Web UI: {self.url}"
        return (
            "  Web UI: unknown for this server: TEMPORAL_ADDRESS is not the local dev server; "
            "set TEMPORAL_UI_URL to link to its Web UI"
        )


async def run(cli: Cli, args: argparse.Namespace, req: BookingRequest) -> int:
    try:
        client: Client = await connect(args.profile)
    except ConnectFailed as err:
        if err.unreachable:
            return cli.fail(
                EXIT_UNREACHABLE,
                "NOT_STARTED",
                "TemporalUnreachable",
                f"{err}. Is it running? (`make run` starts one)",
            )
        return cli.fail(EXIT_UNREACHABLE, "NOT_STARTED", "TemporalConnectFailed", str(err))
    workflow_id = cli.workflow_id = args.workflow_id or new_workflow_id()
    cli.url = known_web_ui_url(workflow_id, client.namespace, client.service_client.config.target_host)
    try:
        cli.sent = True
        handle = await start_booking(client, req, workflow_id=workflow_id, task_queue=args.task_queue)
    except WorkflowAlreadyStartedError:
        cli.sent = False
        return await already_started(cli, client)
    except RPCError as err:
        if is_unreachable(err):
            return cli.unknown(f"could not start the booking (Temporal did not answer): {err.message}")
        cli.sent = False
        return cli.fail(EXIT_BAD_INPUT, "NOT_STARTED", "StartRejected", f"could not start the booking: {err.message}")
    if not args.json:
        print(f"Booking {workflow_id} started ({req.mode.value}, scenario {req.scenario.value})")
        print(cli.ui_line(), flush=True)
        if req.confirm_within is not None:
            print(
                f"  Held: confirm within {req.confirm_within} with\n"
                f"    temporal workflow update execute --workflow-id {workflow_id}"
                f" --name {UPDATE_CONFIRM} --input '{{}}'\n"
                f"  (or --name {UPDATE_DECLINE}), or on the booking's page.",
                flush=True,
            )
    if args.no_wait:
        return cli.finish(0, {"workflow_id": workflow_id, "status": "RUNNING", "web_ui_url": cli.url}, [])
    try:
        say = None if args.json else lambda line: print(line, flush=True)
        outcome, status = await watch(client, handle, say, wait_timeout=args.wait_timeout)
    except TemporalUnreachable as err:
        return cli.unknown(f"{err}. The booking goes on in Temporal; its outcome is unknown here.")
    except RPCError as err:
        return cli.unknown(f"lost track of booking {workflow_id}: {err.message}")
    data = report(workflow_id, cli.url, outcome, status)
    lines = [f"Outcome: {data['status']}"]
    if outcome.result is not None:
        lines += [f"  {kind}: {confirmation}" for kind, confirmation in outcome.result.confirmations.items()]
    else:
        lines.append(f"  {outcome.error_type}: {outcome.error_message}")
    if outcome.status is SagaStatus.NEEDS_ATTENTION:
        lines.append(f"  Operator: {python_command('run_operator.py')} retry|resolve --workflow-id {workflow_id} ...")
    if outcome.status is SagaStatus.AWAITING_UNDO_APPROVAL:
        lines.append(
            f"  Operator: {python_command('run_operator.py')} approve-undo|keep --workflow-id {workflow_id}"
            " --step STEP --operator NAME --note WHY"
        )
    lines.append(cli.ui_line())
    return cli.finish(EXIT.get(outcome.status, EXIT_OTHER) if outcome.status else EXIT_OTHER, data, lines)


async def already_started(cli: Cli, client: Client) -> int:
    """A reused ``--workflow-id``: say so, and where the existing booking stands."""
    assert cli.workflow_id is not None
    try:
        existing = await describe_execution(client, cli.workflow_id, rpc_timeout=timedelta(seconds=5))
    except RPCError:
        where, extra = "", {}
    else:
        saga = f", booking status {existing.booking_status}" if existing.booking_status else ""
        where = f" (run {existing.run_id}: {existing.status}{saga})"
        extra = {
            "existing": {
                "run_id": existing.run_id,
                "status": existing.status,
                "booking_status": existing.booking_status,
            }
        }
    see = f"; see it at {cli.url}" if cli.url else ""
    return cli.fail(
        EXIT_BAD_INPUT,
        "BAD_INPUT",
        "WorkflowAlreadyStarted",
        f"--workflow-id {cli.workflow_id} is already used by a booking{where}; nothing new was started. "
        f"Pick another id, or omit it for a new one{see}",
        **extra,
    )


def main(argv: list[str] | None = None) -> int:
    today = date.today()
    json_mode = "--json" in (sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv, today)
    except InvalidArguments as err:
        cli = Cli(argparse.Namespace(json=json_mode))
        return cli.fail(EXIT_BAD_INPUT, "BAD_INPUT", "BadInput", f"the booking was not started: {err}")
    cli = Cli(args)
    try:
        req = build_request(args, today)
    except BookingInputError as exc:
        lines = ["error: the booking was not started:"]
        lines += [f"  --{field.replace('_', '-')}: {message}" for field, message in exc.errors.items()]
        data = {
            "workflow_id": args.workflow_id,
            "status": "BAD_INPUT",
            "error": {"type": "BadInput", "message": "the booking was not started", "fields": exc.errors},
        }
        return cli.finish(EXIT_BAD_INPUT, data, lines, to_stderr=True)
    configure_from_env("booking-cli")
    try:
        return asyncio.run(run(cli, args, req))
    except KeyboardInterrupt:
        if not cli.sent:
            return cli.fail(EXIT_INTERRUPTED, "NOT_STARTED", "Interrupted", "interrupted before the booking started")
        return cli.fail(
            EXIT_INTERRUPTED,
            "UNKNOWN",
            "Interrupted",
            "interrupted: the booking goes on in Temporal" + (f"; follow it at {cli.url}" if cli.url else ""),
        )


if __name__ == "__main__":
    run_entry_point(main)
