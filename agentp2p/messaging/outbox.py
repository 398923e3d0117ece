"""Durable messaging state in SQLite: the outbox and what we consumed.

Optional (a node without a data directory keeps everything in memory), but
with it:

* **A restarted sender resends.** ``add`` stores an envelope (already signed,
  with its session and seq) and advances the stored ``next_seq`` of our
  session in one transaction; the adapter calls it for each
  :class:`~.events.Accepted` *before* ``send`` returns, so an accepted message
  survives a crash. Rows leave on :class:`~.events.Acked` /
  :class:`~.events.Failed`. After a restart, ``outgoing(peer)`` gives the same
  session id, its next seq and the unacked envelopes, which
  :class:`~.session.Session` takes as ``session_id``/``next_seq``/``pending``.
  Reusing the session id matters: the peer then resumes where it was and
  drops what it already delivered.
* **A restarted receiver resumes after what its application acknowledged.**
  ``mark_consumed`` records, in one transaction, the consumed frontier of
  the peer's session and the message id; the adapter calls it when the
  application *acknowledges* a message, *before* the session acknowledges it
  to the sender (ACKs follow :class:`~.events.Consumed`). After a restart,
  ``received(peer)`` is the Session's ``received`` argument: everything at
  or below it is a duplicate. Recent ids also seed the
  :class:`~agentp2p.security.replay.ReplayGuard`.

Deadlines are stored as wall-clock Unix ms (the session's clock is monotonic
and does not survive a restart); the adapter converts both ways.

* **A restarted receiver redelivers what its reader had not acknowledged.**
  ``add_inbox`` stores each delivered envelope (as received: signed, sealed
  if it was) *before* the message is handed to any reader; ``mark_consumed``
  deletes it in the same transaction that records consumption, which
  happens when the reader acknowledges. After a restart ``inbox(peer)``
  gives them back (redelivered, same ids: at-least-once), and their seqs
  count as delivered so the sender's retransmissions are dropped.

Files are private: the database, ``-wal`` and ``-shm`` are 0600 (they hold
message payloads). The database file is created 0600 before SQLite opens
it, and SQLite creates ``-wal``/``-shm`` with the database's mode; files
left by an older version are chmod-ed on open.

WAL journal; ``synchronous=NORMAL`` survives process crashes (what restarts
are about), ``durable=True`` (FULL) also power loss, at a cost per commit.
Not thread-safe: use from one thread (the node's trio thread or one worker).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterable
from pathlib import Path

from agentp2p.pb.msg_pb2 import Envelope

__all__ = ["Outbox", "PRIVATE_MODE", "make_private"]

PRIVATE_MODE = 0o600
_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_private(path: str | Path) -> None:
    """Create ``path`` (if missing) and its SQLite side files' modes as 0600.

    SQLite gives ``-wal``/``-shm`` the mode of the database file when it
    creates them, so a 0600 database is enough for files created later;
    side files that already exist (older versions made them 0644) are fixed.
    """
    path = str(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != PRIVATE_MODE:
            os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)
    for suffix in _SIDE_FILES:
        side = path + suffix
        try:
            if stat.S_IMODE(os.stat(side).st_mode) != PRIVATE_MODE:
                os.chmod(side, PRIVATE_MODE)
        except FileNotFoundError:
            pass

_SCHEMA = """
CREATE TABLE IF NOT EXISTS out_session (
    peer BLOB PRIMARY KEY,
    session_id BLOB NOT NULL,
    next_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    peer BLOB NOT NULL,
    seq INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    deadline_ms INTEGER,
    PRIMARY KEY (peer, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS in_session (
    peer BLOB NOT NULL,
    session_id BLOB NOT NULL,
    consumed INTEGER NOT NULL,
    touched INTEGER NOT NULL,
    PRIMARY KEY (peer, session_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen_ids (
    peer BLOB NOT NULL,
    msg_id TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (peer, msg_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_ids_age ON seen_ids (timestamp_ms);
CREATE TABLE IF NOT EXISTS inbox (
    peer BLOB NOT NULL,
    session_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    PRIMARY KEY (peer, session_id, seq)
) WITHOUT ROWID;
"""


class Outbox:
    def __init__(self, path: str | Path, *, durable: bool = False, max_sessions_per_peer: int = 4) -> None:
        self.max_sessions_per_peer = max_sessions_per_peer
        self.path = str(path)
        make_private(self.path)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each public
        # method is exactly one transaction.
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        make_private(self.path)  # -wal/-shm exist now: check them

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    # -------------------------------------------------------------- sending
    def outgoing(self, peer: bytes, new_session_id: bytes) -> tuple[bytes, int, list[tuple[Envelope, int | None]]]:
        """(session_id, next_seq, unacked envelopes with deadlines) for ``peer``.

        Creates the session with ``new_session_id`` if none is stored yet.
        """
        with self._tx() as db:
            row = db.execute("SELECT session_id, next_seq FROM out_session WHERE peer=?", (peer,)).fetchone()
            if row is None:
                db.execute("INSERT INTO out_session VALUES (?, ?, 1)", (peer, new_session_id))
                return new_session_id, 1, []
            rows = db.execute(
                "SELECT envelope, deadline_ms FROM outbox WHERE peer=? ORDER BY seq", (peer,)
            ).fetchall()
        return bytes(row[0]), row[1], [(Envelope.FromString(e), d) for e, d in rows]

    def add(self, peer: bytes, items: Iterable[tuple[Envelope, int | None]]) -> None:
        """Store accepted envelopes (one transaction, however many)."""
        items = list(items)
        if not items:
            return
        sessions = {env.session_id for env, _ in items}
        if len(sessions) != 1:
            raise ValueError("one add() call takes envelopes of one session")
        rows = [(peer, env.seq, env.SerializeToString(), dl) for env, dl in items]
        top = max(r[1] for r in rows)
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?)", rows)
            cur = db.execute(
                "UPDATE out_session SET next_seq = max(next_seq, ?) WHERE peer=? AND session_id=?",
                (top + 1, peer, sessions.pop()),
            )
            if cur.rowcount != 1:
                raise ValueError("envelopes do not belong to the stored session; call outgoing() first")

    def remove(self, peer: bytes, seqs: Iterable[int]) -> None:
        """Forget acked or failed envelopes."""
        with self._tx() as db:
            db.executemany("DELETE FROM outbox WHERE peer=? AND seq=?", [(peer, s) for s in seqs])

    def peers_with_pending(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.execute("SELECT DISTINCT peer FROM outbox")]

    # ------------------------------------------------------------ receiving
    def add_inbox(self, peer: bytes, envs: Iterable[Envelope]) -> None:
        """Keep delivered envelopes until consumed (one transaction)."""
        rows = [(peer, env.session_id, env.seq, env.SerializeToString()) for env in envs]
        if not rows:
            return
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO inbox VALUES (?, ?, ?, ?)", rows)

    def inbox(self, peer: bytes) -> dict[bytes, list[Envelope]]:
        """Delivered, unconsumed envelopes of ``peer``: session id -> envelopes by seq."""
        out: dict[bytes, list[Envelope]] = {}
        for sid, raw in self._db.execute(
            "SELECT session_id, envelope FROM inbox WHERE peer=? ORDER BY session_id, seq", (peer,)
        ):
            out.setdefault(bytes(sid), []).append(Envelope.FromString(raw))
        return out

    def peers_with_inbox(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.execute("SELECT DISTINCT peer FROM inbox")]

    def mark_consumed(self, peer: bytes, envs: Iterable[Envelope]) -> None:
        """Record that the application took ``envs`` (in order), atomically;
        they leave the inbox in the same transaction."""
        envs = list(envs)
        if not envs:
            return
        with self._tx() as db:
            db.executemany(
                "DELETE FROM inbox WHERE peer=? AND session_id=? AND seq=?",
                [(peer, env.session_id, env.seq) for env in envs],
            )
            (touched,) = db.execute(
                "SELECT coalesce(max(touched), 0) + 1 FROM in_session WHERE peer=?", (peer,)
            ).fetchone()
            for env in envs:
                db.execute(
                    "INSERT INTO in_session VALUES (?, ?, ?, ?) ON CONFLICT (peer, session_id) DO UPDATE "
                    "SET consumed = max(consumed, excluded.consumed), touched = excluded.touched",
                    (peer, env.session_id, env.seq, touched),
                )
            db.executemany(
                "INSERT OR IGNORE INTO seen_ids VALUES (?, ?, ?)",
                [(peer, env.id, env.timestamp_ms) for env in envs],
            )
            db.execute(
                "DELETE FROM in_session WHERE peer=? AND session_id NOT IN "
                "(SELECT session_id FROM in_session WHERE peer=? ORDER BY touched DESC LIMIT ?)",
                (peer, peer, self.max_sessions_per_peer),
            )

    def received(self, peer: bytes) -> dict[bytes, int]:
        """Peer session id -> consumed frontier, least recently used first."""
        rows = self._db.execute(
            "SELECT session_id, consumed FROM in_session WHERE peer=? ORDER BY touched", (peer,)
        ).fetchall()
        return {bytes(sid): consumed for sid, consumed in rows}

    def recent_ids(self, since_ms: int) -> list[tuple[bytes, str, int]]:
        """(sender, id, timestamp_ms) of messages consumed since ``since_ms``, to seed the replay guard."""
        rows = self._db.execute(
            "SELECT peer, msg_id, timestamp_ms FROM seen_ids WHERE timestamp_ms >= ? ORDER BY timestamp_ms",
            (since_ms,),
        ).fetchall()
        return [(bytes(p), i, t) for p, i, t in rows]

    def prune_ids(self, before_ms: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM seen_ids WHERE timestamp_ms < ?", (before_ms,))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
