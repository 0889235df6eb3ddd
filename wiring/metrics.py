"""Saga-level metrics, from a worker interceptor, through the SDK's metric meter.

The questions an on-call engineer asks first (how many sagas rolled back,
which undo fails most, how long until the ledger is consistent) are answered by:

* ``booking_sagas_total{status}``: closed sagas by final saga status;
* ``booking_steps_total{step,outcome}``: forward steps, ``succeeded``/``failed``/``cancelled``;
* ``booking_compensations_total{step,outcome}``: undos, ``compensated``/``not_booked``/``failed``;
* ``booking_time_to_consistent_seconds``: from the first failed step to the
  last undo that finished, for every saga that rolled back;
* ``booking_rollbacks_total{cause}``: rolled-back sagas by the error type that
  started the unwind (``ConfirmationTimeout``: a traveller let a hold lapse).

They are observed around the workflow and its activities rather than inside
``workflows/``, so the saga code stays free of telemetry. The workflow metric
meter drops everything recorded while replaying, so a replayed history never
counts twice. ``runtime_with_prometheus`` exposes them (and the SDK's own
metrics) for Prometheus. Docs: docs/metrics.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    WorkerDeploymentConfig,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from trip.errors import ErrorType
from trip.steps import FORWARD_ACTIVITIES, saga_step_of, undone_by
from wiring.entry_point import core_logging

ENV_METRICS_PORT = "WORKER_METRICS_PORT"
#: Where ``make run`` serves the worker's metrics.
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"

SAGAS = "booking_sagas_total"
STEPS = "booking_steps_total"
COMPENSATIONS = "booking_compensations_total"
TIME_TO_CONSISTENT = "booking_time_to_consistent_seconds"
ROLLBACKS = "booking_rollbacks_total"

#: The time-to-consistent buckets, in seconds. The SDK's defaults stop at 60 s,
#: but an unwind that retries its undos for minutes is exactly what the p99
#: alert (deploy/prometheus/booking-alerts.yml) must be able to tell apart.
TIME_TO_CONSISTENT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

#: The saga status a workflow's final error means.
_STATUS_BY_ERROR = {
    ErrorType.BOOKING_ROLLED_BACK.value: "ROLLED_BACK",
    ErrorType.ROLLBACK_INCOMPLETE.value: "ROLLBACK_INCOMPLETE",
    ErrorType.TRIP_INCOMPLETE.value: "TRIP_INCOMPLETE",
}


#: The labels on every metric of a versioned worker: which build served it.
BUILD_ID_LABEL, DEPLOYMENT_LABEL = "worker_build_id", "worker_deployment"


def deployment_tags(deployment: WorkerDeploymentConfig | None) -> dict[str, str]:
    """``worker_build_id`` and ``worker_deployment`` of a versioned worker; none for an unversioned one."""
    if deployment is None or not deployment.use_worker_versioning:
        return {}
    version = deployment.version
    return {BUILD_ID_LABEL: version.build_id, DEPLOYMENT_LABEL: version.deployment_name}


def runtime_with_prometheus(
    bind_address: str = DEFAULT_METRICS_ADDRESS, tags: Mapping[str, str] | None = None
) -> Runtime:
    """A runtime that serves ``/metrics`` on ``bind_address``: the SDK's own
    worker metrics plus ours, each labelled with ``tags`` (``deployment_tags``:
    during a rollout, two builds' figures stay apart). Pass it to
    ``Client.connect(runtime=...)``."""
    return Runtime(
        telemetry=TelemetryConfig(
            global_tags=dict(tags or {}),
            # Our names already end in _total / _seconds: add no suffixes.
            metrics=PrometheusConfig(
                bind_address=bind_address,
                durations_as_seconds=True,
                histogram_bucket_overrides={TIME_TO_CONSISTENT: TIME_TO_CONSISTENT_BUCKETS},
            ),
            # Core log lines stay on the Python logger (stderr), as without metrics.
            logging=core_logging(),
        )
    )


def step_of(activity_type: str) -> str:
    """``book_car`` and ``undo_book_car`` both report step ``book_car``."""
    return saga_step_of(activity_type) or activity_type


class SagaMetricsInterceptor(Interceptor):
    """Add to a booking worker's ``interceptors``."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _SagaInbound


class _Run:
    """What one workflow run has seen so far; lives as long as the run."""

    def __init__(self) -> None:
        self.first_failure: datetime | None = None
        self.last_undo: datetime | None = None


class _SagaInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        self._run = _Run()
        super().init(_SagaOutbound(outbound, self._run))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        try:
            result = await super().execute_workflow(input)
        except BaseException as err:
            status = _final_status(err)
            if status is not None:
                self._record_end(status, _cause_type(err))
            raise
        self._record_end("COMPLETED")
        return result

    def _record_end(self, status: str, cause: str | None = None) -> None:
        meter = workflow.metric_meter()
        meter.create_counter(SAGAS, "Closed booking sagas by final status").with_additional_attributes(
            {"status": status}
        ).add(1)
        if status == "ROLLED_BACK" and self._run.first_failure is not None:
            end = self._run.last_undo or workflow.now()
            meter.create_histogram_float(
                TIME_TO_CONSISTENT, "From the first failed step to the last finished undo", "s"
            ).record(max(0.0, (end - self._run.first_failure).total_seconds()))
        if status == "ROLLED_BACK":
            meter.create_counter(
                ROLLBACKS, "Rolled-back sagas by the error that started the unwind"
            ).with_additional_attributes({"cause": cause or "unknown"}).add(1)


def _cause_type(err: BaseException) -> str | None:
    """The ``cause_type`` a saga's final error names (``workflows.messages.saga_error``)."""
    if isinstance(err, ApplicationError) and err.details and isinstance(err.details[0], dict):
        cause = err.details[0].get("cause_type")
        return cause if isinstance(cause, str) else None
    return None


def _final_status(err: BaseException) -> str | None:
    if is_cancelled_exception(err):
        return "CANCELLED"
    if isinstance(err, ApplicationError):
        return _STATUS_BY_ERROR.get(err.type or "", "FAILED")
    if isinstance(err, FailureError):  # e.g. an activity error let through: the workflow fails
        return "FAILED"
    # Anything else fails the workflow task, not the workflow: it will retry.
    return None


class _SagaOutbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, run: _Run) -> None:
        super().__init__(next)
        self._run = run

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        handle = super().start_activity(input)
        name = input.activity
        if undone_by(name) is not None:
            handle.add_done_callback(lambda fut: self._undo_done(step_of(name), fut))
        elif name in FORWARD_ACTIVITIES:
            handle.add_done_callback(lambda fut: self._step_done(name, fut))
        return handle

    def _step_done(self, step: str, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or (fut.exception() is not None and is_cancelled_exception(fut.exception())):  # type: ignore[arg-type]
            outcome = "cancelled"
        elif fut.exception() is not None:
            outcome = "failed"
            if self._run.first_failure is None:
                self._run.first_failure = workflow.now()
        else:
            outcome = "succeeded"
        _counter(STEPS, "Forward booking steps by outcome", step, outcome)

    def _undo_done(self, step: str, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return  # the run was cancelled mid-undo; the undo itself has no outcome
        if fut.exception() is not None:
            outcome = "failed"
        else:
            outcome = "not_booked" if getattr(fut.result(), "outcome", None) == "not_booked" else "compensated"
            self._run.last_undo = workflow.now()
        _counter(COMPENSATIONS, "Undos by outcome", step, outcome)


def _counter(name: str, description: str, step: str, outcome: str) -> None:
    workflow.metric_meter().create_counter(name, description).with_additional_attributes(
        {"step": step, "outcome": outcome}
    ).add(1)
