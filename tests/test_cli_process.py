"""The entry points as processes, without a Temporal server: exit codes and
what they print when Temporal cannot be reached or the input is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import ROOT, free_port


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def unreachable_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{free_port()}"  # nothing listens there
    env.pop("TEMPORAL_UI_URL", None)
    return env


def test_the_worker_exits_4_with_one_line_every_time_temporal_is_unreachable() -> None:
    # The abort at interpreter shutdown (exit 134) hit about 2 runs in 14.
    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = list(pool.map(lambda _: run("run_worker.py", env=unreachable_env()), range(14)))
    for done in runs:
        assert done.returncode == 4, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("run_worker: cannot reach Temporal at 127.0.0.1:")
        assert done.stdout == ""
