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
* **A restarted receiver never delivers twice.** ``mark_consumed`` records,
  in one transaction, the consumed frontier of the peer's session and the
  message id; the adapter calls it when it hands a message to the
  application, *before* the session acknowledges it (ACKs follow
  :class:`~.events.Consumed`). After a restart, ``received(peer)`` is the
  Session's ``received`` argument: everything at or below it is a duplicate.
  Trade-off chosen: exactly-once in order to the application iterator, with a
  message the application had taken but not finished at the instant of a
  crash not redelivered (at-most-once at that instant). Recent ids also seed
  the :class:`~agentp2p.security.replay.ReplayGuard`.

Deadlines are stored as wall-clock Unix ms (the session's clock is monotonic
and does not survive a restart); the adapter converts both ways.

WAL journal; ``synchronous=NORMAL`` survives process crashes (what restarts
are about), ``durable=True`` (FULL) also power loss, at a cost per commit.
Not thread-safe: use from one thread (the node's trio thread or one worker).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from agentp2p.pb.msg_pb2 import Envelope

__all__ = ["Outbox"]

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
"""


class Outbox:
    def __init__(self, path: str | Path, *, durable: bool = False, max_sessions_per_peer: int = 4) -> None:
        self.max_sessions_per_peer = max_sessions_per_peer
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each public
        # method is exactly one transaction.
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(_SCHEMA)

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
    def mark_consumed(self, peer: bytes, envs: Iterable[Envelope]) -> None:
        """Record that the application took ``envs`` (in order), atomically."""
        envs = list(envs)
        if not envs:
            return
        with self._tx() as db:
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
