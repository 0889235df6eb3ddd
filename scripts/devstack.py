"""``make run``: the whole system in one foreground command.

Starts, in order, each as its own process: the Temporal dev server (unless
TEMPORAL_ADDRESS points elsewhere) with its Web UI and our search attributes,
the provider service, the worker, and the web app when it exists. Ctrl-C (or
any child dying) stops them all in reverse order.

Every port comes from ``StackSettings.from_env`` and nowhere else: each
service is told its port explicitly, the readiness checks wait on that port,
and the banner prints it. A port that is already taken stops ``make run``
before anything starts, with one line naming it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from trip import ENV_PROVIDERS_URL, ENV_TEMPORAL_UI_URL
from wiring.local_stack import dev_server_command, providers_command, stop_process, wait_for_port
from wiring.metrics import DEFAULT_METRICS_ADDRESS, ENV_METRICS_PORT

ROOT = Path(__file__).resolve().parent.parent
DEV_HOST, DEV_PORT, UI_PORT = "127.0.0.1", 7233, 8233
PROVIDERS_PORT, WEB_PORT = 8001, 5000
#: Where ``make run`` keeps the dev server's history and the providers' ledger.
ENV_DATA_DIR = "TRIP_DATA_DIR"


class SettingsError(ValueError):
    """A setting ``make run`` cannot use; the message names the variable."""


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise SettingsError(f"{name}={port} is not a port number (1 to 65535)")
    return port


@dataclass(frozen=True)
class StackSettings:
    """Every address ``make run`` uses, from the environment; the one source of truth."""

    host: str = DEV_HOST
    #: ``TEMPORAL_ADDRESS`` if set: then no dev server is started.
    temporal_address: str | None = None
    dev_port: int = DEV_PORT
    ui_port: int = UI_PORT
    providers_port: int = PROVIDERS_PORT
    web_port: int = WEB_PORT
    #: The worker's Prometheus endpoint: saga metrics and the SDK's own.
    metrics_port: int = int(DEFAULT_METRICS_ADDRESS.rsplit(":", 1)[1])
    data_dir: Path = ROOT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StackSettings:
        """``TEMPORAL_DEV_PORT``, ``TEMPORAL_UI_PORT``, ``PROVIDERS_PORT`` (or the port
        of ``PROVIDERS_URL``), ``WEB_PORT``, ``TEMPORAL_ADDRESS``, ``TRIP_DATA_DIR``."""
        providers_default = PROVIDERS_PORT
        if env.get(ENV_PROVIDERS_URL):
            url = urlsplit(env[ENV_PROVIDERS_URL])
            try:
                providers_default = url.port or PROVIDERS_PORT
            except ValueError:
                raise SettingsError(f"{ENV_PROVIDERS_URL}={env[ENV_PROVIDERS_URL]!r} has no valid port") from None
            if url.hostname not in ("127.0.0.1", "localhost") and "PROVIDERS_PORT" not in env:
                raise SettingsError(
                    f"{ENV_PROVIDERS_URL}={env[ENV_PROVIDERS_URL]!r}: make run serves the providers on 127.0.0.1"
                )
        return cls(
            temporal_address=env.get("TEMPORAL_ADDRESS") or None,
            dev_port=_port(env, "TEMPORAL_DEV_PORT", DEV_PORT),
            ui_port=_port(env, "TEMPORAL_UI_PORT", UI_PORT),
            providers_port=_port(env, "PROVIDERS_PORT", providers_default),
            web_port=_port(env, "WEB_PORT", WEB_PORT),
            metrics_port=_port(env, ENV_METRICS_PORT, int(DEFAULT_METRICS_ADDRESS.rsplit(":", 1)[1])),
            data_dir=Path(env.get(ENV_DATA_DIR) or ROOT),
        )

    @property
    def providers_url(self) -> str:
        return f"http://{self.host}:{self.providers_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    def ports(self, *, web: bool = True) -> list[tuple[int, str, str]]:
        """(port, variable, what) for every port this stack will listen on."""
        found = []
        if self.temporal_address is None:
            found += [
                (self.dev_port, "TEMPORAL_DEV_PORT", "the Temporal dev server"),
                (self.ui_port, "TEMPORAL_UI_PORT", "the Temporal Web UI"),
            ]
        found.append((self.providers_port, "PROVIDERS_PORT", "the provider service"))
        found.append((self.metrics_port, ENV_METRICS_PORT, "the worker's metrics"))
        if web:
            found.append((self.web_port, "WEB_PORT", "the web app"))
        return found

    def child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The environment every service gets: the same ports, spelled once."""
        out = dict(env)
        out[ENV_PROVIDERS_URL] = self.providers_url
        out["PROVIDERS_PORT"] = str(self.providers_port)
        out["WEB_PORT"] = str(self.web_port)
        out[ENV_METRICS_PORT] = str(self.metrics_port)
        if self.temporal_address is None:
            out["TEMPORAL_ADDRESS"] = f"{self.host}:{self.dev_port}"
            out.setdefault(ENV_TEMPORAL_UI_URL, f"http://{self.host}:{self.ui_port}")
        return out


def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not listen on ``host:port`` now."""
    with socket.socket() as sock:
        # As the servers themselves do: a port in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def busy_port_message(settings: StackSettings, *, web: bool = True) -> str | None:
    """One line naming the first port that is taken, or ``None``."""
    for port, variable, what in settings.ports(web=web):
        if port_in_use(settings.host, port):
            return (
                f"error: {settings.host}:{port} ({what}, {variable}) is taken. "
                f"Stop what listens there, or set {variable} to another port."
            )
    return None


def prepare_encryption(env: dict[str, str], web_url: str) -> str | None:
    """Create the payload keys and the codec token on first run (instance/,
    git-ignored, 0600); return the codec endpoint for the dev server's Web UI."""
    from wiring.codec import ENV_KEYS, ensure_key_file

    if ENV_KEYS not in env:
        path, created = ensure_key_file()
        if created:
            print(f"[make run] created the payload encryption keys in {path}", flush=True)
    if not (ROOT / "web" / "__main__.py").exists():
        return None
    from web.codec import codec_token

    # The dev server's UI can send neither a header nor a cookie to another
    # origin, so its endpoint carries the token (web.codec, README).
    return f"{web_url}/codec/t/{codec_token(ROOT / 'instance')}"


class Stack:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        print(f"[make run] starting {name}: {' '.join(cmd[:3])} ...", flush=True)
        # Own process group: the terminal's Ctrl-C reaches us, and we decide the order.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                print(f"[make run] stopping {name}", flush=True)
                stop_process(proc)


def banner(settings: StackSettings, ui: str, login: str, web: bool) -> str:
    temporal = settings.temporal_address or f"{settings.host}:{settings.dev_port}  (TEMPORAL_DEV_PORT)"
    ui_port = "" if settings.temporal_address else "  (TEMPORAL_UI_PORT)"
    lines = [
        "",
        "[make run] ready.",
        f"  Temporal server:  {temporal}",
        f"  Temporal Web UI:  {ui}{ui_port}",
        f"  Providers ledger: {settings.providers_url}/reservations  (PROVIDERS_PORT)",
        f"  Worker metrics:   http://{settings.host}:{settings.metrics_port}/metrics  ({ENV_METRICS_PORT})",
    ]
    if web:
        lines.append(f"  Booking form:     {settings.web_url}  (WEB_PORT)")
    if login:
        lines.append(login)
    lines += [
        "  Book from the CLI: .venv/bin/python run_workflow.py --scenario flight-sold-out",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    stack = Stack()
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        settings = StackSettings.from_env(os.environ)
        web = (ROOT / "web" / "__main__.py").exists()
        busy = busy_port_message(settings, web=web)
        if busy:
            print(busy, file=sys.stderr)
            return 1
        env = settings.child_env(os.environ)
        if settings.temporal_address:
            print(f"[make run] using the Temporal server at {settings.temporal_address} (no dev server started)")
        else:
            (settings.data_dir / ".temporal").mkdir(parents=True, exist_ok=True)
            codec_endpoint = prepare_encryption(env, settings.web_url)
            cmd = dev_server_command(
                db=settings.data_dir / ".temporal" / "dev.db",
                host=settings.host,
                port=settings.dev_port,
                ui_port=settings.ui_port,
                codec_endpoint=codec_endpoint,
            )
            proc = stack.start("temporal dev server", cmd, env)
            wait_for_port(settings.host, settings.dev_port, proc)
        ledger = settings.data_dir / ".providers" / "ledger.db"
        proc = stack.start("providers", providers_command(ledger, port=settings.providers_port), env)
        wait_for_port(settings.host, settings.providers_port, proc)
        stack.start("worker", [sys.executable, "run_worker.py"], env)
        login = ""
        if web:
            from web.operators import ensure_demo_operator

            login = f"  Operator login:   {settings.web_url}/login ({ensure_demo_operator(ROOT / 'instance')})"
            proc = stack.start("web app", [sys.executable, "-m", "web", "--port", str(settings.web_port)], env)
            wait_for_port(settings.host, settings.web_port, proc)
        print(banner(settings, env.get(ENV_TEMPORAL_UI_URL, "your Temporal UI"), login, web), flush=True)
        while not stopping:
            for name, proc in stack.procs:
                if proc.poll() is not None:
                    print(f"[make run] {name} exited with {proc.returncode}; stopping the rest", file=sys.stderr)
                    return 1
            time.sleep(0.5)  # supervising children; signals interrupt this sleep
        return 0
    except (RuntimeError, FileNotFoundError, SettingsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
