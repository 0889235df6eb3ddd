"""``make run`` (scripts/devstack.py) honours its own settings, and every service
says which port is taken instead of a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.devstack import SettingsError, StackSettings
from tests.conftest import ROOT, free_port, wait_until_blocking


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_every_port_comes_from_the_environment() -> None:
    settings = StackSettings.from_env(
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


def test_providers_url_alone_moves_the_provider_service() -> None:
    # Before: the providers listened on 8001 while make run waited on 18002.
    settings = StackSettings.from_env({"PROVIDERS_URL": "http://127.0.0.1:18002"})
    assert settings.providers_port == 18002
    assert settings.child_env({})["PROVIDERS_PORT"] == "18002"


@pytest.mark.parametrize("env", [{"WEB_PORT": "web"}, {"PROVIDERS_PORT": "70000"}])
def test_a_bad_port_setting_is_named(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        StackSettings.from_env(env)


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


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
