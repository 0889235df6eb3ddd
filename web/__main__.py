"""``python -m web``: serve the app with cheroot on 127.0.0.1:5000.

SIGTERM (or Ctrl-C) drains: a second later (for a request a client has just
sent on a kept-alive connection) the listening socket closes, so new
connections are refused; requests already received finish (up to ``--grace``
seconds); then the Temporal portal closes and the process exits 0. A deploy's
SIGTERM does not cut off a traveller's booking.

Why cheroot (CherryPy's WSGI server): it runs one process with a thread pool,
which fits the app's one Temporal client per process (owned by the portal's
event-loop thread), and it drains through its public API: ``stop()`` closes
the listener, then waits ``shutdown_timeout`` for the threads in flight.
Waitress, used before, has no drain in its public API: draining it meant
driving its private socket map. Gunicorn drains too (``--graceful-timeout``),
but its worker keeps the listening socket open while it drains, so new
connections queue unanswered until they are reset, and its pre-fork model
would have to build the portal after the fork.

At start it connects to Temporal once (env config: ``TEMPORAL_ADDRESS``, or
the profile ``TEMPORAL_PROFILE`` names in ``TEMPORAL_CONFIG_FILE``). If the
connection is refused (no client certificate, an untrusted one, a wrong server
name or API key) it exits 4 with one line naming the cause; if Temporal is
only down, it logs that and serves, connecting again on the next request.

The host and port come from ``WebSettings`` (``WEB_HOST``, ``WEB_PORT``),
unless ``--host`` or ``--port`` says otherwise. Never reach into the server's
private attributes here: the next release of the server breaks them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from cheroot.wsgi import Server
from temporalio.client import Client

from web import create_app
from web.portal import PORTAL_KEY, TemporalPortal, TemporalUnavailable
from web.settings import WebSettings
from wiring.client import ConnectFailed
from wiring.entry_point import exit_now
from wiring.settings import SettingsError
from wiring.tracing import configure_from_env

log = logging.getLogger("booking.web")

#: Listen backlog: connections the kernel holds while every thread is busy.
BACKLOG = 1024
#: Seconds between SIGTERM and closing the listener, for requests already sent.
KEEPALIVE_LINGER = 1.0
#: What stop() may take beyond the grace period: it wakes its own accept loop first.
STOP_SLACK = 2.0


def main() -> None:
    try:
        settings = WebSettings.load()
    except SettingsError as err:
        print(f"web: {err}", file=sys.stderr)
        sys.exit(2)
    parser = argparse.ArgumentParser(description="Serve the booking web app.")
    parser.add_argument("--host", default=settings.web_host)
    parser.add_argument(
        "--port", type=int, default=settings.web_port, help="0 picks a free port; the URL is printed once listening"
    )
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument(
        "--grace", type=float, default=30.0, help="seconds SIGTERM waits for requests in flight to finish"
    )
    args = parser.parse_args()
    configure_from_env("booking-web")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app()
    portal: TemporalPortal = app.extensions[PORTAL_KEY]
    # Before the server exists: once prepared, its worker threads would hold the exit.
    try:
        portal.call(_connected)
    except TemporalUnavailable as err:
        if isinstance(err.__cause__, ConnectFailed) and not err.__cause__.unreachable:
            print(f"web: {err.__cause__}", file=sys.stderr)
            portal.close()
            exit_now(4)  # not sys.exit: the SDK can abort the interpreter's shutdown
        outage: TemporalUnavailable | None = err
    else:
        outage = None
    server = Server(
        (args.host, args.port),
        app,
        numthreads=args.threads,
        request_queue_size=BACKLOG,
        shutdown_timeout=args.grace,
    )
    try:
        server.prepare()
    except OSError as err:
        reason = getattr(err.__cause__, "strerror", None) or err
        print(
            f"web: cannot listen on {args.host}:{args.port}: {reason}. "
            "Stop what listens there, or pick another port (--port or WEB_PORT).",
            file=sys.stderr,
        )
        app.extensions[PORTAL_KEY].close()
        sys.exit(1)
    if outage is not None:
        log.warning("%s; serving anyway, and connecting again on the next request", outage)
    host, port = server.bind_addr[:2]
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("%s: draining", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"web app listening on http://{host}:{port}", flush=True)
    try:
        serve_until_drained(server, stopping, grace=args.grace)
    finally:
        # Also ends a request still waiting on Temporal past the grace period.
        app.extensions[PORTAL_KEY].close()
        log.info("stopped")


async def _connected(client: Client) -> None:
    return None


def serve_until_drained(server: Server, stopping: threading.Event, *, grace: float) -> None:
    """Serve until ``stopping``; then refuse new connections and let the
    requests already received finish, for up to ``grace`` seconds."""

    # stop() returns only once the requests in flight have finished, so it
    # runs beside serve() rather than in the signal handler.
    def stop_when_asked() -> None:
        stopping.wait()
        # stop() closes idle kept-alive connections at once, even one whose
        # client has just sent its next request; a moment first lets those be
        # read, as gunicorn's stopping worker lingers on its kept-alive ones.
        threading.Event().wait(KEEPALIVE_LINGER)
        server.stop()

    stopper = threading.Thread(target=stop_when_asked, name="web-stopper", daemon=True)
    stopper.start()
    server.serve()  # returns once stop() has begun: the listener is closing
    stopper.join(KEEPALIVE_LINGER + grace + STOP_SLACK)
    if stopper.is_alive():
        log.warning("request(s) still running after %.0f s; stopping anyway", grace)


if __name__ == "__main__":
    main()
