"""``make rollout``: a new build of the worker replaces the running one, step by step.

1. start a worker of the new build beside the old one (``run_worker.py`` with
   the new build id, detached, its log in a file this names);
2. wait until that version has pollers, then ramp it to ``--ramp`` percent of
   new bookings;
3. make it the deployment's current version: every new booking runs on it;
4. wait until ``describe-version`` reports the old build drained: no run is
   pinned to it any more (the bookings it started have closed);
5. stop the old worker.

Each step prints what it does and the exact ``temporal worker deployment ...``
command it runs, through the Temporal CLI, so the same lines can be typed (or
put in a deploy pipeline) against any cluster. It connects like the CLI does
(TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, the TLS variables,
TEMPORAL_PROFILE). Against ``make run``'s stack it finds the old worker in
``.temporal/workers.json``; elsewhere, pass ``--old-pid`` or stop it yourself.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from scripts.devstack import StackSettings
from wiring.local_stack import WORKERS_FILE, WorkerRecord, read_workers, stop_pid, write_workers
from wiring.settings import SettingsError, WorkerSettings
from wiring.versioning import (
    POLL_INTERVAL_S,
    BuildIdError,
    DeploymentCli,
    DeploymentCommandError,
    describe_version_command,
    resolve_build_id,
    shown,
    temporal_cli,
)

ROOT = Path(__file__).resolve().parent.parent


def say(line: str) -> None:
    print(f"[rollout] {line}", flush=True)


def run_cmd(line: str) -> None:
    print(f"  $ {line}", flush=True)


def pinned_count_command(deployment_name: str, build_id: str) -> list[str]:
    """How many runs are still open on a version (a visibility query)."""
    query = f'TemporalWorkerDeploymentVersion="{deployment_name}:{build_id}" AND ExecutionStatus="Running"'
    return ["temporal", "workflow", "count", "--query", query]


def open_runs(cli: DeploymentCli, deployment_name: str, build_id: str) -> int | None:
    """``temporal workflow count``'s answer, or ``None`` if it gave none (the progress line then omits it)."""
    try:
        found = cli.run(pinned_count_command(deployment_name, build_id), quiet=True)
    except DeploymentCommandError:
        return None
    return int(found.get("count", 0)) if isinstance(found, dict) else None


def start_worker(args: argparse.Namespace, log: Path) -> subprocess.Popen[bytes]:
    """``run_worker.py`` of the new build, in its own session: it outlives this script."""
    cmd = [
        sys.executable,
        "run_worker.py",
        "--build-id",
        args.build_id,
        "--deployment-name",
        args.deployment_name,
        "--task-queue",
        args.task_queue,
    ]
    if args.metrics_port:
        cmd += ["--metrics-port", str(args.metrics_port)]
    # The old worker keeps its metrics port; the new one serves only on --metrics-port.
    env = dict(os.environ, WORKER_METRICS_PORT="")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    run_cmd(shlex.join(["python", *cmd[1:]]) + f" >{log} 2>&1 &")
    return proc


def wait_drained(cli: DeploymentCli, deployment_name: str, build_id: str, timeout_s: float, every_s: float) -> bool:
    """Step 4: poll ``describe-version`` until the old build is drained; a progress line every ``every_s``."""
    started = time.monotonic()
    last_line = -every_s
    while True:
        status = cli.drainage_status(deployment_name, build_id)
        waited = time.monotonic() - started
        if status == "drained":
            say(f"build {build_id} is drained after {waited:.0f}s")
            return True
        if waited > timeout_s:
            return False
        if waited - last_line >= every_s:
            count = open_runs(cli, deployment_name, build_id)
            runs = "" if count is None else f", {count} run(s) still open on it"
            say(f"waiting for build {build_id} to drain: {status or 'not reported yet'}{runs} ({waited:.0f}s)")
            last_line = waited
        time.sleep(POLL_INTERVAL_S)  # asking a server; there is no event to wait on


def parse_args(worker: WorkerSettings, stack: StackSettings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Roll a new worker build out, step by step.")
    parser.add_argument(
        "--build-id",
        default=worker.booking_build_id,
        help="the new build's id (env BOOKING_BUILD_ID; default: the package version and the git commit)",
    )
    parser.add_argument("--deployment-name", default=worker.booking_deployment_name)
    parser.add_argument("--task-queue", default=worker.booking_task_queue)
    parser.add_argument("--ramp", type=float, default=25.0, help="percent of new bookings for step 2 (default 25)")
    parser.add_argument(
        "--ramp-seconds", type=float, default=10.0, help="how long to stay at the ramp before step 3 (default 10)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for the old build to drain before giving up, leaving both running (default 600)",
    )
    parser.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    parser.add_argument(
        "--old-pid", type=int, action="append", default=[], help="the old worker's pid (default: make run's record)"
    )
    parser.add_argument(
        "--workers-file",
        type=Path,
        default=stack.data_dir / WORKERS_FILE,
        help=f"where make run records its workers (default {WORKERS_FILE} in TRIP_DATA_DIR or the checkout)",
    )
    parser.add_argument("--log", type=Path, default=None, help="the new worker's log file")
    parser.add_argument("--metrics-port", type=int, default=0, help="the new worker's metrics port (default: none)")
    return parser.parse_args()


def start_new_build(cli: DeploymentCli, args: argparse.Namespace, old: str | None) -> None:
    """Steps 1 to 3."""
    name, new = args.deployment_name, args.build_id
    log = args.log or args.workers_file.parent / f"worker-{new}.log"
    say(f"1/5 starting a worker of build {new} beside the old one; its log: {log}")
    proc = start_worker(args, log)
    records = read_workers(args.workers_file)
    write_workers(args.workers_file, [*records, WorkerRecord(pid=proc.pid, build_id=new, log=str(log))])

    say(f"2/5 waiting for build {new} to poll, then ramping it to {args.ramp:g}% of new bookings")
    run_cmd(shown(describe_version_command(name, new)))
    cli.wait_for_pollers(name, new, [args.task_queue])
    if old is not None:
        cli.ramp(name, new, args.ramp)
        if args.ramp_seconds > 0:
            say(f"holding at {args.ramp:g}% for {args.ramp_seconds:g}s")
            time.sleep(args.ramp_seconds)  # the operator's watch window, not synchronisation
    else:
        say("no current version yet: nothing to ramp from")

    say(f"3/5 making build {new} current: every new booking runs on it")
    cli.make_current(name, new)


def rollout(args: argparse.Namespace) -> int:
    cli = DeploymentCli(echo=run_cmd)
    name, new = args.deployment_name, args.build_id
    old = cli.current_build_id(name)
    if old == new:
        # A rollout that stopped at step 4 (drain timeout) is finished by running it again.
        left = [r.build_id for r in read_workers(args.workers_file) if r.build_id != new]
        if not left:
            say(f"build {new} is already current in deployment {name!r}: nothing to roll out")
            return 2
        old = left[0]
        say(f"build {new} is already current; resuming at step 4 for the old build {old}")
    else:
        say(f"deployment {name!r}: current build {old or '(none)'} -> new build {new}")
        start_new_build(cli, args, old)
        if old is None:
            say("done: there was no old build to drain")
            return 0

    say(f"4/5 waiting until build {old} is drained (runs pinned to it finish on it)")
    run_cmd(shown(pinned_count_command(name, old)))
    if not wait_drained(cli, name, old, args.drain_timeout, args.progress_every):
        say(
            f"build {old} did not drain within {args.drain_timeout:g}s: both builds keep running. "
            "Run this again later to finish, or move the waiting runs (docs/deploying.md)"
        )
        return 3

    old_workers = [WorkerRecord(pid=pid, build_id=old) for pid in args.old_pid] or [
        r for r in read_workers(args.workers_file) if r.build_id == old
    ]
    say(f"5/5 stopping the old worker(s) of build {old}")
    write_workers(args.workers_file, [r for r in read_workers(args.workers_file) if r.build_id != old])
    if not old_workers:
        say(f"no worker of build {old} is recorded in {args.workers_file}: stop it yourself")
    for record in old_workers:
        run_cmd(f"kill -TERM {record.pid}")
        stop_pid(record.pid)
    serving = [str(r.pid) for r in read_workers(args.workers_file) if r.build_id == new]
    say(f"done: build {new} is current, served by pid {', '.join(serving) or '(not recorded)'}")
    return 0


def main() -> int:
    try:
        worker, stack = WorkerSettings.load(), StackSettings.load()
    except SettingsError as err:
        print(f"rollout: {err}", file=sys.stderr)
        return 2
    args = parse_args(worker, stack)
    try:
        args.build_id = resolve_build_id(args.build_id)
        temporal_cli()
        return rollout(args)
    except (BuildIdError, DeploymentCommandError, FileNotFoundError) as err:
        print(f"rollout: {err}", file=sys.stderr)
        return 2 if isinstance(err, BuildIdError) else 1


if __name__ == "__main__":
    sys.exit(main())
