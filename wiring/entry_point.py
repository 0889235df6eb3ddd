"""What every entry point's process does at start and at exit.

``run_worker.py``, ``run_workflow.py`` and ``run_operator.py`` share two
process-level concerns of the Temporal SDK that no library code should touch:

* The SDK core (Rust) writes its own log lines, with ANSI colours, straight to
  **stdout**. That breaks ``--json`` (one object on stdout, nothing else), so
  ``install_runtime`` forwards them to the Python logger ``temporalio.core``
  instead, which logs to stderr like everything else.
* A process that has used the SDK can abort while the interpreter finalises
  ("Fatal Python error: PyGILState_Release: thread state must be current",
  temporalio/sdk-python#300): core threads call back into Python after it has
  started tearing down, and SIGABRT (exit 134) replaces our exit code.
  ``exit_now`` flushes what we printed and leaves without finalising.

Never import this from workflow or activity code.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

#: The Python logger that receives the SDK core's log lines.
CORE_LOGGER = "temporalio.core"


def install_runtime(level: str = "WARN") -> None:
    """Make the SDK core log through Python logging (stderr), never to stdout.

    Call it before the first client connects: clients keep the runtime they
    were created with.
    """
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=core_logging(level))), error_if_already_set=False)


def core_logging(level: str = "WARN") -> LoggingConfig:
    """The SDK core's log lines through the Python logger ``temporalio.core``; for any runtime."""
    forwarding = LogForwardingConfig(logger=logging.getLogger(CORE_LOGGER))
    return LoggingConfig(filter=TelemetryFilter(core_level=level, other_level="ERROR"), forwarding=forwarding)


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` without interpreter finalisation (see the module docstring)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def run_entry_point(main: Callable[[], int]) -> NoReturn:
    """Run an entry point's ``main`` with the SDK runtime installed, then ``exit_now``.

    ``main`` returns the exit code. Anything it lets escape still exits through
    ``exit_now`` (with 1, after printing the traceback), so the process never
    reaches the finalisation that can abort it.
    """
    install_runtime()
    try:
        code = main()
    except SystemExit as stop:  # argparse's --help and usage errors
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
        if not isinstance(stop.code, (int, type(None))):
            print(stop.code, file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    exit_now(code)
