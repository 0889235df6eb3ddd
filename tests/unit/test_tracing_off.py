"""Tracing costs nothing when no exporter is configured: no interceptor on clients and
workers, no span (and no ``traceparent`` header) around provider calls. With a tracer provider, both are back.

Each case runs in a fresh interpreter: OpenTelemetry's global provider can be set
only once per process."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import asyncio, httpx
from opentelemetry import trace
from wiring.tracing import client_interceptors, configure_from_env, instrument_http_client
configure_from_env("probe")
sent = []
client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200)))
instrument_http_client(client)
asyncio.run(client.get("http://providers.invalid/health"))
print("traceparent" in sent[0].headers, [type(i).__name__ for i in client_interceptors()])
"""


def probe(env: dict[str, str]) -> str:
    import os

    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_an_exporter_no_interceptor_and_no_http_wrapper_are_installed() -> None:
    assert probe({}) == "False []"


def test_with_an_exporter_the_tracing_interceptor_and_the_http_wrapper_are_installed() -> None:
    # Nothing listens there: spans are batched, and the probe ends before any export.
    assert probe({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}) == "True ['TracingInterceptor']"
