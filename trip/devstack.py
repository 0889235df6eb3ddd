"""``make run``: the whole system in one foreground command.

Starts, in order, each as its own process: the Temporal dev server (unless
TEMPORAL_ADDRESS points elsewhere) with its Web UI and our search attributes,
the provider service, the worker, and the web app when it exists. Ctrl-C (or
any child dying) stops them all in reverse order.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from trip import DEFAULT_PROVIDERS_URL, ENV_PROVIDERS_URL, ENV_TEMPORAL_UI_URL, SEARCH_ATTRIBUTES
from trip.metrics import DEFAULT_METRICS_ADDRESS, ENV_METRICS_PORT
from trip.temporal import DEV_SERVER_FLAGS, temporal_cli_path

ROOT = Path(__file__).resolve().parent.parent
DEV_HOST, DEV_PORT, UI_PORT = "127.0.0.1", 7233, 8233


def dev_server_command(
    db: Path, *, host: str = DEV_HOST, port: int = DEV_PORT, ui_port: int = UI_PORT, codec_endpoint: str | None = None
) -> list[str]:
    cmd = [
        temporal_cli_path(),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db),
        "--log-level",
        "warn",
        *DEV_SERVER_FLAGS,
    ]
    for key in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{key.name}=Keyword"]
    if codec_endpoint:
        # The Web UI then decrypts input, results and failures through the web app.
        cmd += ["--ui-codec-endpoint", codec_endpoint]
    return cmd


def wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)  # polling a port we do not control; there is no event to wait on
    raise RuntimeError(f"nothing listened on {host}:{port} within {timeout:.0f}s")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def prepare_encryption(env: dict[str, str]) -> str | None:
    """Create the payload keys and the codec token on first run (instance/,
    git-ignored, 0600); return the codec endpoint for the dev server's Web UI."""
    from trip.codec import ENV_KEYS, ensure_key_file

    if ENV_KEYS not in env:
        path, created = ensure_key_file()
        if created:
            print(f"[make run] created the payload encryption keys in {path}", flush=True)
    if not (ROOT / "web" / "__main__.py").exists():
        return None
    from web.codec import codec_token

    # The dev server's UI can send neither a header nor a cookie to another
    # origin, so its endpoint carries the token (web.codec, README).
    return f"http://127.0.0.1:5000/codec/t/{codec_token(ROOT / 'instance')}"


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
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def main() -> int:
    env = dict(os.environ)
    stack = Stack()
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if "TEMPORAL_ADDRESS" in env:
            print(f"[make run] using the Temporal server at {env['TEMPORAL_ADDRESS']} (no dev server started)")
        else:
            if port_in_use(DEV_HOST, DEV_PORT):
                print(
                    f"error: {DEV_HOST}:{DEV_PORT} is taken. Stop that server, or set TEMPORAL_ADDRESS to use it.",
                    file=sys.stderr,
                )
                return 1
            (ROOT / ".temporal").mkdir(exist_ok=True)
            codec_endpoint = prepare_encryption(env)
            proc = stack.start(
                "temporal dev server",
                dev_server_command(ROOT / ".temporal" / "dev.db", codec_endpoint=codec_endpoint),
                env,
            )
            wait_for_port(DEV_HOST, DEV_PORT, proc)
            env["TEMPORAL_ADDRESS"] = f"{DEV_HOST}:{DEV_PORT}"
            env.setdefault(ENV_TEMPORAL_UI_URL, f"http://{DEV_HOST}:{UI_PORT}")
        env.setdefault(ENV_PROVIDERS_URL, DEFAULT_PROVIDERS_URL)
        proc = stack.start("providers", [sys.executable, "-m", "providers"], env)
        providers_port = int(env[ENV_PROVIDERS_URL].rsplit(":", 1)[1].split("/")[0])
        wait_for_port("127.0.0.1", providers_port, proc)
        # The worker's Prometheus endpoint: saga metrics and the SDK's own.
        env.setdefault(ENV_METRICS_PORT, DEFAULT_METRICS_ADDRESS.rsplit(":", 1)[1])
        stack.start("worker", [sys.executable, "run_worker.py"], env)
        web_app = ROOT / "web" / "__main__.py"
        login = ""
        if web_app.exists():
            from web.operators import ensure_demo_operator

            login = f"  Operator login:   http://127.0.0.1:5000/login ({ensure_demo_operator(ROOT / 'instance')})\n"
            proc = stack.start("web app", [sys.executable, "-m", "web"], env)
            wait_for_port("127.0.0.1", 5000, proc)
        ui = env.get(ENV_TEMPORAL_UI_URL, "your Temporal UI")
        print(
            "\n[make run] ready.\n"
            f"  Temporal Web UI:  {ui}\n"
            f"  Providers ledger: {env[ENV_PROVIDERS_URL]}/reservations\n"
            f"  Worker metrics:   http://127.0.0.1:{env[ENV_METRICS_PORT]}/metrics\n"
            + ("  Booking form:     http://127.0.0.1:5000\n" if web_app.exists() else "")
            + login
            + "  Book from the CLI: .venv/bin/python run_workflow.py --scenario flight-sold-out\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping:
            for name, proc in stack.procs:
                if proc.poll() is not None:
                    print(f"[make run] {name} exited with {proc.returncode}; stopping the rest", file=sys.stderr)
                    return 1
            time.sleep(0.5)  # supervising children; signals interrupt this sleep
        return 0
    except (RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
