"""``make run`` (scripts/devstack.py) honours its own settings, prints the
``export`` lines that point the CLIs at its stack, and every service says which
port is taken instead of a traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from scripts.devstack import SettingsError, StackSettings, cli_exports
from tests.conftest import ROOT, free_port, wait_until_blocking
from wiring.local_stack import dev_server_command, stop_process, wait_for_port


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


def test_make_run_serves_every_service_on_the_ports_it_is_given(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("TEMPORAL_DEV_PORT", "TEMPORAL_UI_PORT", "PROVIDERS_PORT", "WEB_PORT")}
    env = {k: v for k, v in os.environ.items() if k not in ("TEMPORAL_ADDRESS", "TEMPORAL_UI_URL", "PROVIDERS_URL")}
    env.update({name: str(port) for name, port in ports.items()}, TRIP_DATA_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.devstack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if "Ctrl-C stops everything" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(90), "".join(out)
        banner = "".join(out)
        for name, port in ports.items():
            assert f":{port}" in banner and name in banner, banner
        base = f"http://127.0.0.1:{ports['PROVIDERS_PORT']}"
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['WEB_PORT']}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['TEMPORAL_UI_PORT']}/", timeout=5).status_code == 200
        assert (tmp_path / ".temporal" / "dev.db").exists() and (tmp_path / ".providers" / "ledger.db").exists()
        # Another terminal: nothing set but what the banner says to export.
        exports = "\n".join(line.strip() for line in banner.splitlines() if line.strip().startswith("export "))
        shell_env = {k: v for k, v in env.items() if k not in ports}
        booked = _in_shell(exports, ".venv/bin/python run_workflow.py --json", shell_env)
        assert booked.returncode == 0, booked.stderr
        run = json.loads(booked.stdout)
        assert run["status"] == "COMPLETED"
        assert run["web_ui_url"].startswith(f"http://127.0.0.1:{ports['TEMPORAL_UI_PORT']}/")
        # The Temporal CLI decrypts the result through this stack's codec server.
        result = _in_shell(exports, f".venv/bin/temporal workflow result --workflow-id {run['workflow_id']}", shell_env)
        assert result.returncode == 0, result.stderr
        assert all(step["confirmation"] in result.stdout for step in run["steps"]), result.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, "".join(out)
    # Children release their ports as they exit.
    wait_until_blocking(lambda: all(_free(p) for p in ports.values()), what="every service to exit with make run")


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
