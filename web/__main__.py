"""``python -m web``: serve the app with waitress on 127.0.0.1:5000.

Waitress is a production WSGI server that runs one process with a thread pool.
That fits the app's one Temporal client per process (owned by one event-loop
thread): a pre-forking server would have to rebuild it in every child.

SIGTERM (or Ctrl-C) drains: the listening socket closes, requests already
received finish (up to ``--grace`` seconds), then the Temporal portal closes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from web import create_app
from web.portal import PORTAL_KEY
from wiring.tracing import configure_from_env

log = logging.getLogger("booking.web")


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the booking web app.")
    parser.add_argument("--host", default=os.environ.get("WEB_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("WEB_PORT", "5000")),
        help="0 picks a free port; the URL is printed once listening",
    )
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument(
        "--grace", type=float, default=30.0, help="seconds SIGTERM waits for requests in flight to finish"
    )
    args = parser.parse_args()
    configure_from_env("booking-web")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app()
    try:
        server: Any = create_server(app, host=args.host, port=args.port, threads=args.threads)
    except OSError as err:
        print(
            f"web: cannot listen on {args.host}:{args.port}: {err.strerror or err}. "
            "Stop what listens there, or pick another port (--port or WEB_PORT).",
            file=sys.stderr,
        )
        sys.exit(1)
    # One host gives one TCP server; its stubs omit the port it actually bound.
    port = getattr(server, "effective_port", args.port)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("%s: draining", signal.Signals(signum).name)
        stopping.set()
        server.pull_trigger()  # wake the loop now, not at its next timeout

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"web app listening on http://{args.host}:{port}", flush=True)
    try:
        serve_until_drained(server, stopping, grace=args.grace)
    finally:
        app.extensions[PORTAL_KEY].close()
        log.info("stopped")


def _busy(server: Any) -> int:
    """Connections with a request in hand or a response still to send."""
    return sum(1 for ch in list(server.active_channels.values()) if ch.requests or ch.total_outbufs_len)


def serve_until_drained(server: Any, stopping: threading.Event, *, grace: float) -> None:
    """Serve until ``stopping``; then refuse new connections and finish the
    requests already received (up to ``grace`` seconds) before returning.

    Waitress's own ``run()`` ends at once on a signal and drops whatever is in
    flight; a deploy's SIGTERM should not cut off a traveller's booking.
    """
    adj = server.adj
    while not stopping.is_set():
        wasyncore.loop(timeout=adj.asyncore_loop_timeout, map=server._map, use_poll=adj.asyncore_use_poll, count=1)
    # Stop listening: new connections are refused from here on.
    wasyncore.dispatcher.close(server)
    # One pass without waiting reads requests whose bytes have already arrived.
    wasyncore.loop(timeout=0, map=server._map, use_poll=adj.asyncore_use_poll, count=1)
    deadline = time.monotonic() + grace
    while _busy(server) and time.monotonic() < deadline:
        wasyncore.loop(timeout=0.05, map=server._map, use_poll=adj.asyncore_use_poll, count=1)
    if _busy(server):
        log.warning("%d request(s) still running after %.0f s; stopping anyway", _busy(server), grace)
    server.task_dispatcher.shutdown(timeout=1)
    wasyncore.close_all(server._map)


if __name__ == "__main__":
    main()
