"""Secret files: the one way this project writes a key, a token or a password.

A secret file is created with mode 0600 from its first byte and appears under
its name only once it is whole: it is written to a temporary file in the same
folder (``mkstemp`` creates it 0600 whatever the umask), flushed to disk, and
then linked (or renamed) into place. A reader, even one in another process,
sees either no file or the complete secret, never an empty or half-written
one, and never a moment when it is readable by others.

When two processes start at once and both find no secret, both generate one,
but only the first link succeeds: the other process reads and uses the
winner's, so they agree. Never write a secret with ``open`` then ``chmod``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_secret(path: Path, text: str, *, replace: bool = False) -> bool:
    """Write ``text`` to ``path``, 0600 and atomically.

    ``replace=False`` never overwrites: if ``path`` exists (another process
    may just have created it), nothing changes and this returns False.
    ``replace=True`` swaps the whole file for the new one. Returns whether
    ``path`` now holds ``text``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, draft = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(draft, path)
        else:
            try:
                os.link(draft, path)  # fails if the name exists: the first process to link wins
            except FileExistsError:
                return False
        _fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(draft)


def read_or_create(path: Path, generate: Callable[[], str]) -> str:
    """The secret kept in ``path``; on first use, ``generate()`` one and keep it.

    Safe when several processes call it at once: they all return the same value.
    """
    try:
        return path.read_text()
    except FileNotFoundError:
        pass
    write_secret(path, generate())
    return path.read_text()


def _fsync_dir(folder: Path) -> None:
    """Make the new name itself survive a crash, not only the file's bytes."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
