"""The benchmark's CPU cap (``bench.cpucap``) really puts a process under a quota.

No timing is asserted: the quota the kernel holds for the process's cgroup is read back.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cpucap import PERIOD_US, Cgroup1, Cgroup2, detect


def test_a_capped_process_sits_in_a_cgroup_with_the_quota_asked_for() -> None:
    cap = detect()
    if not isinstance(cap, Cgroup1 | Cgroup2):
        pytest.skip(f"no writable cgroup here: the bench would use {cap.method}")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cap.cap(child.pid, 0.25)
        group = cap.groups[-1]
        assert str(child.pid) in (group / "cgroup.procs").read_text().split()
        if isinstance(cap, Cgroup1):
            assert int((group / "cpu.cfs_quota_us").read_text()) == PERIOD_US // 4
        else:
            assert (group / "cpu.max").read_text().split() == [str(PERIOD_US // 4), str(PERIOD_US)]
        # The kernel agrees: the process's own cgroup is the capped one.
        assert group.name in Path(f"/proc/{child.pid}/cgroup").read_text()
    finally:
        child.kill()
        child.wait()
        cap.close()
    assert not group.exists()  # nothing left behind once the process is gone
