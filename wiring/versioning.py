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

import subprocess
import tomllib
from pathlib import Path

from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import WorkerDeploymentConfig

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
    """A versioned worker's options. Each workflow names its own behaviour in
    ``@workflow.defn``; the default here only catches one that forgets."""
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=deployment_name, build_id=build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )
