"""Secret files (wiring.secrets): 0600 from the first byte, never seen half
written, and one value when several processes create it at once."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import secrets
from multiprocessing.synchronize import Barrier
from pathlib import Path
from queue import Queue

import pytest

from wiring.secrets import read_or_create, write_secret

#: Big enough that a file written in place would be seen empty or cut short.
SECRET_CHARS = 2 * 1024 * 1024


def big_secret() -> str:
    return secrets.token_hex(SECRET_CHARS // 2)


def digest(text: str) -> str:
    return f"{len(text)}:{hashlib.sha256(text.encode()).hexdigest()}"


def create(path: Path, barrier: Barrier, results: Queue[tuple[str, str]]) -> None:
    barrier.wait()
    results.put(("created", digest(read_or_create(path, big_secret))))


def watch(path: Path, barrier: Barrier, results: Queue[tuple[str, str]]) -> None:
    """Read the file the moment its name appears, as a process starting up would."""
    barrier.wait()
    while True:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        results.put(("read", digest(text)))
        return


@pytest.fixture
def open_umask() -> object:
    old = os.umask(0)  # the most permissive umask: only the helper's own mode protects the file
    yield
    os.umask(old)


def test_a_new_secret_is_0600_whatever_the_umask(tmp_path: Path, open_umask: object) -> None:
    path = tmp_path / "instance" / "token"
    assert read_or_create(path, lambda: "s3cret") == "s3cret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["token"], "the draft must not be left behind"


def test_an_existing_secret_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "token"
    assert write_secret(path, "first")
    assert not write_secret(path, "second")
    assert read_or_create(path, lambda: "third") == "first"


def test_replacing_a_readable_file_leaves_it_0600(tmp_path: Path, open_umask: object) -> None:
    path = tmp_path / "operators.toml"
    path.write_text("old")
    path.chmod(0o644)
    assert write_secret(path, "new", replace=True)
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o600


def test_processes_starting_at_once_agree_and_never_see_half_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    creators, watchers = 4, 4
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(creators + watchers)
    results = ctx.Queue()
    procs = [ctx.Process(target=create, args=(path, barrier, results)) for _ in range(creators)]
    procs += [ctx.Process(target=watch, args=(path, barrier, results)) for _ in range(watchers)]
    for proc in procs:
        proc.start()
    seen = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    on_disk = digest(path.read_text())
    assert on_disk.startswith(f"{SECRET_CHARS}:")
    # Every creator uses the one secret that won, and every reader saw it whole.
    assert seen and all(value == on_disk for _, value in seen), seen
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]
