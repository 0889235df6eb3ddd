"""``python -m web``: serve the app with waitress on 127.0.0.1:5000.

Waitress is a production WSGI server that runs one process with a thread pool.
That fits the app's one Temporal client per process (owned by one event-loop
thread): a pre-forking server would have to rebuild it in every child.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from waitress.server import create_server

from trip.tracing import configure_from_env
from web import create_app


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
    args = parser.parse_args()
    configure_from_env("booking-web")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        server = create_server(create_app(), host=args.host, port=args.port, threads=args.threads)
    except OSError as err:
        print(
            f"web: cannot listen on {args.host}:{args.port}: {err.strerror or err}. "
            "Stop what listens there, or pick another port (--port or WEB_PORT).",
            file=sys.stderr,
        )
        sys.exit(1)
    # One host gives one TCP server; its stubs omit the port it actually bound.
    port = getattr(server, "effective_port", args.port)
    print(f"web app listening on http://{args.host}:{port}", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
