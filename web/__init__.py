"""The Flask booking form, status pages and bookings list.

``create_app`` is the application factory. Views are plain sync functions: all
Temporal calls go through the one ``TemporalPortal`` (``web.portal``), never a
client per request and never an async view. No view waits for a saga to end.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from pydantic import SecretStr
from werkzeug.wrappers import Response

from web import auth
from web.auth import login_manager
from web.portal import PORTAL_KEY, TemporalPortal
from web.sessions import SessionStore
from web.settings import WebSettings
from wiring.client import connect
from wiring.secrets import read_or_create
from wiring.tracing import instrument_flask

csrf = CSRFProtect()


def _secret_key(instance: Path, settings: WebSettings | None = None) -> str:
    """SECRET_KEY from the environment, else one generated once and kept in
    the (git-ignored) instance folder, so sessions survive restarts."""
    configured = (settings or WebSettings.load()).secret_key
    if configured:
        return configured.get_secret_value()
    return read_or_create(instance / "secret_key", lambda: secrets.token_hex(32)).strip()


#: Sent with every response. The pages use only their own stylesheet and
#: the vendored ``htmx.min.js``: no inline script or style, nothing from elsewhere, and no
#: site may frame them (clickjacking an operator's Cancel or Resolve).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    settings = WebSettings.load()
    app.config.from_mapping(
        TASK_QUEUE=settings.booking_task_queue,
        TEMPORAL_UI_URL=settings.ui_url,
        TEMPORAL_PROFILE=None,
        #: Seconds a view waits for Temporal before answering 503.
        TEMPORAL_TIMEOUT=10.0,
        #: Seconds a status query may wait for a worker to answer it.
        QUERY_TIMEOUT=2.0,
        #: Seconds a booking page or status poll may wait for Temporal in all
        #: before answering 503: polls come every second from every open page,
        #: so a slow Temporal must not hold the server's threads for TEMPORAL_TIMEOUT.
        STATUS_TIMEOUT=6.0,
        #: How often the status page polls while a saga runs, in ms.
        POLL_INTERVAL_MS=1000,
        MAX_CONTENT_LENGTH=64 * 1024,
        #: Seconds a form's CSRF token is good for: a form left open over lunch still
        #: submits, one copied days ago does not (it lasts no longer than an operator's session).
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        #: How long an operator stays logged in: one working shift. The session lives on
        #: the server (web.sessions), so logging out ends it everywhere at once.
        OPERATOR_SESSION_LIFETIME=timedelta(hours=8),
        #: The operators' sessions and the login throttle (web.sessions); None:
        #: instance/operator_sessions.sqlite, shared by every web process on the host.
        SESSION_DB=None,
        #: Refused logins allowed per client address and per operator name within the window,
        #: before logins are answered 429 (the password is then not even checked).
        LOGIN_LIMIT_PER_CLIENT=20,
        LOGIN_LIMIT_PER_NAME=5,
        LOGIN_WINDOW_S=15 * 60,
        #: Seconds the nav bar's NEEDS_ATTENTION count may take before it is left out.
        BADGE_TIMEOUT=2.0,
        #: Seconds ``/metrics`` reuses one visibility answer for the booking gauges (web.gauges).
        VISIBILITY_METRICS_TTL=5.0,
        #: Seconds ``/metrics`` waits for that answer before reporting ``booking_visibility_up 0``.
        VISIBILITY_METRICS_TIMEOUT=5.0,
        #: Seconds a ``retry_compensation`` may run: it returns only once the undos finish.
        RETRY_TIMEOUT=600.0,
        #: "Retry all" / "Resolve all" on /attention: bookings acted on at once, and Updates started per second.
        BULK_CONCURRENCY=4,
        BULK_RATE=5.0,
        #: Seconds /attention and the confirmation step may take to read every matching booking's status.
        BULK_SELECT_TIMEOUT=30.0,
        #: Operators, name -> werkzeug password hash; None reads OPERATORS_FILE or instance/operators.toml.
        OPERATORS=None,
    )
    # The environment's secrets and codec origin (WebSettings); FLASK_* and the test config win over them.
    for key, value in (
        ("SECRET_KEY", settings.secret_key),
        ("CODEC_TOKEN", settings.codec_token),
        ("CODEC_UI_ORIGIN", settings.codec_ui_origin),
    ):
        if value:
            app.config[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    app.config.from_prefixed_env()  # FLASK_* variables
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(Path(app.instance_path), settings)

    if app.config["OPERATORS"] is None:
        # Imported here so ``python -m web.operators`` does not import itself twice.
        from web.operators import load_operators, operators_file

        app.config["OPERATORS"] = load_operators(operators_file(Path(app.instance_path), settings))

    session_db = app.config["SESSION_DB"]
    if session_db is None:
        # The tests' apps (TESTING) keep theirs in the process: no test sees another's logins.
        session_db = ":memory:" if app.config.get("TESTING") else Path(app.instance_path) / "operator_sessions.sqlite"
    app.extensions[auth.SESSIONS_KEY] = SessionStore(session_db)

    csrf.init_app(app)
    login_manager.init_app(app)
    portal = app.config.get("TEMPORAL_PORTAL")
    if portal is None:
        profile = app.config["TEMPORAL_PROFILE"]
        portal = TemporalPortal(lambda: connect(profile), timeout=app.config["TEMPORAL_TIMEOUT"])
    app.extensions[PORTAL_KEY] = portal

    from web import attention, booking, bulk, callbacks, codec, errors, listing, metrics, status

    app.register_blueprint(booking.bp)
    app.register_blueprint(status.bp)
    app.register_blueprint(listing.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(attention.bp)
    app.register_blueprint(bulk.bp)
    attention.register(app)
    # The codec endpoints take JSON from the Web UI, not forms: their guard is
    # the origin check plus a token or operator session (web.codec).
    csrf.exempt(codec.bp)
    codec.register(app)
    metrics.register(app)
    # Providers' confirmation callbacks authenticate by signature, not by a session or a form token.
    csrf.exempt(callbacks.bp)
    callbacks.register(app, app.extensions[metrics.METRICS_KEY])
    instrument_flask(app, app.config.get("TRACER_PROVIDER"))
    errors.register(app)
    app.after_request(_security_headers)
    return app
