"""``python -m providers``: serve the stand-in provider APIs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from providers.app import create_app
from providers.callbacks import CallbackSender
from providers.latency import PROFILES, LatencyProfile
from providers.ledger import Ledger
from trip.callbacks import load_secrets
from trip.models import Kind
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
    parser.add_argument(
        "--callback-url",
        default=settings.callback_base_url,
        help="the receiver's base URL for confirmation callbacks (the web app), e.g. http://127.0.0.1:5000",
    )
    parser.add_argument(
        "--callback-secrets",
        type=Path,
        default=settings.callback_secrets_file,
        help="0600 JSON file of each provider's callback secret; CALLBACK_SECRET_<KIND> variables win over it",
    )
    parser.add_argument(
        "--callback-delay-s",
        type=float,
        default=settings.callback_delay_s,
        help="seconds before a provider that confirms later sends its callback",
    )
    args = parser.parse_args()
    profile = replace(PROFILES[args.latency_profile], seed=args.latency_seed) if args.latency_profile else None
    configure_from_env("booking-providers")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s providers %(levelname)s %(message)s")
    try:
        secrets = load_secrets(args.callback_secrets)
    except (OSError, ValueError) as err:
        print(f"providers: cannot read the callback secrets: {err}", file=sys.stderr)
        sys.exit(2)
    callbacks = CallbackOptions(args.callback_url, secrets, args.callback_delay_s)
    try:
        asyncio.run(serve(args.host, args.port, args.db, args.capacity, args.latency_ms, callbacks, profile))
    except CannotListen as err:
        print(f"providers: {err}", file=sys.stderr)
        sys.exit(1)


class CannotListen(Exception):
    """The port is taken (or not ours to use): one line, not a traceback."""


@dataclass(frozen=True)
class CallbackOptions:
    base_url: str | None
    secrets: dict[Kind, bytes]
    delay_s: float


async def serve(
    host: str,
    port: int,
    db: Path,
    capacity: int,
    latency_ms: int | None = None,
    callbacks: CallbackOptions | None = None,
    profile: LatencyProfile | None = None,
) -> None:
    ledger = Ledger(db, default_capacity=capacity)
    sender = None
    if callbacks is not None:
        sender = CallbackSender(ledger, callbacks.base_url, callbacks.secrets, delay_s=callbacks.delay_s)
    app = create_app(ledger, latency_override_ms=latency_ms, latency_profile=profile, callbacks=sender)
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
