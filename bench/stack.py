"""The benchmark's own processes, on free loopback ports, and what they cost.

Each part runs as its own process (as in production): the Temporal dev server
(in memory, headless), the provider service, the worker(s), the web app, and a
sample-style app that blocks on the saga. CPU time and memory are read from
``/proc``, so the figures are the processes' own, not the benchmark's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from wiring.local_stack import (
    PROVIDERS_READY,
    dev_server_command,
    free_port,
    parse_providers_url,
    providers_command,
    stop_process,
    wait_for_port,
)
from wiring.versioning import make_current_when_polled

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
#: Every bench worker runs the checkout's code: one build id for all of them.
BENCH_BUILD_ID = "bench"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE_KIB / 1024


class RssSampler:
    """Peak resident memory of a process over a phase, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib(self.pid))


@dataclass(frozen=True)
class _Spec:
    """How a process was started, so that ``respawn`` can start it again the same way."""

    cmd: list[str]
    env: dict[str, str] | None
    first_line: str | None
    port: int | None = None


@dataclass
class Stack:
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="booking-bench-")))
    procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    temporal_address: str = ""
    providers_url: str = ""
    specs: dict[str, _Spec] = field(default_factory=dict)

    def _spawn(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str] | None = None,
        first_line: str | None = None,
        *,
        port: int | None = None,
    ) -> str:
        self.specs[name] = _Spec(cmd, env, first_line, port)
        # Append: a respawned process keeps its predecessor's log above its own.
        log = open(self.workdir / f"{name}.log", "a")
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env or dict(os.environ),
            text=True,
            stdout=subprocess.PIPE if first_line else log,
            stderr=log,
        )
        self.procs[name] = proc
        if first_line is None:
            return ""
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith(first_line):
            raise RuntimeError(f"{name} did not start: {line!r}; see {self.workdir / (name + '.log')}")
        return line.strip()

    def start_temporal(self, db_file: Path | None = None, extra_flags: tuple[str, ...] = ()) -> None:
        """The dev server, in memory, or on ``db_file`` so that it survives ``kill`` + ``respawn``;
        ``extra_flags`` for an experiment's own settings (``bench.fairness``)."""
        port = free_port()
        cmd = dev_server_command(
            host="127.0.0.1",
            port=port,
            db=db_file,
            http_port=free_port(),
            metrics_port=free_port(),
            log_level="error",
        )
        cmd += extra_flags
        self._spawn("temporal", cmd, port=port)
        self._wait_port(port, "temporal")
        self.temporal_address = f"127.0.0.1:{port}"

    def _wait_port(self, port: int, name: str, timeout: float = 30) -> None:
        try:
            wait_for_port("127.0.0.1", port, self.procs[name], timeout)
        except RuntimeError as err:
            raise RuntimeError(f"{name}: {err}; see {self.workdir / (name + '.log')}") from None

    def start_providers(
        self, latency_ms: int | None, *, port: int = 0, profile: str | None = None, ledger: str = "ledger.db"
    ) -> None:
        """The provider service on ``workdir/<ledger>``. ``latency_ms`` replaces
        every scenario's latency (``None``: each scenario's own); ``profile`` makes
        every call wait a seeded realistic draw (``providers.latency``). Pass a fixed
        ``port`` to ``respawn`` it where the workers already point."""
        extra: tuple[str, ...] = ("--capacity", "1000000")
        if latency_ms is not None:
            extra += ("--latency-ms", str(latency_ms))
        if profile is not None:
            extra += ("--latency-profile", profile)
        cmd = providers_command(self.workdir / ledger, port=port, extra=extra)
        self.providers_url = parse_providers_url(self._spawn("providers", cmd, first_line=PROVIDERS_READY))

    def restart_providers(self, latency_ms: int | None, profile: str | None = None, ledger: str = "ledger.db") -> None:
        """The provider service again, on its port, with other latency settings or another ledger file."""
        port = int(self.providers_url.rsplit(":", 1)[1])
        self.stop_one("providers")
        self.start_providers(latency_ms, port=port, profile=profile, ledger=ledger)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, TEMPORAL_ADDRESS=self.temporal_address, PROVIDERS_URL=self.providers_url)
        env.update(extra)
        return env

    def start_worker(self, name: str, task_queue: str, *extra: str, env: dict[str, str] | None = None) -> None:
        """``run_worker.py`` on ``task_queue``, as the version ``bench`` of its own
        Worker Deployment (one per queue, so experiments never share routing),
        made current once it polls: a versioned worker gets no task before."""
        deployment = f"bench-{task_queue}"
        self._spawn(
            name,
            [
                sys.executable,
                "run_worker.py",
                *("--task-queue", task_queue, "--log-level", "WARNING"),
                *("--deployment-name", deployment, "--build-id", BENCH_BUILD_ID, *extra),
            ],
            env=self.env(**(env or {})),
        )
        make_current_when_polled(deployment, BENCH_BUILD_ID, task_queues=[task_queue], env=self.env())

    def start_seed_worker(self, name: str, task_queue: str) -> None:
        """The seed-style baseline's worker (``bench.seed_style``): SDK defaults."""
        self._spawn(name, [sys.executable, "-m", "bench.seed_style", "--task-queue", task_queue], env=self.env())

    def stop_one(self, name: str) -> None:
        stop_process(self.procs.pop(name))

    def start_web(self, name: str, module: str, task_queue: str) -> str:
        line = self._spawn(
            name,
            [sys.executable, "-m", module, "--port", "0"],
            env=self.env(BOOKING_TASK_QUEUE=task_queue, SECRET_KEY=os.urandom(16).hex()),
            first_line="web app listening on ",
        )
        return line.split()[-1]

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown handler runs, as in a crash or an OOM kill."""
        proc = self.procs[name]
        proc.kill()
        proc.wait()

    def respawn(self, name: str) -> None:
        """Start ``name`` again with the command, environment and port it had."""
        spec = self.specs[name]
        if self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is still running")
        self._spawn(name, spec.cmd, spec.env, spec.first_line, port=spec.port)
        if spec.port is not None:
            self._wait_port(spec.port, name, timeout=60)

    def stop(self) -> None:
        # Signal them all first, so they shut down together rather than one by one.
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            stop_process(proc)
