"""Reading a workflow that ``temporal workflow pause`` paused: a workaround for the SDK.

``temporal workflow pause`` (server 1.32, behind ``frontend.WorkflowPauseEnabled``)
gives an execution the status PAUSED, value 8. temporalio 1.35's
``WorkflowExecutionStatus`` has no such member, so ``handle.describe()``,
``client.list_workflows()`` and even ``handle.query()`` (the server rejects a
query to a paused workflow, and the SDK names the status in its error) raise
``ValueError: 8 is not a valid WorkflowExecutionStatus``. Everything that
shows a booking therefore describes, lists and queries through this module,
which makes the raw service calls instead.

Delete this module once the SDK's ``WorkflowExecutionStatus`` has PAUSED (8):
``describe_execution`` becomes ``handle.describe()`` passed to
``wiring.executions.execution_from_info`` (its ``raw_description`` holds the
same protos), ``list_executions`` becomes ``client.list_workflows()`` (each
item's ``raw_info``), and ``query_status`` becomes the plain query. The first
test in ``tests/system/test_pause.py`` fails on the SDK release that can.
Never import this from workflow code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest, ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowHandle

from trip.status import BookingStatus
from wiring.executions import Execution, WorkflowPaused, execution_from_info
from workflows.booking import BookingWorkflow


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
    return await execution_from_info(
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
        found.extend([await execution_from_info(client, info) for info in response.executions[: limit - len(found)]])
        token = response.next_page_token
        if not token:
            break
    return found


async def query_status(
    client: Client, handle: WorkflowHandle[Any, Any], execution: Execution, *, rpc_timeout: timedelta | None = None
) -> BookingStatus:
    """The ``status`` query of the run ``execution`` describes; ``WorkflowPaused`` while it is paused."""
    if execution.paused:
        raise WorkflowPaused(execution)
    try:
        status: BookingStatus = await handle.query(BookingWorkflow.status, rpc_timeout=rpc_timeout)
    except ValueError:
        # Paused since ``execution`` was described: the SDK fails to name the rejection's status.
        again = await describe_execution(client, handle.id, handle.run_id, rpc_timeout=rpc_timeout)
        if again.paused:
            raise WorkflowPaused(again) from None
        raise
    return status
