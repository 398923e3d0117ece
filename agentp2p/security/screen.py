"""The checks every incoming message passes before it may be delivered.

One place that composes signature/sender verification
(:mod:`agentp2p.security.signing`) and replay protection
(:mod:`agentp2p.security.replay`), and counts every rejection by reason. The
messaging adapter hands :meth:`InboundScreen.check` to the session core as
its ``inspect`` hook, so each *new* message (never a retransmitted duplicate)
is checked exactly once, in order, before delivery.
"""

from __future__ import annotations

from libp2p.peer.id import ID

from agentp2p.pb.msg_pb2 import Envelope
from agentp2p.security.rejections import MessageRejected, RejectCounters, RejectReason
from agentp2p.security.replay import ReplayGuard
from agentp2p.security.signing import verify_envelope

__all__ = ["InboundScreen"]


class InboundScreen:
    def __init__(
        self,
        local_peer: ID | bytes,
        *,
        guard: ReplayGuard | None = None,
        counters: RejectCounters | None = None,
    ) -> None:
        self.local_peer = local_peer.to_bytes() if isinstance(local_peer, ID) else bytes(local_peer)
        self.guard = guard if guard is not None else ReplayGuard()
        self.counters = counters if counters is not None else RejectCounters()

    def check(self, env: Envelope, *, stream_peer: ID | bytes, now_ms: int) -> RejectReason | None:
        """None if ``env`` may be delivered; else the (counted) reason it may not."""
        try:
            verify_envelope(env, authenticated_peer=stream_peer, local_peer=self.local_peer)
        except MessageRejected as exc:
            reason = exc.reason
        else:
            # Only signed messages reach the guard: an unauthenticated id must
            # not be able to pre-empt the real message with the same id.
            reason = self.guard.check(env.sender, env.id, env.timestamp_ms, now_ms)
            if reason is None:
                return None
        self.counters.add(reason)
        return reason
