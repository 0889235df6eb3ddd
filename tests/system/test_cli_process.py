"""The entry points as processes, without a Temporal server: exit codes and
what they print when Temporal cannot be reached or the input is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, free_port


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


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


def test_a_worker_that_cannot_name_its_build_exits_2_with_one_line(tmp_path: Path) -> None:
    # As from an unpacked tarball: no git checkout, no BOOKING_BUILD_ID.
    env = dict(unreachable_env(), GIT_DIR=str(tmp_path / "no-repo"))
    env.pop("BOOKING_BUILD_ID", None)
    done = run("run_worker.py", env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "BOOKING_BUILD_ID" in lines[0] and "build id" in lines[0], done.stderr
    # Either names it, or says it runs unversioned: then it only fails to reach Temporal.
    named = run("run_worker.py", env=dict(env, BOOKING_BUILD_ID="b1"))
    unversioned = run("run_worker.py", "--no-versioning", env=env)
    assert named.returncode == 4 and unversioned.returncode == 4, named.stderr + unversioned.stderr


def one_object(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"stdout is not one line: {stdout!r}"
    obj: dict[str, Any] = json.loads(lines[0])
    return obj


def test_json_unreachable_prints_one_object_and_exits_4() -> None:
    done = run("run_workflow.py", "--json", env=unreachable_env())
    assert done.returncode == 4
    out = one_object(done.stdout)
    assert out["status"] == "NOT_STARTED"
    assert out["error"]["type"] == "TemporalUnreachable" and out["workflow_id"] is None
    assert "cannot reach Temporal" in done.stderr and "Traceback" not in done.stderr


def test_json_bad_arguments_print_one_object_and_exit_2() -> None:
    # argparse's own refusals (not a number) as well as the model's.
    for args in (["--max-attempts", "many"], ["--no-such-flag"], ["--scenario", "meteor"], ["--wait-timeout", "0"]):
        done = run("run_workflow.py", "--json", *args, env=unreachable_env())
        assert done.returncode == 2, done.stderr
        out = one_object(done.stdout)
        assert out["status"] == "BAD_INPUT", out
        assert "not started" in done.stderr and "Traceback" not in done.stderr


def test_worker_log_level_silences_httpx_by_default_and_brings_it_back_on_request() -> None:
    probe = (
        "import logging, sys, run_worker; run_worker.configure_logging(sys.argv[1]);"
        "print(logging.getLevelName(logging.getLogger('httpx').getEffectiveLevel()))"
    )
    levels = {spec: run("-c", probe, spec).stdout.strip() for spec in ("INFO", "INFO,httpx=INFO", "DEBUG")}
    assert levels == {"INFO": "WARNING", "INFO,httpx=INFO": "INFO", "DEBUG": "DEBUG"}
