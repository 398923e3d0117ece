"""One running node per identity file.

Two daemons on one identity are one peer ID in two places: peers' dials
land on either, both write the same API files. A node that loads its
identity from a file holds an exclusive ``flock`` on ``<identity>.lock``
for as long as it runs; a second one refuses to start. The kernel drops the
lock when the process dies, however it dies, so a stale lock file is
harmless and is never deleted (deleting it would race with the next owner).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from agentp2p.errors import IdentityError, IdentityInUseError


def lock_path(identity_path: Path) -> Path:
    return identity_path.with_name(identity_path.name + ".lock")


@contextlib.contextmanager
def identity_lock(identity_path: Path) -> Iterator[Path]:
    """Hold the identity's lock for the block; raise IdentityInUseError if taken."""
    path = lock_path(Path(identity_path).expanduser())
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise IdentityError(f"cannot open the identity lock {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
            raise IdentityInUseError(
                f"identity {identity_path} is in use by another running agentp2p node{holder}; "
                "stop it or give this one another --identity"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
