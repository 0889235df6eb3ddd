"""OpenTelemetry tracing: one trace from ``POST /bookings`` to the provider's HTTP call.

The pieces, each wired where its process starts:

* the SDK's ``TracingInterceptor`` on every client (``wiring.client.connect``):
  spans for StartWorkflow, the workflow, each activity and its retries, and
  the trace context in the workflow's headers; workers inherit it from their
  client;
* Flask instrumentation on the web app (``web.create_app``), httpx
  instrumentation on the worker's provider client (``wiring.worker.run``), whose
  ``traceparent`` header the provider service continues (``providers.app``).

Export happens only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
(``configure_from_env``, called by each entry point, before any client
connects). Otherwise no tracer provider is set and neither the interceptor nor
the httpx instrumentation is installed at all: a no-op span is cheap, but the
interceptor around it is not (a trace-context header on every activity, which
the codec then encrypts; a wrapper around every provider call), about a tenth
of a worker's CPU per saga by ``python -m bench.profile``. Tests pass their own
provider with an in-memory exporter instead, which installs both.
"""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import TracerProvider
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from wiring.settings import TracingSettings

ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACER_NAME = "booking-saga"

_configured = False


def configure_from_env(service_name: str) -> bool:
    """Export spans over OTLP/HTTP if ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

    Returns whether tracing was turned on. Safe to call more than once.
    """
    global _configured
    settings = TracingSettings.load()
    if _configured or not settings.otel_exporter_otlp_endpoint:
        return _configured
    # Imported here: processes that do not export never load the SDK and exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = SdkTracerProvider(resource=Resource.create({"service.name": settings.otel_service_name or service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def tracing_on() -> bool:
    """Whether spans go anywhere: a tracer provider was set (by ``configure_from_env``, or by
    whoever embeds these modules), rather than OpenTelemetry's default placeholder."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def temporal_interceptor(provider: TracerProvider | None = None) -> TracingInterceptor:
    """The SDK's interceptor; with no provider it follows the global one."""
    return TracingInterceptor(trace.get_tracer(TRACER_NAME, tracer_provider=provider))


def client_interceptors() -> list[Interceptor]:
    """A client's (and its workers') interceptors: tracing only where spans are exported."""
    return [temporal_interceptor()] if tracing_on() else []


def instrument_http_client(client: httpx.AsyncClient, provider: TracerProvider | None = None) -> None:
    """A client span per provider call, with the ``traceparent`` header; nothing without a
    ``provider`` while tracing is off (``tracing_on``)."""
    if provider is None and not tracing_on():
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)


def instrument_flask(app: Any, provider: TracerProvider | None = None) -> None:
    """A server span per request; ``/metrics`` and ``/healthz`` are left out."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="metrics,healthz,static")
