"""The worker, the web app and both CLIs against a cluster that demands TLS
client certificates or an API key: nginx in front of the session's dev server
(``tests.system.secured_cluster``), one per module.

Every process is the shipped entry point, run as a process, and finds the
cluster only through a Temporal env-config profile: a TOML file named by
TEMPORAL_CONFIG_FILE, the profile by TEMPORAL_PROFILE. No TEMPORAL_ADDRESS is
set, so a profile that was not read would point at the local default, where
nothing listens. Each way the connection can be refused must stop every
process with exit 4 and one line naming the cause, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from tests.conftest import ROOT, ProviderService, WorkerProcess, wait_for_saga_status
from tests.system.conftest import FAST
from tests.system.secured_cluster import SERVER_NAME, Pair, SecuredCluster
from trip.status import SagaStatus
from wiring.local_stack import stop_process, temporal_cli_path

PROFILE = "secured"
#: What the SDK would otherwise read besides the profile.
CONNECTION_VARIABLES = ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE")


@pytest.fixture(scope="module")
def secured(dev_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredCluster]:
    cluster = SecuredCluster(tmp_path_factory.mktemp("secured"), dev_client.service_client.config.target_host)
    yield cluster
    cluster.stop()


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any Temporal connection setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CONNECTION_VARIABLES and not k.startswith(("TEMPORAL_TLS", "TEMPORAL_CONFIG"))
    }
    env.update(extra)
    return env


def profile_env(
    directory: Path,
    address: str,
    *,
    namespace: str = "default",
    ca: Path | None,
    client: Pair | None,
    server_name: str = SERVER_NAME,
    tls: bool = True,
) -> dict[str, str]:
    """Write a profile as a user would, and the environment that selects it."""
    lines = [f"[profile.{PROFILE}]", f'address = "{address}"', f'namespace = "{namespace}"']
    if tls:
        lines += [f"[profile.{PROFILE}.tls]", f'server_name = "{server_name}"']
        if ca is not None:
            lines.append(f'server_ca_cert_path = "{ca}"')
        if client is not None:
            lines += [f'client_cert_path = "{client.cert}"', f'client_key_path = "{client.key}"']
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"temporal-{uuid.uuid4().hex[:8]}.toml"
    config.write_text("\n".join(lines) + "\n")
    return clean_env(TEMPORAL_CONFIG_FILE=str(config), TEMPORAL_PROFILE=PROFILE)


def api_key_env(secured: SecuredCluster, key: str) -> dict[str, str]:
    """The API-key listener through environment variables alone, as a Cloud API-key user would set them."""
    return clean_env(
        TEMPORAL_ADDRESS=secured.api_key_address,
        TEMPORAL_API_KEY=key,
        TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(secured.certs.ca.cert),
        TEMPORAL_TLS_SERVER_NAME=SERVER_NAME,
    )


@pytest.fixture(scope="module")
def mtls_env(dev_client: Client, secured: SecuredCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    certs = secured.certs
    directory = tmp_path_factory.mktemp("profiles")
    return profile_env(
        directory, secured.mtls_address, namespace=dev_client.namespace, ca=certs.ca.cert, client=certs.client
    )


@pytest.fixture(scope="module")
def secured_queue(mtls_env: dict[str, str], providers: ProviderService) -> Iterator[str]:
    """``run_worker.py`` connected through the mTLS profile; yields its task queue."""
    queue = f"tq-{uuid.uuid4().hex}"
    worker = WorkerProcess(None, providers.url, queue, env=mtls_env)
    yield queue
    worker.stop()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def book(env: dict[str, str], queue: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run(env, "run_workflow.py", "--json", "--task-queue", queue, *FAST, *args)


def test_a_booking_runs_through_the_mtls_profile(mtls_env: dict[str, str], secured_queue: str) -> None:
    done = book(mtls_env, secured_queue)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "COMPLETED"


def test_the_temporal_cli_reads_the_same_profile(mtls_env: dict[str, str]) -> None:
    # What docs/deploying.md tells operators to create the search attributes with.
    done = subprocess.run(
        [temporal_cli_path(), "operator", "search-attribute", "list"],
        env=mtls_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "BookingStatus" in done.stdout and "BookingTraveller" in done.stdout


def test_an_api_key_from_the_environment_connects(secured: SecuredCluster, secured_queue: str) -> None:
    done = book(api_key_env(secured, secured.api_key), secured_queue)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "COMPLETED"


async def test_the_operator_cli_resolves_through_the_profile(
    dev_client: Client, mtls_env: dict[str, str], secured_queue: str
) -> None:
    workflow_id = f"trip-secured-{uuid.uuid4().hex[:12]}"
    started = book(
        mtls_env, secured_queue, "--scenario", "car-cancel-broken", "--workflow-id", workflow_id, "--no-wait"
    )
    assert started.returncode == 0, started.stderr
    await wait_for_saga_status(dev_client.get_workflow_handle(workflow_id), SagaStatus.NEEDS_ATTENTION)
    args = ["--workflow-id", workflow_id, "--step", "book_car", "--operator", "ops", "--note", "released by phone"]
    done = run(mtls_env, "run_operator.py", "resolve", *args, "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["outcomes"] == {"book_car": "resolved"} and answer["status"] == "ROLLED_BACK"


def test_the_web_app_serves_a_booking_through_the_profile(
    mtls_env: dict[str, str], secured_queue: str, tmp_path: Path
) -> None:
    done = book(mtls_env, secured_queue)
    assert done.returncode == 0, done.stderr
    workflow_id = json.loads(done.stdout)["workflow_id"]
    env = dict(
        mtls_env, BOOKING_TASK_QUEUE=secured_queue, SECRET_KEY=uuid.uuid4().hex, OPERATORS_FILE=str(tmp_path / "o")
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "web", "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("web app listening on "), line
        response = httpx.get(f"{line.split()[-1]}/bookings/{workflow_id}/status", timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "COMPLETED"
    finally:
        stop_process(proc)


@dataclass(frozen=True)
class Refusal:
    env: dict[str, str]
    #: Words the one line must contain.
    cause: str


def refusals(secured: SecuredCluster, dev_address: str, directory: Path) -> dict[str, Refusal]:
    certs = secured.certs
    mtls = secured.mtls_address
    return {
        "no client certificate": Refusal(
            profile_env(directory, mtls, ca=certs.ca.cert, client=None), "no client certificate"
        ),
        "a certificate from the wrong CA": Refusal(
            profile_env(directory, mtls, ca=certs.ca.cert, client=certs.wrong_client),
            "the server did not accept the client certificate",
        ),
        "a wrong server name": Refusal(
            profile_env(directory, mtls, ca=certs.ca.cert, client=certs.client, server_name="wrong.example"),
            f'wrong server name: the server\'s certificate is for {SERVER_NAME}, not "wrong.example"',
        ),
        "a wrong API key": Refusal(api_key_env(secured, "not-the-key"), "the server refused the API key"),
        "a server CA that did not sign the server": Refusal(
            profile_env(directory, mtls, ca=certs.wrong_ca.cert, client=certs.client),
            "the server's certificate is not signed by a CA this client trusts",
        ),
        "TLS towards a plain server": Refusal(
            profile_env(directory, dev_address, ca=certs.ca.cert, client=certs.client),
            "the server does not speak TLS",
        ),
        "a client key that is not a key": Refusal(
            profile_env(directory, mtls, ca=certs.ca.cert, client=Pair(certs.client.cert, certs.client.cert)),
            "the client key is not a PEM private key",
        ),
        "a missing config file": Refusal(
            clean_env(TEMPORAL_CONFIG_FILE=str(directory / "missing.toml"), TEMPORAL_PROFILE=PROFILE),
            "missing.toml: no such file",
        ),
    }


#: The refusals every process must explain, each with its one line.
CASES = ["no client certificate", "a certificate from the wrong CA", "a wrong server name", "a wrong API key"]
#: More ways a connection fails, read by the same code: checked with one CLI.
MORE_CASES = [
    "a server CA that did not sign the server",
    "TLS towards a plain server",
    "a client key that is not a key",
    "a missing config file",
]
#: Each process, and what starts its one line.
PROCESSES = {
    "worker": (["run_worker.py", "--task-queue", "tq-refused"], "run_worker: "),
    "run_workflow": (["run_workflow.py", "--json"], "error: "),
    "run_operator": (
        ["run_operator.py", "resolve", "--workflow-id", "x", "--step", "book_car", "--operator", "o", "--note", "n"],
        "error: ",
    ),
    "web": (["-m", "web", "--port", "0"], "web: "),
}


@pytest.mark.parametrize(
    ("case", "processes"),
    [(case, list(PROCESSES)) for case in CASES] + [(case, ["run_workflow"]) for case in MORE_CASES],
)
def test_a_refused_connection_stops_every_process_with_one_line_naming_the_cause(
    case: str, processes: list[str], dev_client: Client, secured: SecuredCluster, tmp_path: Path
) -> None:
    refusal = refusals(secured, dev_client.service_client.config.target_host, tmp_path)[case]
    env = dict(refusal.env, SECRET_KEY="s", OPERATORS_FILE=str(tmp_path / "operators.toml"))
    with ThreadPoolExecutor(max_workers=len(processes)) as pool:
        done = dict(zip(processes, pool.map(lambda name: run(env, *PROCESSES[name][0]), processes), strict=True))
    for name in processes:
        prefix = PROCESSES[name][1]
        result = done[name]
        assert result.returncode == 4, f"{name}: {result.stderr}"
        assert "Traceback" not in result.stderr, f"{name}: {result.stderr}"
        lines = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
        assert len(lines) == 1, f"{name}: {result.stderr}"
        assert refusal.cause in lines[0], f"{name}: {lines[0]}"
        if name != "web":  # the web app logs (its start) besides the line; the CLIs print nothing else
            assert result.stderr.strip() == lines[0], f"{name}: {result.stderr}"
    if "run_workflow" in done:  # its one JSON object says the same, and that nothing started
        answer = json.loads(done["run_workflow"].stdout)
        assert answer["status"] == "NOT_STARTED" and answer["error"]["type"] == "TemporalConnectFailed"
        assert refusal.cause in answer["error"]["message"]
