"""``make run``: the whole system in one foreground command.

Starts, in order, each as its own process: the Temporal dev server (unless
TEMPORAL_ADDRESS points elsewhere) with its Web UI and our search attributes,
the provider service, the worker, and the web app when it exists. Ctrl-C (or
any child dying) stops them all in reverse order.

The worker polls as a Worker Deployment version (``wiring.versioning``); on
its own dev server, and only there, ``make run`` makes that version current
once the worker polls. It records its worker in ``.temporal/workers.json`` for
``make rollout`` (``scripts/rollout.py``), keeps running when a rollout
replaces that worker, and stops the rollout's worker too on Ctrl-C.

Every port comes from ``StackSettings`` (the environment) and nowhere else:
each service is told its port explicitly, the readiness checks wait on that
port, and the banner prints it, with the ``export`` lines that point the CLIs
in another terminal at this stack. A port that is already taken stops
``make run`` before anything starts, with one line naming it.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from trip import ENV_PROVIDERS_URL, ENV_TEMPORAL_UI_URL
from trip.callbacks import ENV_CALLBACK_URL, ENV_SECRETS_FILE, generate_secrets
from wiring.codec import ENV_KEY_FILE
from wiring.local_stack import (
    WORKERS_FILE,
    WorkerRecord,
    dev_server_command,
    is_running_worker,
    providers_command,
    read_workers,
    stop_pid,
    stop_process,
    wait_for_port,
    write_workers,
)
from wiring.metrics import DEFAULT_METRICS_ADDRESS, ENV_METRICS_PORT
from wiring.secrets import read_or_create
from wiring.settings import KeySettings, Port, Settings, SettingsError, WorkerSettings
from wiring.versioning import (
    BuildIdError,
    DeploymentCommandError,
    make_current_when_polled,
    resolve_build_id,
    set_current_command,
    shown,
)

ROOT = Path(__file__).resolve().parent.parent
DEV_HOST, DEV_PORT, UI_PORT = "127.0.0.1", 7233, 8233
PROVIDERS_PORT, WEB_PORT = 8001, 5000
#: What the CLIs read to reach this stack's codec server (the Temporal CLI's own names).
ENV_CODEC_ENDPOINT, ENV_CODEC_AUTH = "TEMPORAL_CODEC_ENDPOINT", "TEMPORAL_CODEC_AUTH"


class StackSettings(Settings):
    """``make run`` (``scripts/devstack.py``)

    Every address of the stack it starts; it passes them on to the services it starts.
    """

    #: Every service of the stack listens here.
    host: ClassVar[str] = DEV_HOST
    temporal_address: str | None = Field(
        None, description="Use this Temporal server: then make run starts no dev server."
    )
    temporal_dev_port: Port = Field(DEV_PORT, description="The dev server's gRPC port (ignored with TEMPORAL_ADDRESS).")
    temporal_ui_port: Port = Field(UI_PORT, description="The dev server's Web UI.")
    temporal_ui_url: str | None = Field(
        None, description="The Web UI the services link to. Unset: the dev server's, on TEMPORAL_UI_PORT."
    )
    providers_url: str | None = Field(
        None,
        description="The provider service's URL: make run serves it on 127.0.0.1, at this URL's port unless "
        "PROVIDERS_PORT is set.",
    )
    providers_port: Port = Field(
        PROVIDERS_PORT, description="The provider service's port. Unset: PROVIDERS_URL's port, else 8001."
    )
    web_port: Port = Field(WEB_PORT, description="The booking form (the web app).")
    worker_metrics_port: Port = Field(
        int(DEFAULT_METRICS_ADDRESS.rsplit(":", 1)[1]),
        description="The worker's Prometheus endpoint: saga metrics and the SDK's own.",
    )
    trip_data_dir: Path | None = Field(
        None,
        description="Where the dev server's history (`.temporal/`) and the providers' ledger (`.providers/`) "
        "are kept. Unset: the checkout.",
    )

    @model_validator(mode="before")
    @classmethod
    def _providers_port_from_url(cls, data: Any) -> Any:
        """Without PROVIDERS_PORT, the providers listen where PROVIDERS_URL says."""
        if not isinstance(data, dict) or not data.get("providers_url"):
            return data
        raw = data["providers_url"]
        url = urlsplit(raw)
        try:
            port = url.port
        except ValueError:
            raise ValueError(f"{ENV_PROVIDERS_URL}={raw!r} has no valid port") from None
        if data.get("providers_port"):
            return data
        if url.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"{ENV_PROVIDERS_URL}={raw!r}: make run serves the providers on 127.0.0.1")
        return {**data, "providers_port": port or PROVIDERS_PORT}

    @property
    def data_dir(self) -> Path:
        return self.trip_data_dir or ROOT

    @property
    def provider_service_url(self) -> str:
        return f"http://{self.host}:{self.providers_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    def ports(self, *, web: bool = True) -> list[tuple[int, str, str]]:
        """(port, variable, what) for every port this stack will listen on."""
        found = []
        if self.temporal_address is None:
            found += [
                (self.temporal_dev_port, "TEMPORAL_DEV_PORT", "the Temporal dev server"),
                (self.temporal_ui_port, "TEMPORAL_UI_PORT", "the Temporal Web UI"),
            ]
        found.append((self.providers_port, "PROVIDERS_PORT", "the provider service"))
        found.append((self.worker_metrics_port, ENV_METRICS_PORT, "the worker's metrics"))
        if web:
            found.append((self.web_port, "WEB_PORT", "the web app"))
        return found

    def child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The environment every service gets: the same ports, spelled once."""
        out = dict(env)
        out[ENV_PROVIDERS_URL] = self.provider_service_url
        out["PROVIDERS_PORT"] = str(self.providers_port)
        out["WEB_PORT"] = str(self.web_port)
        out[ENV_METRICS_PORT] = str(self.worker_metrics_port)
        if self.temporal_address is None:
            out["TEMPORAL_ADDRESS"] = f"{self.host}:{self.temporal_dev_port}"
            out[ENV_TEMPORAL_UI_URL] = self.temporal_ui_url or f"http://{self.host}:{self.temporal_ui_port}"
        return out


#: The providers' callback secrets, one per kind: generated once, 0600, shared
#: by the provider service (which signs) and the web app (which checks).
CALLBACK_SECRETS = Path(".temporal") / "callback_secrets.json"


def callback_env(settings: StackSettings) -> dict[str, str]:
    """Point the providers' confirmation callbacks at the web app, with the secrets both read."""
    path = settings.data_dir / CALLBACK_SECRETS
    read_or_create(path, generate_secrets)
    return {ENV_SECRETS_FILE: str(path), ENV_CALLBACK_URL: settings.web_url}


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


def prepare_encryption(web_url: str) -> str | None:
    """Create the payload keys and the codec token on first run (instance/,
    git-ignored, 0600); return the codec endpoint for the dev server's Web UI."""
    from wiring.codec import ensure_key_file

    if not KeySettings.load().booking_keys:
        path, created = ensure_key_file()
        if created:
            print(f"[make run] created the payload encryption keys in {path}", flush=True)
    if not (ROOT / "web" / "__main__.py").exists():
        return None
    from web.codec import codec_token

    # The dev server's UI can send neither a header nor a cookie to another
    # origin, so its endpoint carries the token (web.codec, docs/privacy.md);
    # dev_server_command keeps it off the command line.
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


def cli_exports(settings: StackSettings, env: Mapping[str, str], web: bool) -> list[str]:
    """The ``export`` lines that point the CLIs (``run_workflow.py``, ``run_operator.py``,
    the Temporal CLI, the README's curl lines) at this stack rather than the defaults."""
    values = {"TEMPORAL_ADDRESS": env["TEMPORAL_ADDRESS"]} if env.get("TEMPORAL_ADDRESS") else {}
    for name in ("TEMPORAL_NAMESPACE", ENV_TEMPORAL_UI_URL, ENV_PROVIDERS_URL, ENV_KEY_FILE):
        if env.get(name):
            values[name] = env[name]
    lines = [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    if web:
        lines.append(f"export {ENV_CODEC_ENDPOINT}={shlex.quote(settings.web_url + '/codec')}")
        # The token itself stays out of the terminal's scrollback: the line reads it where the web app does.
        token = (
            '"$CODEC_TOKEN"'
            if env.get("CODEC_TOKEN")
            else f'"$(cat {shlex.quote(str(ROOT / "instance" / "codec_token"))})"'
        )
        lines.append(f'export {ENV_CODEC_AUTH}="Bearer "{token}')
    return lines


def banner(settings: StackSettings, ui: str, login: str, web: bool, exports: list[str]) -> str:
    temporal = settings.temporal_address or f"{settings.host}:{settings.temporal_dev_port}  (TEMPORAL_DEV_PORT)"
    ui_port = "" if settings.temporal_address else "  (TEMPORAL_UI_PORT)"
    lines = [
        "",
        "[make run] ready.",
        f"  Temporal server:  {temporal}",
        f"  Temporal Web UI:  {ui}{ui_port}",
        f"  Providers ledger: {settings.provider_service_url}/reservations  (PROVIDERS_PORT)",
        f"  Worker metrics:   http://{settings.host}:{settings.worker_metrics_port}/metrics  ({ENV_METRICS_PORT})",
    ]
    if web:
        lines.append(f"  Booking form:     {settings.web_url}  (WEB_PORT)")
    if login:
        lines.append(login)
    lines += [
        "  For the CLIs in another terminal, first:",
        *(f"    {line}" for line in exports),
        "  Book from the CLI: .venv/bin/python run_workflow.py --scenario flight-sold-out",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def start_worker(stack: Stack, settings: StackSettings, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The worker, as one Worker Deployment version; made current here only on our own dev server.

    Its build id is resolved once, here, and handed to the worker, so the
    version made current is the one the worker polls as. A new commit is a
    new build id: the next ``make run`` makes it current, and runs pinned to
    the old build wait for a worker of that build (docs/deploying.md).
    """
    worker = WorkerSettings.load()
    build_id = resolve_build_id(worker.booking_build_id) if worker.booking_worker_versioning else None
    if build_id is not None:
        env["BOOKING_BUILD_ID"] = build_id
    proc = stack.start("worker", [sys.executable, "run_worker.py"], env)
    write_workers(settings.data_dir / WORKERS_FILE, [WorkerRecord(pid=proc.pid, build_id=build_id or "")])
    if build_id is None:
        return proc
    name = worker.booking_deployment_name
    if settings.temporal_address is not None:
        print(
            f"[make run] build {build_id} of deployment {name!r} gets no bookings until a deploy step makes it "
            f"current: {shown(set_current_command(name, build_id))}",
            flush=True,
        )
        return proc
    print(f"[make run] making build {build_id} current in deployment {name!r} (on the dev stack only)", flush=True)
    make_current_when_polled(
        name,
        build_id,
        task_queues=[worker.booking_task_queue],
        env=env,
        echo=lambda line: print(f"[make run]   $ {line}", flush=True),
    )
    return proc


def rollout_workers(settings: StackSettings, stack: Stack) -> list[WorkerRecord]:
    """The running workers ``make rollout`` started (recorded beside ours)."""
    ours = {proc.pid for _, proc in stack.procs}
    return [r for r in read_workers(settings.data_dir / WORKERS_FILE) if r.pid not in ours and is_running_worker(r.pid)]


def main() -> int:
    stack = Stack()
    settings: StackSettings | None = None
    handed_over = False
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        settings = StackSettings.load()
        web = (ROOT / "web" / "__main__.py").exists()
        busy = busy_port_message(settings, web=web)
        if busy:
            print(busy, file=sys.stderr)
            return 1
        env = settings.child_env(os.environ)
        env.update(callback_env(settings))
        if settings.temporal_address:
            print(f"[make run] using the Temporal server at {settings.temporal_address} (no dev server started)")
        else:
            (settings.data_dir / ".temporal").mkdir(parents=True, exist_ok=True)
            codec_endpoint = prepare_encryption(settings.web_url)
            cmd = dev_server_command(
                db=settings.data_dir / ".temporal" / "dev.db",
                host=settings.host,
                port=settings.temporal_dev_port,
                ui_port=settings.temporal_ui_port,
                codec_endpoint=codec_endpoint,
                codec_env_file=ROOT / "instance" / "dev-server-ui.yaml",
            )
            proc = stack.start("temporal dev server", cmd, env)
            wait_for_port(settings.host, settings.temporal_dev_port, proc)
        ledger = settings.data_dir / ".providers" / "ledger.db"
        proc = stack.start("providers", providers_command(ledger, port=settings.providers_port), env)
        wait_for_port(settings.host, settings.providers_port, proc)
        start_worker(stack, settings, env)
        login = ""
        if web:
            from web.operators import ensure_demo_operator

            login = f"  Operator login:   {settings.web_url}/login ({ensure_demo_operator(ROOT / 'instance')})"
            proc = stack.start("web app", [sys.executable, "-m", "web", "--port", str(settings.web_port)], env)
            wait_for_port(settings.host, settings.web_port, proc)
        ui = env.get(ENV_TEMPORAL_UI_URL, "your Temporal UI")
        print(banner(settings, ui, login, web, cli_exports(settings, env, web)), flush=True)
        while not stopping:
            for name, proc in stack.procs:
                if proc.poll() is None:
                    continue
                if name == "worker" and (others := rollout_workers(settings, stack)):
                    # `make rollout` stopped it after its new build took over.
                    if not handed_over:
                        pids = ", ".join(f"{r.pid} (build {r.build_id})" for r in others)
                        print(f"[make run] the worker was replaced by make rollout's: pid {pids}", flush=True)
                        handed_over = True
                    continue
                print(f"[make run] {name} exited with {proc.returncode}; stopping the rest", file=sys.stderr)
                return 1
            time.sleep(0.5)  # supervising children; signals interrupt this sleep
        return 0
    except BuildIdError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, FileNotFoundError, SettingsError, DeploymentCommandError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if settings is not None:
            for record in rollout_workers(settings, stack):
                print(f"[make run] stopping the worker of build {record.build_id} (pid {record.pid})", flush=True)
                stop_pid(record.pid)
            (settings.data_dir / WORKERS_FILE).unlink(missing_ok=True)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
