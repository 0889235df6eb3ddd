"""The provider service's side of a trace: a server span per request that
continues the caller's ``traceparent`` header (W3C trace context).

With no tracer provider configured (``wiring.tracing.configure_from_env``) the
spans are no-ops; nothing here exports anything itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, TracerProvider

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def tracing_middleware(provider: TracerProvider | None = None) -> Middleware:
    tracer = trace.get_tracer("booking-providers", tracer_provider=provider)

    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        # The route template, not the path: idempotency keys stay out of span names.
        route = resource.canonical if resource is not None else request.path
        with tracer.start_as_current_span(
            f"{request.method} {route}",
            context=extract(request.headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method, "http.route": route},
        ) as span:
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            return response

    return traced
