"""Our own incarnation across restarts (a small file next to the identity key).

Others may remember us — suspect, dead, left — at the incarnation we last
announced. A node that restarts at 0 is then "dead" until it hears so and
refutes (which needs the others to still remember it), and meanwhile old
rumours about its previous life outrank everything it says. So a node with an
identity file keeps its incarnation in ``<identity file>.swim-incarnation``
(decimal, mode 0600, replaced atomically) and restarts one above it: its very
first frame outranks whatever others remember.

Plain blocking file I/O: the adapter runs it in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .member import MAX_INCARNATION

SUFFIX = ".swim-incarnation"


def incarnation_path(identity_path: Path) -> Path:
    """Where the incarnation of the node with this identity file is kept."""
    p = identity_path.expanduser()
    return p.with_name(p.name + SUFFIX)


def load_incarnation(path: Path) -> int | None:
    """The stored incarnation, or None when there is none (or it is unreadable)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit() or len(text) > 20:
        return None
    value = int(text)
    return value if value < MAX_INCARNATION else None


def save_incarnation(path: Path, value: int) -> None:
    """Write ``value`` atomically (temp file, fsync, rename), mode 0600."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{value}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable too
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def restart_incarnation(stored: int | None) -> int:
    """Where to start: one above what we announced last time (0 without a record)."""
    if stored is None:
        return 0
    return min(stored + 1, MAX_INCARNATION - 1)
