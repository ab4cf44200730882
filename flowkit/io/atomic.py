"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every output that a killed run could leave half-written (checkpoints, score files, interval
CSVs, metrics) goes through :func:`atomic_write`, in flowkit and spotnet alike.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from flowkit.errors import FlowkitError

__all__ = ["atomic_write", "check_writable"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, not after an hour of work, when ``path`` cannot be written.

    A missing folder is created, with its parents, as every command does for its outputs
    (``flowkit extract``'s store, ``spotnet train --out``).

    Raises:
        FlowkitError: its folder cannot be created or is not writable, or ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise FlowkitError(f"output file should be a file path, got {path}, which is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlowkitError(f"output file's folder {path.parent} should be creatable, got {exc.strerror or exc}") \
            from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise FlowkitError(f"output file should be writable, got {path}, which this user cannot write")


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    The temporary name is unique (several writers never share it) and the file gets the
    permissions a plain ``open`` would give (0666 minus the umask), not mkstemp's 0600. On any
    exception, Ctrl-C included, the temporary file is removed and ``path`` is left untouched.

    Args:
        path: the file to (re)place; its folder must exist.
        mode: "wb" or "w".
        encoding: text encoding for mode "w" (newlines are written as given).

    >>> import pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_write(target, "w", encoding="utf-8") as f:
    ...     _ = f.write("done")
    >>> target.read_text()
    'done'
    """
    if mode not in ("w", "wb"):
        raise FlowkitError(f"atomic_write mode should be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({"encoding": encoding, "newline": ""} if mode == "w" else {})) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
