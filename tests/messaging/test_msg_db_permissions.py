"""Finding 9 (issue #10): the messages database holds payloads; it and SQLite's
-wal/-shm side files must be private (0600) whatever the umask, including the
side files SQLite creates later, and files an older version left 0644."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentp2p.messaging.outbox import Outbox
from agentp2p.pb.msg_pb2 import Envelope


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: files come out 0644 unless we care
    try:
        yield
    finally:
        os.umask(old)


def _modes(db: Path) -> dict[str, int]:
    out = {}
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(db) + suffix)
        assert p.exists(), f"{p.name} missing (WAL mode should have created it)"
        out[p.name] = stat.S_IMODE(p.stat().st_mode)
    return out


def _write(box: Outbox) -> None:
    env = Envelope(id="a" * 32, sender=b"s", recipient=b"r", type="t", payload=b"secret", session_id=b"x" * 16, seq=1)
    sid, _, _ = box.outgoing(b"peer", b"x" * 16)
    assert sid == b"x" * 16
    box.add(b"peer", [(env, None)])
    box.add_inbox(b"peer", [env])


def test_new_database_and_side_files_are_0600(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "node.messages.db"
    with Outbox(db) as box:
        _write(box)  # the first writes: SQLite has -wal and -shm by now
        assert _modes(db) == {db.name: 0o600, f"{db.name}-wal": 0o600, f"{db.name}-shm": 0o600}


def test_side_files_created_after_a_checkpoint_are_0600(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "node.messages.db"
    with Outbox(db) as box:
        _write(box)
    # A clean close checkpoints and deletes -wal/-shm; the next open makes new ones.
    assert not Path(f"{db}-wal").exists()
    with Outbox(db) as box:
        _write(box)
        assert set(_modes(db).values()) == {0o600}


def test_files_left_world_readable_by_an_older_version_are_fixed(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "node.messages.db"
    with Outbox(db) as box:
        _write(box)
        for suffix in ("", "-wal", "-shm"):
            os.chmod(f"{db}{suffix}", 0o644)
        with Outbox(db) as second:  # what a restart with the new version sees
            assert set(_modes(db).values()) == {0o600}
            second.received(b"peer")
