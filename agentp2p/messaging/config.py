"""Knobs of the messaging adapter (the session core has its own, :class:`SessionConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agentp2p.messaging.session import SessionConfig

__all__ = ["MessagingConfig", "PROTOCOL_ID"]

PROTOCOL_ID = "/agentp2p/msg/1.0.0"


def stream_session_config() -> SessionConfig:
    """Session settings for a reliable, ordered libp2p stream (TCP + Noise + Yamux).

    On such a stream a frame is never lost while the stream lives, so a
    retransmission on the same stream is pure waste; losses happen only when
    the stream dies, and then the resume handshake resends. Yet the ACK
    round trip includes the receiver's queue (frames waiting to be read and
    verified), which under load grows faster than an RTO estimator follows:
    with the core's 0.2 s floor we measured whole windows retransmitted for
    nothing, doubling the receiver's work. So the RTO here is a slow safety
    net (5 s floor), not a loss detector.
    """
    return SessionConfig(initial_rto=5.0, min_rto=5.0, max_rto=60.0)


@dataclass(frozen=True, slots=True)
class MessagingConfig:
    """``[messaging]`` in the node's config (``AGENTP2P_MESSAGING__*``)."""

    #: SQLite file for the outbox, the inbox and dedup state; None keeps them
    #: in memory (messages accepted for sending then do not survive a restart).
    store: Path | None = None
    session: SessionConfig = field(default_factory=stream_session_config)
    #: Budget for one dial attempt (peerstore addresses, then a DHT lookup).
    dial_timeout: float = 10.0
    #: Redial backoff while unacknowledged messages wait: doubles from initial to max.
    #: A connection event for the peer cuts the wait short.
    redial_initial: float = 0.05
    redial_max: float = 2.0
    #: Bytes per stream.read(); py-libp2p reads are costly, so read big chunks.
    read_chunk_bytes: int = 65536
    #: Upper bound on one stream.write() (many frames joined): write coalescing.
    write_batch_bytes: int = 1024 * 1024
    #: Verify signatures of a batch of at least this many envelopes in a worker
    #: thread (PyNaCl releases the GIL); 0 = always inline in the trio thread.
    verify_thread_batch: int = 0
    #: Concurrent handler calls (request/response and typed handlers).
    max_handler_tasks: int = 64
    #: Deadline for sending a response back to a requester.
    reply_timeout: float = 30.0
    #: SQLite synchronous=FULL (survives power loss) instead of NORMAL (survives crashes).
    durable_sync: bool = False
    #: Messages held for all senders together (buffered, or delivered and not
    #: yet acknowledged by the application). Per sender: session.receive_window
    #: messages and session.receive_bytes bytes. Beyond either, incoming
    #: messages are dropped unacknowledged (their senders retransmit).
    inbox_max_messages: int = 65536
    #: Bytes held for all senders together (also reserved from the node's
    #: resource manager as service "messaging").
    inbox_max_bytes: int = 64 * 1024 * 1024
    #: Peers with incoming-message state at once; a stream from one more peer
    #: is refused unless an idle one (no stream, nothing held) can be forgotten.
    max_incoming_peers: int = 1024
