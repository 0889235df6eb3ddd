"""Connecting to Temporal, and telling a server that cannot answer from one that said no.

Every client in the project (the CLIs, the worker, the web app, the tests and
the bench) connects through ``connect``, so all of them share the env-config
settings, the codec and the tracing interceptor, and all of them fail the same
way: ``ConnectFailed``, whose message is one line naming the cause (no client
certificate, a certificate the server does not trust, a wrong server name, a
refused API key, nothing listening). ``explain_connect_error`` is the one place
that reads the SDK's errors for that. Never import this from workflow code: it
does network I/O.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from trip import DEFAULT_TEMPORAL_ADDRESS
from wiring.codec import data_converter
from wiring.settings import ClientSettings
from wiring.tracing import client_interceptors

#: The variable that names the env-config TOML file (the SDK reads it).
ENV_CONFIG_FILE = "TEMPORAL_CONFIG_FILE"


class ConnectFailed(Exception):
    """A client could not connect; ``str()`` is one line naming the cause.

    ``unreachable`` tells an outage (nothing answered: waiting may help) from
    a connection the server or the settings refused (waiting will not help).
    """

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def connect_config(profile: str | None = None) -> dict[str, Any]:
    """Connection settings from the SDK's env config: TEMPORAL_ADDRESS,
    TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS settings and config-file profiles
    (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE or ``profile``).

    Settings that cannot be used raise ``ConnectFailed``: a profile that is
    not in the file, a certificate file that is missing, and a
    TEMPORAL_CONFIG_FILE that does not exist, which the SDK would silently
    ignore and connect to the local default instead.
    """
    config_file = os.environ.get(ENV_CONFIG_FILE)
    if config_file and not Path(config_file).is_file():
        raise ConnectFailed(f"{ENV_CONFIG_FILE}={config_file}: no such file", unreachable=False)
    try:
        config: dict[str, Any] = dict(ClientConfig.load_client_connect_config(profile=profile))
    except OSError as err:
        raise ConnectFailed(
            f"Temporal connection settings: cannot read {err.filename}: {err.strerror}", unreachable=False
        ) from None
    except Exception as err:  # the SDK's ConfigError: a missing profile, bad TOML
        raise ConnectFailed(f"Temporal connection settings: {err}", unreachable=False) from None
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    return config


async def connect(profile: str | None = None, **overrides: Any) -> Client:
    """A client with the project's converter and interceptors; ``ConnectFailed`` if it cannot connect."""
    config = connect_config(profile)
    config.update(overrides)
    config.setdefault("data_converter", data_converter())
    # Workers built on this client inherit it: one trace from start to provider call.
    config.setdefault("interceptors", client_interceptors())
    try:
        return await Client.connect(**config)
    except (RuntimeError, RPCError) as err:
        raise explain_connect_error(err, config) from err


#: gRPC answers of an authorizing server that did not accept the credentials.
REFUSED_CODES = frozenset({RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED})
#: The same codes as the Rust client spells them in a failed connect's text.
_REFUSED_TEXT = re.compile(r"code: (Unauthenticated|PermissionDenied)\b")
_STATUS_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_DNS_NAME = re.compile(r'DnsName\((?:\\)?"([^"\\]+)(?:\\)?"\)')
_CERT_SETTINGS = (
    "client_cert_path and client_key_path in the profile's [tls] "
    "(or TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH)"
)


def explain_connect_error(err: BaseException, config: Mapping[str, Any]) -> ConnectFailed:
    """What went wrong when ``Client.connect(**config)`` raised ``err``, in one line.

    The SDK reports a failed connect as ``RuntimeError("Failed client connect:
    ...")`` carrying the Rust client's (tonic, rustls) error text, and a later
    refusal as ``RPCError``. A refusal by an authorizing server (gRPC
    UNAUTHENTICATED or PERMISSION_DENIED) rarely says which credential it
    disliked, so the cause is read from what this client sent: no client
    certificate, a client certificate, or an API key. A server that checks
    certificates in the TLS handshake (as the Temporal server does) says it
    with a TLS alert instead.
    """
    address = config.get("target_host", DEFAULT_TEMPORAL_ADDRESS)
    text = " ".join(str(err).split())
    said = _STATUS_MESSAGE.search(text)
    server_said = f' (the server said: "{said.group(1)}")' if said and said.group(1) != "transport error" else ""
    tls = config.get("tls")
    has_cert = isinstance(tls, TLSConfig) and tls.client_cert is not None
    has_key = bool(config.get("api_key"))

    def failed(cause: str) -> ConnectFailed:
        return ConnectFailed(f"cannot connect to Temporal at {address}: {cause}", unreachable=False)

    if "PrivateKeyParseError" in text:
        return failed("the client key is not a PEM private key; check client_key_path in the profile's [tls]")
    if "NotValidForName" in text:
        names = _DNS_NAME.findall(text)
        expected, presented = (names[0], ", ".join(names[1:]) or "other names") if names else ("?", "other names")
        return failed(
            f'wrong server name: the server\'s certificate is for {presented}, not "{expected}"; set server_name '
            "in the profile's [tls] (or TEMPORAL_TLS_SERVER_NAME) to a name on the certificate"
        )
    if "InvalidCertificate" in text:
        if "UnknownIssuer" in text:
            return failed(
                "the server's certificate is not signed by a CA this client trusts; set server_ca_cert_path in the "
                "profile's [tls] (or TEMPORAL_TLS_SERVER_CA_CERT_PATH) to the CA that signed it"
            )
        problem = re.search(r"InvalidCertificate\((\w+)", text)
        return failed(f"the server's certificate was rejected ({problem.group(1) if problem else 'invalid'})")
    # TLS alerts from a server that checks the client's certificate inside a
    # TLS 1.3 handshake: the client reads them on its first call. (The SDK
    # sometimes reports only the connection closing; that reads as an outage.)
    if "CertificateRequired" in text:
        return failed(f"no client certificate: the server requires one; set {_CERT_SETTINGS}")
    if "UnknownCA" in text or "BadCertificate" in text:
        return failed("the server did not accept the client certificate: it is not signed by a CA the server trusts")
    if (isinstance(err, RPCError) and err.status in REFUSED_CODES) or _REFUSED_TEXT.search(text):
        if has_key:
            return failed(
                f"the server refused the API key{server_said}; check TEMPORAL_API_KEY or the profile's api_key"
            )
        if has_cert:
            return failed(
                f"the server did not accept the client certificate{server_said}; is it signed by a CA the server "
                "trusts, and allowed in this namespace?"
            )
        return failed(
            f"no client certificate and no API key, and the server requires one{server_said}; set {_CERT_SETTINGS}, "
            "or an API key (TEMPORAL_API_KEY or the profile's api_key)"
        )
    if "InvalidContentType" in text or "CorruptMessage" in text:
        return failed(
            "TLS is on, but the server does not speak TLS; remove the profile's [tls] section or set disabled = true"
        )
    if isinstance(err, RPCError) and not is_unreachable(err):
        return failed(err.message)
    return ConnectFailed(f"cannot reach Temporal at {address}: {text}", unreachable=True)


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
