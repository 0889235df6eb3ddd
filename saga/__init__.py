"""A saga (compensation stack) for Temporal Python workflows.

Temporal's Python SDK has no saga helper; this package is one. It knows
nothing about what the steps do and imports only the standard library and
``temporalio``, so it can be copied into any project. Import it from workflow
code inside ``workflow.unsafe.imports_passed_through()`` (and pass ``"saga"``
through the worker's sandbox), since it holds no state of its own.

The whole API, in the order a workflow meets it:

``Saga(...)``
    One per workflow run. The options:

    * ``parallel_compensation``: run the undos concurrently instead of in
      reverse order.
    * ``undo_retry_policy`` / ``undo_timeout``: the budget of every undo that
      does not bring its own (default ``DEFAULT_UNDO_RETRY``, 10 attempts, and
      ``DEFAULT_UNDO_TIMEOUT``); bounded, so a stuck undo surfaces.
    * ``keep_undo_when_refused``: a refused step (its retry policy lists the
      error type as non-retryable, or the activity flagged it) did not
      happen, so its undo is dropped; set this to run it anyway.
    * ``undo_priority``: the task-queue priority of the undos.
    * ``on_change``: called after every state change (to upsert a search
      attribute, say).
    * ``stable_undo_ids``: give each undo the activity id ``undo-<step>``.
    * ``attempts_from_failure`` / ``attempts_from_result``: read the attempt
      count your activities report.

``StepKind``: where a step stands relative to the point of no return.
    ``COMPENSATABLE`` steps have an undo and unwind on failure; the one
    ``PIVOT`` cannot be undone: it is one activity call without an attempt
    cap, so only a refusal (a type its policy lists as non-retryable)
    unwinds; ``RETRIABLE`` steps run after the pivot and wait for an operator
    when they run out of budget.

``await saga.run(name, activity, arg, undo=Compensation(activity, arg), start_to_close_timeout=...)``
    Runs one forward step as an activity, with its undo registered *before*
    the attempt (a call that timed out may still have had its effect). The
    step's ``retry_policy`` decides which error types end it
    (``non_retryable_error_types``).
    ``Compensation`` is an undo: an activity and its argument, optionally its
    own retry policy and timeout. ``saga.declare(...)`` lists steps as
    pending before they start; ``saga.add_compensation`` registers an undo
    for a step you run yourself.

``await saga.compensate()``
    Runs every registered undo, continues past failures and raises one
    ``SagaCompensationError`` listing them all. It runs behind
    ``asyncio.shield``: a cancellation cannot skip it, and is re-raised after.
    Past the pivot it raises ``SagaSealedError`` (a task failure, so the run
    stays open for a fix).

``saga.outstanding()``, ``await saga.retry_compensation(...)``, ``saga.resolve(...)``
    What an operator settles: undos (or, past the pivot, retriable steps) that
    ran out of budget. ``retry_compensation`` runs them again with a fresh
    budget; ``resolve`` records that one was settled outside the system.
    ``check_retry`` / ``check_resolve`` validate such a request first (for an
    Update validator); ``saga.actions`` is the audit trail (``SagaAction``).

``Saga(undo_gate=..., approval_timeout=..., approval_default=...)``
    An undo that needs a person's approval (it costs money, say): the gate,
    asked as the unwind reaches each undo, answers ``ApprovalNeeded(cost,
    currency, reason)`` to hold it (``StepState.AWAITING_APPROVAL``).
    ``check_decision(step)`` validates, ``await approve_undo(step, operator=,
    note=)`` runs it, ``keep(step, operator=, note=)`` leaves the effect in
    place (``StepState.KEPT``); past ``approval_timeout`` the default applies,
    audited with operator ``"deadline"``. A parallel unwind runs the other
    undos meanwhile; a sequential one waits (reverse order is its contract).

``saga.records`` / ``saga.record(name)``: one ``StepRecord`` per step, with its
``StepState``, attempts, results and errors, for a status query.
"""

from saga.core import DEADLINE_OPERATOR, PATCH_PIVOT_ONE_CALL, Saga
from saga.records import (
    CANCELLED,
    COMPENSATION_FAILED_TYPE,
    DEFAULT_UNDO_RETRY,
    DEFAULT_UNDO_TIMEOUT,
    ApprovalNeeded,
    Call,
    Compensation,
    FailureAttempts,
    ResultAttempts,
    SagaAction,
    SagaCompensationError,
    SagaSealedError,
    StepKind,
    StepRecord,
    StepState,
    UndoDecision,
    UndoFailure,
    UndoGate,
)

__all__ = [
    "CANCELLED",
    "COMPENSATION_FAILED_TYPE",
    "DEADLINE_OPERATOR",
    "DEFAULT_UNDO_RETRY",
    "DEFAULT_UNDO_TIMEOUT",
    "PATCH_PIVOT_ONE_CALL",
    "ApprovalNeeded",
    "Call",
    "Compensation",
    "FailureAttempts",
    "ResultAttempts",
    "Saga",
    "SagaAction",
    "SagaCompensationError",
    "SagaSealedError",
    "StepKind",
    "StepRecord",
    "StepState",
    "UndoDecision",
    "UndoFailure",
    "UndoGate",
]
