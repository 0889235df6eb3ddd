"""Cap one process's CPU, so that capped worker processes (not the server) are the bottleneck.

A machine of two cores shared with the server cannot show scale-out: a second
worker process only takes CPU from the first one and from the server. With
each worker capped to a fraction of a core, the workers are the bottleneck
until the server (uncapped) runs out of CPU: the throughput against the number
of capped workers shows that knee.

``detect()`` picks the first way that works here, in this order, and says which:

- ``cgroup2``: a child cgroup with ``cpu.max`` (cgroup v2, the cpu controller
  enabled at the root);
- ``cgroup1``: a child of the v1 ``cpu`` hierarchy with ``cpu.cfs_quota_us``;
- ``cpulimit``: Debian's ``cpulimit`` (``apt-get install -y cpulimit``), which
  sends SIGSTOP/SIGCONT from its own process;
- ``duty-cycle``: the same from a thread of the benchmark (the fallback that
  needs nothing: coarse, and a multi-threaded process may exceed the cap
  within its running slice).

The cgroups need root (or a delegated subtree); each one is removed again by
``close``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The scheduler period of a cgroup cap (the kernel's default): the quota is a share of it.
PERIOD_US = 100_000
#: The duty cycle's period: short enough that a saga's task sees little of the pause.
DUTY_PERIOD_S = 0.02


class CpuCap:
    """One way to cap a process's CPU; ``cap`` it, and ``close`` to undo what was set up."""

    method = "none"

    def cap(self, pid: int, cores: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Remove what ``cap`` made; call once the capped processes have exited."""


class _Cgroup(CpuCap):
    """A child cgroup per capped process, with a CFS quota of ``cores`` times the period."""

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self.groups: list[Path] = []

    def _limit(self, group: Path, quota_us: int) -> None:
        raise NotImplementedError

    def _new_group(self, quota_us: int) -> Path:
        group = self.parent / f"booking-bench-{uuid.uuid4().hex[:8]}"
        group.mkdir()
        self.groups.append(group)
        self._limit(group, quota_us)
        return group

    def cap(self, pid: int, cores: float) -> None:
        group = self._new_group(max(1000, round(cores * PERIOD_US)))
        # cgroup.procs moves every thread of the process, and its later threads follow.
        (group / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        for group in self.groups:
            try:
                group.rmdir()
            except OSError:
                pass  # a process still in it: the kernel keeps the group until it exits
        self.groups.clear()


class Cgroup2(_Cgroup):
    method = "cgroup2"

    def _limit(self, group: Path, quota_us: int) -> None:
        (group / "cpu.max").write_text(f"{quota_us} {PERIOD_US}")


class Cgroup1(_Cgroup):
    method = "cgroup1"

    def _limit(self, group: Path, quota_us: int) -> None:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota_us))


class Cpulimit(CpuCap):
    method = "cpulimit"

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.procs: list[subprocess.Popen[bytes]] = []

    def cap(self, pid: int, cores: float) -> None:
        # -l is a percentage of one core; -z: exit when the capped process does.
        self.procs.append(
            subprocess.Popen(
                [self.binary, "-p", str(pid), "-l", str(max(1, round(cores * 100))), "-z"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)
        self.procs.clear()


class DutyCycle(CpuCap):
    """SIGCONT for ``cores`` of every period, SIGSTOP for the rest, from a thread here."""

    method = "duty-cycle"

    def __init__(self) -> None:
        self.stops: list[threading.Event] = []
        self.threads: list[threading.Thread] = []

    def cap(self, pid: int, cores: float) -> None:
        stop = threading.Event()
        running = min(1.0, cores) * DUTY_PERIOD_S

        def cycle() -> None:
            try:
                while not stop.is_set():
                    os.kill(pid, signal.SIGCONT)
                    time.sleep(running)  # the cap itself is a timed pause: there is no event
                    if running < DUTY_PERIOD_S:
                        os.kill(pid, signal.SIGSTOP)
                        time.sleep(DUTY_PERIOD_S - running)
            except ProcessLookupError:
                return  # the process exited
            finally:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass

        thread = threading.Thread(target=cycle, daemon=True, name=f"duty-cycle-{pid}")
        thread.start()
        self.stops.append(stop)
        self.threads.append(thread)

    def close(self) -> None:
        for stop in self.stops:
            stop.set()
        for thread in self.threads:
            thread.join(5)
        self.stops.clear()
        self.threads.clear()


def _cgroup2() -> CpuCap | None:
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if not controllers.exists() or "cpu" not in controllers.read_text().split():
        return None
    return Cgroup2(CGROUP_ROOT)


def _cgroup1() -> CpuCap | None:
    hierarchy = CGROUP_ROOT / "cpu"
    if not (hierarchy / "cpu.cfs_quota_us").exists():
        return None
    return Cgroup1(hierarchy)


def _works(candidate: CpuCap) -> bool:
    """A cgroup can be made and given a quota here (root, a writable hierarchy)."""
    assert isinstance(candidate, _Cgroup)
    try:
        candidate._new_group(PERIOD_US // 2)
    except OSError:
        return False
    finally:
        candidate.close()
    return True


def detect() -> CpuCap:
    """The first way of capping a process's CPU that works on this machine."""
    for found in (_cgroup2(), _cgroup1()):
        if found is not None and _works(found):
            return found
    binary = shutil.which("cpulimit")
    if binary is not None:
        return Cpulimit(binary)
    return DutyCycle()
