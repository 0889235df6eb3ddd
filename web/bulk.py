"""Bulk retry and resolve from ``/attention``: confirm, run in the background, watch, read the summary.

``POST /attention/bulk/confirm`` shows how many bookings the filter picks (and
which) before anything is sent; ``POST /attention/bulk`` starts the job on the
web app's portal loop (``web.portal``) and redirects to
``GET /attention/bulk/<batch>``, whose fragment htmx polls until the summary.
The job is ``wiring.bulk.BulkOperation``, the same as ``run_operator.py
--all``: bounded, rate-limited, one batch id in every booking's audit trail.
Operators only; CSRF as every form. Jobs live in this process's memory (the
batch id in the audit trails outlives them).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from temporalio.client import Client
from werkzeug.wrappers import Response

from web.auth import current_operator, operator_required
from web.portal import current_portal
from wiring import bulk

bp = Blueprint("bulk", __name__, url_prefix="/attention/bulk")

#: ``app.extensions`` keys of the jobs (newest last) and of their running tasks.
JOBS_KEY, TASKS_KEY = "bulk_jobs", "bulk_tasks"
#: Finished jobs kept for their summary page.
KEEP_JOBS = 20
#: Bookings one job from the page acts on, at most: the confirmed ids come back in the
#: form, which must stay under the app's MAX_CONTENT_LENGTH. The CLI has no such cap.
MAX_PER_JOB = 500


class FilterError(ValueError):
    """A filter field the operator typed is not valid: shown next to the form."""


def filter_from(values: dict[str, str]) -> bulk.Filter:
    """The filter from the ``/attention`` form's fields; ``FilterError`` for a bad age."""
    older = values.get("older_than", "").strip()
    try:
        older_than = bulk.parse_age(older) if older else None
    except ValueError as err:
        raise FilterError(str(err)) from err
    provider = values.get("provider", "").strip() or None
    if provider not in (None, "car", "hotel", "flight"):
        raise FilterError(f"unknown provider {provider!r}: car, hotel or flight")
    return bulk.Filter(
        step=values.get("step", "").strip() or None,
        provider=provider,
        error_type=values.get("error_type", "").strip() or None,
        older_than=older_than,
    )


def filter_fields(f: bulk.Filter) -> dict[str, str]:
    """The form fields that give ``f`` back, for links and hidden inputs."""
    return {
        "step": f.step or "",
        "provider": f.provider or "",
        "error_type": f.error_type or "",
        "older_than": bulk.age_text(f.older_than) if f.older_than is not None else "",
    }


def _operation_factory(action: bulk.Action, f: bulk.Filter, note: str) -> Callable[[Client], bulk.BulkOperation]:
    """Builds the operation on the portal's loop, from settings read here, in the request."""
    config = current_app.config
    operator = current_operator()
    limits = {
        "concurrency": config["BULK_CONCURRENCY"],
        "rate": config["BULK_RATE"],
        "query_timeout": timedelta(seconds=config["QUERY_TIMEOUT"]),
    }
    return lambda client: bulk.BulkOperation(client, action, f, operator=operator, note=note, **limits)


def matching(f: bulk.Filter) -> list[bulk.Candidate]:
    """The bookings ``f`` picks now (what a bulk action would touch); nothing is sent."""
    build = _operation_factory(bulk.Action.RETRY, f, "")

    async def select(client: Client) -> list[bulk.Candidate]:
        candidates, _ = await build(client).select()
        return candidates

    return current_portal().call(select, timeout=current_app.config["BULK_SELECT_TIMEOUT"])


@dataclass
class Job:
    """One bulk operation running on the portal's loop; the pages read it from request threads."""

    report: bulk.Report
    operator: str
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    done: int = 0
    total: int | None = None
    finished: bool = False
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def batch(self) -> str:
        return self.report.batch

    def progress(self, done: int, total: int, _item: bulk.Item) -> None:
        with self._lock:
            self.done, self.total = done, total

    async def run(self, operation: bulk.BulkOperation, only: list[str]) -> None:
        try:
            await operation.run(only=only, report=self.report)
        except asyncio.CancelledError:  # the app shut down mid-job
            self.error = "stopped: the web app shut down; run the batch again to finish it"
            raise
        except Exception as err:
            self.error = f"stopped: {err}"
        finally:
            with self._lock:
                self.total = self.report.matched if self.total is None else self.total
                self.finished = True


def _jobs() -> OrderedDict[str, Job]:
    jobs: OrderedDict[str, Job] = current_app.extensions.setdefault(JOBS_KEY, OrderedDict())
    return jobs


def _form_action() -> tuple[bulk.Action, bulk.Filter, str]:
    """The action, filter and note of a bulk form; ``FilterError`` says what is wrong."""
    try:
        action = bulk.Action(request.form.get("action", ""))
    except ValueError:
        raise FilterError("choose Retry all or Resolve all") from None
    f = filter_from(request.form.to_dict())
    note = request.form.get("note", "").strip()
    if action is bulk.Action.RESOLVE:
        if not note:
            raise FilterError("Resolve all needs a note: it goes into every booking's audit trail.")
        if not (f.step or f.provider):
            raise FilterError("Resolve all needs a step or a provider in the filter: it records releases done by hand.")
    return action, f, note or "bulk retry from /attention"


def _refused(err: FilterError) -> tuple[str, int]:
    """Back to ``/attention`` with the operator's values kept and the reason next to the form."""
    from web.attention import render_attention  # it imports this module

    return render_attention(request.form.to_dict(), bulk_error=str(err), status=400)


@bp.post("/confirm")
@operator_required
def confirm() -> str | tuple[str, int]:
    """The confirmation step: how many bookings (and which) the action will touch. Nothing is sent."""
    try:
        action, f, note = _form_action()
    except FilterError as err:
        return _refused(err)
    found = matching(f)
    return render_template(
        "bulk_confirm.html",
        action=action,
        filter=f,
        fields=filter_fields(f),
        note=note,
        candidates=found[:MAX_PER_JOB],
        matched=len(found),
    )


@bp.post("")
@operator_required
def start() -> Response | tuple[str, int]:
    """Start the confirmed job on exactly the bookings the confirmation listed (each re-checked first)."""
    try:
        action, f, note = _form_action()
    except FilterError as err:
        return _refused(err)
    only = request.form.getlist("workflow_id")
    if not only:
        return _refused(FilterError("no booking was confirmed: nothing was sent"))
    build = _operation_factory(action, f, note)
    operator = current_operator()
    running: set[asyncio.Future[None]] = current_app.extensions.setdefault(TASKS_KEY, set())

    async def launch(client: Client) -> Job:
        operation = build(client)
        job = Job(bulk.Report(operation.batch, action, f), operator)
        operation.on_progress = job.progress
        # Runs on the portal's loop after this call returns; the page polls the job.
        task = asyncio.ensure_future(job.run(operation, only))
        running.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(running.discard)
        return job

    job = current_portal().call(launch)
    jobs = _jobs()
    jobs[job.batch] = job
    while len(jobs) > KEEP_JOBS:
        oldest = next(iter(jobs))
        if not jobs[oldest].finished:
            break
        jobs.pop(oldest)
    return redirect(url_for("bulk.job_page", batch=job.batch), code=303)


def _job_or_404(batch: str) -> Job:
    job = _jobs().get(batch)
    if job is None:
        abort(404)
    return job


@bp.get("/<batch>")
@operator_required
def job_page(batch: str) -> str:
    return render_template("bulk_job.html", job=_job_or_404(batch), poll_ms=current_app.config["POLL_INTERVAL_MS"])


@bp.get("/<batch>/fragment")
@operator_required
def job_fragment(batch: str) -> Response:
    """The progress, then the summary: what each poll swaps in."""
    html = render_template("bulk_progress.html", job=_job_or_404(batch), poll_ms=current_app.config["POLL_INTERVAL_MS"])
    response = current_app.make_response(html)
    response.headers["Cache-Control"] = "no-store"
    return response
