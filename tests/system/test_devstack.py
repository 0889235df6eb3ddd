"""``make run`` (scripts/devstack.py) honours its own settings, prints the
``export`` lines that point the CLIs at its stack, and every service says which
port is taken instead of a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.devstack import SettingsError, StackSettings, cli_exports
from tests.conftest import ROOT, free_port, wait_until_blocking
from wiring.local_stack import (
    WORKERS_FILE,
    dev_server_command,
    is_running_worker,
    read_workers,
    stop_process,
    wait_for_port,
)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


#: Every variable make run reads, so that the test runner's own environment cannot leak in.
STACK_VARIABLES = StackSettings.variables()


@pytest.fixture
def stack_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], StackSettings]:
    """``StackSettings`` as ``make run`` reads it, from exactly these variables."""

    def load(env: dict[str, str]) -> StackSettings:
        for name in STACK_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return StackSettings.load()

    return load


def test_every_port_comes_from_the_environment(stack_env: Callable[[dict[str, str]], StackSettings]) -> None:
    settings = stack_env(
        {
            "TEMPORAL_DEV_PORT": "17233",
            "TEMPORAL_UI_PORT": "18233",
            "PROVIDERS_PORT": "18001",
            "WEB_PORT": "15000",
            "WORKER_METRICS_PORT": "19464",
        }
    )
    env = settings.child_env({})
    assert env["TEMPORAL_ADDRESS"] == "127.0.0.1:17233"
    assert env["TEMPORAL_UI_URL"] == "http://127.0.0.1:18233"
    assert env["PROVIDERS_URL"] == "http://127.0.0.1:18001" and env["PROVIDERS_PORT"] == "18001"
    assert env["WEB_PORT"] == "15000" and env["WORKER_METRICS_PORT"] == "19464"
    assert [p for p, _, _ in settings.ports()] == [17233, 18233, 18001, 19464, 15000]


def test_the_defaults_are_the_documented_ports(stack_env: Callable[[dict[str, str]], StackSettings]) -> None:
    # An empty variable means its default, as it did before the settings model.
    settings = stack_env({"WEB_PORT": ""})
    assert [p for p, _, _ in settings.ports()] == [7233, 8233, 8001, 9464, 5000]


def test_providers_url_alone_moves_the_provider_service(
    stack_env: Callable[[dict[str, str]], StackSettings],
) -> None:
    # Before: the providers listened on 8001 while make run waited on 18002.
    settings = stack_env({"PROVIDERS_URL": "http://127.0.0.1:18002"})
    assert settings.providers_port == 18002
    assert settings.child_env({})["PROVIDERS_PORT"] == "18002"


@pytest.mark.parametrize(
    "env", [{"WEB_PORT": "web"}, {"PROVIDERS_PORT": "70000"}, {"PROVIDERS_URL": "http://example.com:8001"}]
)
def test_a_bad_setting_is_named(stack_env: Callable[[dict[str, str]], StackSettings], env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        stack_env(env)


def test_the_banner_exports_what_the_clis_need_to_reach_this_stack(
    stack_env: Callable[[dict[str, str]], StackSettings],
) -> None:
    settings = stack_env({"TEMPORAL_DEV_PORT": "17233", "TEMPORAL_UI_PORT": "18233", "WEB_PORT": "15000"})
    env = settings.child_env({"TEMPORAL_NAMESPACE": "trips"})
    exports = dict(line.removeprefix("export ").split("=", 1) for line in cli_exports(settings, env, web=True))
    assert exports["TEMPORAL_ADDRESS"] == "127.0.0.1:17233"
    assert exports["TEMPORAL_NAMESPACE"] == "trips"
    assert exports["TEMPORAL_UI_URL"] == "http://127.0.0.1:18233"
    assert exports["PROVIDERS_URL"] == "http://127.0.0.1:8001"
    assert exports["TEMPORAL_CODEC_ENDPOINT"] == "http://127.0.0.1:15000/codec"
    assert "codec_token" in exports["TEMPORAL_CODEC_AUTH"]
    # Without the web app there is no codec server to point at.
    assert not any("CODEC" in line for line in cli_exports(settings, env, web=False))


def test_make_run_names_a_taken_port_and_starts_nothing(taken_port: int, tmp_path: Path) -> None:
    env = dict(os.environ, PROVIDERS_PORT=str(taken_port), TRIP_DATA_DIR=str(tmp_path))
    env.update(TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", WEB_PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "scripts.devstack"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{taken_port}" in lines[0] and "PROVIDERS_PORT" in lines[0], done.stderr
    assert "starting" not in done.stdout
    assert not (tmp_path / ".providers").exists()


@pytest.mark.parametrize(("module", "variable"), [("providers", "PROVIDERS_PORT"), ("web", "WEB_PORT")])
def test_a_service_on_a_taken_port_says_so_in_one_line(taken_port: int, module: str, variable: str) -> None:
    env = dict(os.environ, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    done = subprocess.run(
        [sys.executable, "-m", module, "--port", str(taken_port)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{taken_port}" in lines[0] and variable in lines[0]


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        (["-m", "scripts.devstack"], "TEMPORAL_UI_PORT"),
        (["-m", "web"], "WEB_PORT"),
        (["run_worker.py"], "WORKER_METRICS_PORT"),
        (["-m", "providers"], "PROVIDERS_PORT"),
    ],
)
def test_a_bad_variable_stops_a_process_with_one_line_naming_it(command: list[str], variable: str) -> None:
    env = dict(os.environ, **{variable: "not-a-port"})
    done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode in (1, 2), done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{variable}='not-a-port'" in lines[0], done.stderr


class MakeRun:
    """``make run`` as a user starts it, on free ports and a temp data dir, and its output."""

    def __init__(self, data_dir: Path) -> None:
        names = ("TEMPORAL_DEV_PORT", "TEMPORAL_UI_PORT", "PROVIDERS_PORT", "WEB_PORT", "WORKER_METRICS_PORT")
        self.ports = {name: free_port() for name in names}
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if k not in ("TEMPORAL_ADDRESS", "TEMPORAL_UI_URL", "PROVIDERS_URL")}
        env.update({name: str(port) for name, port in self.ports.items()}, TRIP_DATA_DIR=str(data_dir))
        # Providers that confirm later call back at once, not after the demo's minute.
        env["CALLBACK_DELAY_S"] = "0.2"
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.devstack"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.out: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.out.append(line)
                if "Ctrl-C stops everything" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(90):
            self.stop()
            raise AssertionError("make run never printed its banner:\n" + "".join(self.out))
        self.banner = "".join(self.out)
        # Another terminal: nothing set but what the banner says to export.
        self.exports = "\n".join(
            line.strip() for line in self.banner.splitlines() if line.strip().startswith("export ")
        )
        self.shell_env = {k: v for k, v in env.items() if k not in self.ports}

    def shell(self, command: str) -> subprocess.CompletedProcess[str]:
        return _in_shell(self.exports, command, self.shell_env)

    def printed_build_id(self) -> str:
        """The build id in the worker's start-up line."""
        found = [re.search(r"worker ready: deployment 'booking' build id '([^']+)'", line) for line in self.out]
        ids = [m.group(1) for m in found if m]
        assert len(ids) == 1, "".join(self.out)
        return ids[0]

    def describe(self, workflow_id: str) -> dict[str, Any]:
        done = self.shell(f".venv/bin/temporal workflow describe --workflow-id {workflow_id} -o json")
        assert done.returncode == 0, done.stderr
        info: dict[str, Any] = json.loads(done.stdout)["workflowExecutionInfo"]
        return info

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRun]:
    """One ``make run`` for this module's tests; the rollout test, last, stops it."""
    stack = MakeRun(tmp_path_factory.mktemp("make-run"))
    yield stack
    stack.stop()


def test_make_run_serves_every_service_on_the_ports_it_is_given(make_run: MakeRun) -> None:
    ports, banner = make_run.ports, make_run.banner
    for name, port in ports.items():
        assert f":{port}" in banner and name in banner, banner
    base = f"http://127.0.0.1:{ports['PROVIDERS_PORT']}"
    assert httpx.get(f"{base}/health", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{ports['WEB_PORT']}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{ports['TEMPORAL_UI_PORT']}/", timeout=5).status_code == 200
    data_dir = make_run.data_dir
    assert (data_dir / ".temporal" / "dev.db").exists() and (data_dir / ".providers" / "ledger.db").exists()
    booked = make_run.shell(".venv/bin/python run_workflow.py --json")
    assert booked.returncode == 0, booked.stderr
    run = json.loads(booked.stdout)
    assert run["status"] == "COMPLETED"
    assert run["web_ui_url"].startswith(f"http://127.0.0.1:{ports['TEMPORAL_UI_PORT']}/")
    # The Temporal CLI decrypts the result through this stack's codec server.
    result = make_run.shell(f".venv/bin/temporal workflow result --workflow-id {run['workflow_id']}")
    assert result.returncode == 0, result.stderr
    assert all(step["confirmation"] in result.stdout for step in run["steps"]), result.stdout

    # Worker Versioning: make run made the version its worker printed current,
    # and the booking ran on it, pinned.
    build_id = make_run.printed_build_id()
    described = make_run.shell(".venv/bin/temporal worker deployment describe --name booking -o json")
    assert described.returncode == 0, described.stderr
    routing = json.loads(described.stdout)["routingConfig"]
    assert (routing["currentVersionDeploymentName"], routing["currentVersionBuildID"]) == ("booking", build_id)
    versioning = make_run.describe(run["workflow_id"])["versioningInfo"]
    assert versioning["deploymentVersion"] == {"deploymentName": "booking", "buildId": build_id}
    assert versioning["behavior"] == "VERSIONING_BEHAVIOR_PINNED"


def test_make_run_wires_the_providers_callbacks_to_the_web_app_with_secrets_only_they_read(make_run: MakeRun) -> None:
    secrets = make_run.data_dir / ".temporal" / "callback_secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    booked = make_run.shell(".venv/bin/python run_workflow.py --scenario flight-async --json")
    assert booked.returncode == 0, booked.stderr
    run = json.loads(booked.stdout)
    assert run["status"] == "COMPLETED"
    assert [w["outcome"] for w in run["waited"]] == ["confirmed"]
    ledger = httpx.get(
        f"http://127.0.0.1:{make_run.ports['PROVIDERS_PORT']}/reservations",
        params={"booking_id": run["workflow_id"]},
        timeout=5,
    ).json()
    flight = next(r for r in ledger if r["kind"] == "flight")
    assert run["confirmations"]["flight"] == flight["confirmation"]


def test_make_rollout_moves_new_bookings_to_a_new_build_and_stops_the_old_worker_once_drained(
    make_run: MakeRun,
) -> None:
    """Runs last in this module: it ends with Ctrl-C on make run."""
    old = make_run.printed_build_id()
    new = f"rollout-{uuid.uuid4().hex[:8]}"
    workers_file = make_run.data_dir / WORKERS_FILE
    [old_worker] = read_workers(workers_file)
    assert old_worker.build_id == old and is_running_worker(old_worker.pid)
    # A held booking on the old build keeps it from draining until it is confirmed.
    held = f"held-{uuid.uuid4().hex[:8]}"
    started = make_run.shell(f".venv/bin/python run_workflow.py --confirm-within 600 --no-wait --workflow-id {held}")
    assert started.returncode == 0, started.stderr

    rollout = subprocess.Popen(
        [
            "bash",
            "-c",
            f"{make_run.exports}\nexec .venv/bin/python -m scripts.rollout --build-id {new} "
            "--ramp-seconds 0 --progress-every 1 --drain-timeout 120",
        ],
        cwd=ROOT,
        env=make_run.shell_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: list[str] = []

    def read() -> None:
        assert rollout.stdout is not None
        out.extend(rollout.stdout)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_until_blocking(
            lambda: any(f"waiting for build {old} to drain: draining" in line for line in out),
            what="the rollout to wait for the old build to drain",
            # Before that line it starts a worker process and runs several `temporal` commands,
            # each bounded by WAIT_S on its own: a busy machine (the suite runs in parallel) takes longer.
            timeout=120,
        )
        # Step 3 done: a new booking runs on the new build; the held one stays on the old.
        booked = make_run.shell(".venv/bin/python run_workflow.py --json")
        assert booked.returncode == 0, booked.stderr
        fresh = json.loads(booked.stdout)
        assert fresh["status"] == "COMPLETED"
        assert make_run.describe(fresh["workflow_id"])["versioningInfo"]["deploymentVersion"]["buildId"] == new
        assert rollout.poll() is None and is_running_worker(old_worker.pid), "".join(out)

        confirmed = make_run.shell(
            f".venv/bin/temporal workflow update execute --workflow-id {held} --name confirm --input '{{}}'"
        )
        assert confirmed.returncode == 0, confirmed.stderr
        assert rollout.wait(timeout=120) == 0, "".join(out)
    finally:
        if rollout.poll() is None:
            rollout.kill()
            rollout.wait()
    printed = "".join(out)
    for step in range(1, 6):
        assert f"[rollout] {step}/5 " in printed, printed
    for command in (
        f"temporal worker deployment set-ramping-version --deployment-name booking --build-id {new} "
        "--percentage 25 --yes",
        f"temporal worker deployment set-current-version --deployment-name booking --build-id {new} --yes",
    ):
        assert f"  $ {command}\n" in printed, printed
    # The held booking finished where it started, on the old build.
    info = make_run.describe(held)
    assert info["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
    assert info["versioningInfo"]["deploymentVersion"]["buildId"] == old
    drained = make_run.shell(
        f".venv/bin/temporal worker deployment describe-version --deployment-name booking --build-id {old} -o json"
    )
    assert json.loads(drained.stdout)["drainageInfo"]["drainageStatus"] == "drained", drained.stdout

    # The old worker is gone, make run carries on with the new one, and stops it on Ctrl-C.
    assert not is_running_worker(old_worker.pid)
    [new_worker] = read_workers(workers_file)
    assert new_worker.build_id == new and is_running_worker(new_worker.pid)
    wait_until_blocking(
        lambda: any("replaced by make rollout's" in line for line in make_run.out), what="make run to see the handover"
    )
    again = make_run.shell(".venv/bin/python run_workflow.py --json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "COMPLETED", again.stderr
    assert make_run.stop() == 0, "".join(make_run.out)
    assert not is_running_worker(new_worker.pid), "".join(make_run.out)
    # Children release their ports as they exit.
    wait_until_blocking(
        lambda: all(_free(p) for p in make_run.ports.values()), what="every service to exit with make run"
    )


def _in_shell(exports: str, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` in a fresh shell after the banner's export lines, as a user pastes them."""
    return subprocess.run(
        ["bash", "-c", f"{exports}\nexec {command}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_dev_servers_codec_token_is_in_no_process_listing(tmp_path: Path) -> None:
    # Any local user can read a command line (ps, /proc/PID/cmdline); the token would be theirs.
    token = "tok-" + os.urandom(8).hex()
    endpoint = f"http://127.0.0.1:{free_port()}/codec/t/{token}"
    port, ui_port = free_port(), free_port()
    env_file = tmp_path / "instance" / "dev-server-ui.yaml"
    cmd = dev_server_command(
        host="127.0.0.1", port=port, ui_port=ui_port, codec_endpoint=endpoint, codec_env_file=env_file
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", ui_port, proc)
        assert token not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        assert env_file.stat().st_mode & 0o777 == 0o600
        # ... and the Web UI still calls the codec server at that endpoint.
        settings = wait_until_blocking(
            lambda: httpx.get(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=5),
            lambda r: r.status_code == 200,
            what="the dev server's Web UI to answer",
        )
        assert settings.json()["Codec"]["Endpoint"] == endpoint
    finally:
        stop_process(proc)
