"""``python -m providers``: serve the stand-in provider APIs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from providers.app import create_app
from providers.latency import PROFILES, LatencyProfile
from providers.ledger import Ledger
from wiring.settings import ProviderSettings, SettingsError
from wiring.tracing import configure_from_env


def main() -> None:
    try:
        settings = ProviderSettings.load()
    except SettingsError as err:
        print(f"providers: {err}", file=sys.stderr)
        sys.exit(2)
    parser = argparse.ArgumentParser(description="Stand-in car, hotel and airline provider service.")
    parser.add_argument("--host", default=settings.providers_host)
    parser.add_argument(
        "--port",
        type=int,
        default=settings.providers_port,
        help="0 picks a free port; the chosen URL is printed on the first line",
    )
    parser.add_argument("--db", type=Path, default=settings.providers_db)
    parser.add_argument("--capacity", type=int, default=10_000, help="default capacity per resource and day")
    parser.add_argument(
        "--latency-ms", type=int, default=None, help="replace every scenario's added latency (e.g. slow's 1.5 s)"
    )
    parser.add_argument(
        "--latency-profile",
        choices=sorted(PROFILES),
        default=None,
        help="every call waits a seeded log-normal draw around its provider's median "
        "(car 120, hotel 180, flight 350 ms)",
    )
    parser.add_argument("--latency-seed", type=int, default=0, help="the seed of --latency-profile's draws")
    args = parser.parse_args()
    profile = replace(PROFILES[args.latency_profile], seed=args.latency_seed) if args.latency_profile else None
    configure_from_env("booking-providers")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s providers %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args.host, args.port, args.db, args.capacity, args.latency_ms, profile))
    except CannotListen as err:
        print(f"providers: {err}", file=sys.stderr)
        sys.exit(1)


class CannotListen(Exception):
    """The port is taken (or not ours to use): one line, not a traceback."""


async def serve(
    host: str, port: int, db: Path, capacity: int, latency_ms: int | None = None, profile: LatencyProfile | None = None
) -> None:
    app = create_app(Ledger(db, default_capacity=capacity), latency_override_ms=latency_ms, latency_profile=profile)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise CannotListen(
            f"cannot listen on {host}:{port}: {err.strerror or err}. "
            "Stop what listens there, or pick another port (--port or PROVIDERS_PORT)."
        ) from None
    actual = runner.addresses[0][1]
    print(f"providers listening on http://{host}:{actual} (ledger {db})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    main()
