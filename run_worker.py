"""Run a booking worker: ``python run_worker.py [--task-queue Q]``.

Connection settings come from the Temporal env config (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS variables or a profile), so the same
command serves a dev server, a self-hosted cluster or Temporal Cloud. The rest
comes from ``WorkerSettings`` (docs/configuration.md); each flag wins over it.
If it cannot connect it exits 4 with one line naming the cause (nothing
listens, no client certificate, an untrusted one, a wrong server name, a
refused API key), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import timedelta

from wiring import worker as booking_worker
from wiring.client import ConnectFailed, connect
from wiring.entry_point import run_entry_point
from wiring.metrics import deployment_tags, runtime_with_prometheus
from wiring.settings import SettingsError, WorkerSettings
from wiring.tracing import configure_from_env
from wiring.versioning import BuildIdError, deployment_config, resolve_build_id

#: Loggers too chatty at INFO for a worker's log: httpx logs every provider
#: request. ``--log-level httpx=INFO`` (or DEBUG overall) brings them back.
QUIET_LOGGERS = {"httpx": logging.WARNING, "httpcore": logging.WARNING}


def configure_logging(spec: str) -> None:
    """``LEVEL[,logger=LEVEL...]``: the root level, then per-logger overrides."""
    root, *overrides = [part.strip() for part in spec.split(",") if part.strip()] or ["INFO"]
    logging.basicConfig(level=root.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    root_level = logging.getLogger().level
    for name, quiet in QUIET_LOGGERS.items():
        # Quiet only above DEBUG: asking for DEBUG means asking for everything.
        if root_level > logging.DEBUG:
            logging.getLogger(name).setLevel(max(quiet, root_level))
    for override in overrides:
        name, _, level = override.partition("=")
        logging.getLogger(name.strip()).setLevel(level.strip().upper())


def main() -> int:
    try:
        settings = WorkerSettings.load()
    except SettingsError as err:
        print(f"run_worker: {err}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(description="Run the booking saga worker.")
    parser.add_argument("--task-queue", default=settings.booking_task_queue)
    parser.add_argument("--providers-url", default=settings.providers_url)
    parser.add_argument("--profile", default=None, help="Temporal env-config profile")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds in-flight activities get on shutdown")
    defaults = booking_worker.WorkerTuning()
    parser.add_argument("--max-concurrent-activities", type=int, default=defaults.max_concurrent_activities)
    parser.add_argument(
        "--max-cached-workflows",
        type=int,
        default=defaults.max_cached_workflows,
        help="workflows kept in memory between tasks (0 replays the history on every task)",
    )
    parser.add_argument(
        "--strict-sandbox",
        action="store_true",
        help="re-import the workflow module for every run (the SDK default; slower, catches more mistakes)",
    )
    parser.add_argument(
        "--poller-autoscaling",
        action="store_true",
        help="scale task pollers from server feedback instead of the SDK's fixed five",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=settings.worker_metrics_port,
        help="serve Prometheus metrics on HOST:PORT/metrics (env WORKER_METRICS_PORT; off by default)",
    )
    parser.add_argument(
        "--metrics-host",
        default=settings.worker_metrics_host,
        help="address the metrics endpoint binds (env WORKER_METRICS_HOST; 0.0.0.0 to let a scraper in)",
    )
    parser.add_argument(
        "--log-level",
        default=settings.log_level,
        help="LEVEL[,logger=LEVEL...], e.g. INFO,httpx=INFO to log every provider request (default INFO)",
    )
    parser.add_argument(
        "--build-id",
        default=settings.booking_build_id,
        help="the build id of this worker's Worker Deployment version (env BOOKING_BUILD_ID; "
        "default: the package version and the git commit)",
    )
    parser.add_argument(
        "--deployment-name",
        default=settings.booking_deployment_name,
        help="the Worker Deployment (env BOOKING_DEPLOYMENT_NAME; default booking)",
    )
    parser.add_argument(
        "--no-versioning",
        dest="versioning",
        action="store_false",
        default=settings.booking_worker_versioning,
        help="poll unversioned, for a cluster without Worker Versioning (env BOOKING_WORKER_VERSIONING=false)",
    )
    args = parser.parse_args()
    try:
        configure_logging(args.log_level)
    except ValueError as err:
        parser.error(f"--log-level: {err}")
    deployment = None
    if args.versioning:
        try:
            deployment = deployment_config(resolve_build_id(args.build_id), args.deployment_name)
        except BuildIdError as err:
            print(f"run_worker: {err}", file=sys.stderr)
            return 2
    configure_from_env("booking-worker")

    async def go() -> None:
        extra = {}
        if args.metrics_port:
            extra["runtime"] = runtime_with_prometheus(
                f"{args.metrics_host}:{args.metrics_port}", tags=deployment_tags(deployment)
            )
        client = await connect(args.profile, **extra)
        await booking_worker.run(
            client,
            task_queue=args.task_queue,
            providers_url=args.providers_url,
            graceful_shutdown_timeout=timedelta(seconds=args.grace),
            tuning=booking_worker.WorkerTuning(
                max_concurrent_activities=args.max_concurrent_activities,
                max_cached_workflows=args.max_cached_workflows,
                strict_sandbox=args.strict_sandbox,
                poller_autoscaling=args.poller_autoscaling,
            ),
            deployment=deployment,
        )

    try:
        asyncio.run(go())
    except ConnectFailed as err:  # one line naming the cause: unreachable, TLS, credentials, settings
        print(f"run_worker: {err}", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    run_entry_point(main)
