"""Connecting to Temporal, and telling a server that cannot answer from one that said no.

Every client in the project (the CLIs, the worker, the web app, the tests and
the bench) connects through ``connect``, so all of them share the env-config
settings, the codec and the tracing interceptor. Never import this from
workflow code: it does network I/O.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError, RPCStatusCode

from trip import DEFAULT_TEMPORAL_ADDRESS
from wiring.codec import data_converter
from wiring.settings import ClientSettings
from wiring.tracing import temporal_interceptor


def connect_config(profile: str | None = None) -> dict[str, Any]:
    """Connection settings from the SDK's env config: TEMPORAL_ADDRESS,
    TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS settings and config-file profiles."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config(profile=profile))
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    return config


async def connect(profile: str | None = None, **overrides: Any) -> Client:
    config = connect_config(profile)
    config.update(overrides)
    config.setdefault("data_converter", data_converter())
    # Workers built on this client inherit it: one trace from start to provider call.
    config.setdefault("interceptors", [temporal_interceptor()])
    return await Client.connect(**config)


#: gRPC answers that mean "the server cannot answer now", not "no". The SDK's
#: bridge reports a call's own ``rpc_timeout`` running out ("Timeout expired")
#: as CANCELLED, which is what a hung server (accepting connections, never
#: answering) looks like; a refused connection is UNAVAILABLE, and a
#: connection torn down mid-call is UNKNOWN.
UNREACHABLE_CODES = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED, RPCStatusCode.UNKNOWN}
)


def is_unreachable(err: BaseException) -> bool:
    """Whether ``err`` says Temporal could not answer, rather than answering no."""
    return isinstance(err, RPCError) and err.status in UNREACHABLE_CODES


def web_ui_url(
    workflow_id: str, namespace: str = "default", run_id: str | None = None, *, base: str | None = None
) -> str:
    """Link to a run in the Temporal Web UI (``TEMPORAL_UI_URL``, or the dev server's)."""
    base = (base or ClientSettings.load().ui_url).rstrip("/")
    url = f"{base}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    return f"{url}/{run_id}/history" if run_id else url


LOCAL_ADDRESSES = frozenset({DEFAULT_TEMPORAL_ADDRESS, "localhost:7233"})


def known_web_ui_url(workflow_id: str, namespace: str, address: str) -> str | None:
    """``web_ui_url``, or ``None`` when we cannot know which UI shows ``address``.

    Without ``TEMPORAL_UI_URL`` the link would point at the local dev
    server's UI, which is the wrong server for any other address.
    """
    if ClientSettings.load().temporal_ui_url is None and address not in LOCAL_ADDRESSES:
        return None
    return web_ui_url(workflow_id, namespace)
