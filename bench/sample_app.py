"""The baseline web request, done the way the well-known sample does it.

An async Flask view connects a new Temporal client for the request, starts the
seed-style booking (``bench.seed_style``) and waits for the saga to end before
answering. The benchmark serves it
with the same server (cheroot) and thread count as our app and times one request against our
``POST /bookings``, which starts the saga and redirects at once. Never used
outside the benchmark.
"""

from __future__ import annotations

import argparse
import os
import uuid
from datetime import date

from cheroot.wsgi import Server
from flask import Flask, jsonify
from temporalio.client import Client, WorkflowFailureError
from werkzeug.wrappers import Response

from bench.seed_style import WORKFLOW_NAME
from trip.forms import booking_from_flat, demo_trip
from wiring.codec import data_converter


def create_app() -> Flask:
    app = Flask(__name__)
    # Payloads are encrypted, so the baseline needs our converter too; built once,
    # so a request still pays only for the sample's connect-per-request.
    converter = data_converter()

    @app.post("/book")
    async def book() -> Response:
        client = await Client.connect(os.environ["TEMPORAL_ADDRESS"], data_converter=converter)
        req = booking_from_flat(demo_trip(date.today()), today=date.today())
        try:
            result = await client.execute_workflow(
                WORKFLOW_NAME, req, id=f"sample-{uuid.uuid4().hex}", task_queue=os.environ["BOOKING_TASK_QUEUE"]
            )
        except WorkflowFailureError as err:
            return jsonify({"status": "failed", "message": str(err.cause)})
        return jsonify({"status": "completed", "result": result})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), create_app(), numthreads=16)
    server.prepare()
    port = server.bind_addr[1]
    print(f"web app listening on http://127.0.0.1:{port}", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
