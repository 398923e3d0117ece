"""The receiving half of a session: reorder buffer, dedup, ACK generation.

Per incoming session (the peer's outgoing session) we keep:

* ``delivered``: every seq up to it has been handed to the application (or
  skipped: rejected by ``inspect``, or abandoned by the sender). Anything at
  or below it is a duplicate and dropped, which is what makes delivery
  exactly-once across retransmissions and reconnects.
* a reorder buffer of seqs above ``delivered``, bounded by the receive window
  (seqs beyond ``consumed + window`` are dropped unacked; the sender keeps
  and resends them);
* ``pending``: seqs delivered but not yet consumed by the application. The
  cumulative ACK is the *consumed* frontier, so an ACK means "the application
  took it", and a restart (with consumption persisted) never loses a message
  that was acknowledged.

Several incoming sessions may be remembered (a peer that restarts without a
durable outbox starts a new one); the peer's Hello says which is current.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agentp2p.pb.msg_pb2 import Ack, Data, Envelope, SeqRange

__all__ = ["InStream", "Receiver", "ReceiverStats"]

Inspect = Callable[[Envelope], "str | None"]


@dataclass(slots=True)
class InStream:
    session_id: bytes
    delivered: int = 0
    buffer: dict[int, Envelope | None] = field(default_factory=dict)  # None = rejected
    pending: deque[int] = field(default_factory=deque)  # delivered, not consumed

    @property
    def consumed(self) -> int:
        return self.pending[0] - 1 if self.pending else self.delivered


@dataclass(slots=True)
class ReceiverStats:
    delivered: int = 0
    duplicates: int = 0
    out_of_window: int = 0
    rejected: int = 0
    foreign_session: int = 0
    malformed: int = 0
    skipped: int = 0


class Receiver:
    def __init__(
        self,
        *,
        window: int = 4096,
        auto_consume: bool = False,
        inspect: Inspect | None = None,
        known: Mapping[bytes, int] | None = None,
        max_sessions: int = 4,
        max_sack_ranges: int = 32,
    ) -> None:
        self.window = window
        self.auto_consume = auto_consume
        self.inspect = inspect
        self.max_sessions = max_sessions
        self.max_sack_ranges = max_sack_ranges
        self.stats = ReceiverStats()
        self.streams: OrderedDict[bytes, InStream] = OrderedDict()
        for sid, delivered in (known or {}).items():
            self.streams[sid] = InStream(sid, delivered)
        # The most recently used restored stream is our best guess for Hello.
        self.current: InStream | None = next(reversed(self.streams.values()), None)
        self.ack_pending = False
        self.ack_urgent = False  # gap or duplicate seen: the sender needs to know now
        self.unacked_consumed = 0

    # -------------------------------------------------------------- frames
    def on_hello(self, session_id: bytes, low_seq: int) -> list[Envelope]:
        st = self.streams.get(session_id)
        if st is None:
            # No state for this session: start where the sender says it is.
            st = self.streams[session_id] = InStream(session_id, max(low_seq - 1, 0))
            while len(self.streams) > self.max_sessions:
                self.streams.popitem(last=False)
        else:
            self.streams.move_to_end(session_id)
        self.current = st
        self.ack_pending = True
        return self._forward(st, low_seq)

    def on_data(self, data: Data) -> tuple[list[Envelope], list[tuple[Envelope, str]]]:
        """Returns (to deliver in order, rejected with reason)."""
        st = self.current
        if st is None or data.session_id != st.session_id:
            self.stats.foreign_session += 1
            return [], []
        deliver = self._forward(st, data.low_seq)
        rejected: list[tuple[Envelope, str]] = []
        buffer = st.buffer
        stats = self.stats
        limit = st.consumed + self.window
        for env in data.messages:
            seq = env.seq
            if env.session_id != st.session_id or seq == 0:
                stats.malformed += 1
                continue
            if seq <= st.delivered or seq in buffer:
                stats.duplicates += 1
                self.ack_urgent = True  # our ACK was probably lost
                continue
            if seq > limit:
                stats.out_of_window += 1
                continue
            reason = self.inspect(env) if self.inspect is not None else None
            if reason is not None:
                stats.rejected += 1
                rejected.append((env, reason))
            if seq == st.delivered + 1 and not buffer:
                st.delivered = seq  # fast path: in order, nothing buffered
                if reason is None:
                    self._hand_over(st, env, deliver)
            else:
                self.ack_urgent = True  # a gap: selective ACK it promptly
                buffer[seq] = env if reason is None else None
                self._drain(st, deliver)
        if data.messages:
            self.ack_pending = True
        return deliver, rejected

    def _hand_over(self, st: InStream, env: Envelope, deliver: list[Envelope]) -> None:
        deliver.append(env)
        self.stats.delivered += 1
        if self.auto_consume:
            self.unacked_consumed += 1
        else:
            st.pending.append(env.seq)

    def _drain(self, st: InStream, deliver: list[Envelope]) -> None:
        buffer = st.buffer
        while st.delivered + 1 in buffer:
            st.delivered += 1
            env = buffer.pop(st.delivered)
            if env is not None:
                self._hand_over(st, env, deliver)

    def _forward(self, st: InStream, low_seq: int) -> list[Envelope]:
        """The sender holds nothing below ``low_seq``: stop waiting for it."""
        deliver: list[Envelope] = []
        target = low_seq - 1
        if target <= st.delivered:
            return deliver
        below = sorted(s for s in st.buffer if s <= target)
        self.stats.skipped += target - st.delivered - len(below)
        for seq in below:
            env = st.buffer.pop(seq)
            if env is not None:
                self._hand_over(st, env, deliver)
        st.delivered = target
        self._drain(st, deliver)
        self.ack_pending = True
        return deliver

    # --------------------------------------------------------- consumption
    def consume(self, session_id: bytes, seq: int) -> bool:
        """The application took ``seq``; True if that advanced the ACK point."""
        st = self.streams.get(session_id)
        if st is None or not st.pending or st.pending[0] != seq:
            return False
        st.pending.popleft()
        self.unacked_consumed += 1
        self.ack_pending = True
        return True

    # ---------------------------------------------------------------- acks
    def build_ack(self) -> Ack | None:
        """The ACK for the current session (cumulative + selective); resets ACK state."""
        st = self.current
        self.ack_pending = self.ack_urgent = False
        self.unacked_consumed = 0
        if st is None:
            return None
        cum = st.consumed
        ranges: list[SeqRange] = []
        if st.delivered > cum:
            ranges.append(SeqRange(start=cum + 1, end=st.delivered))
        if st.buffer:
            start = end = -1
            for seq in sorted(st.buffer):
                if seq == end + 1:
                    end = seq
                    continue
                if start >= 0:
                    ranges.append(SeqRange(start=start, end=end))
                start = end = seq
            ranges.append(SeqRange(start=start, end=end))
        return Ack(session_id=st.session_id, cumulative=cum, selective=ranges[: self.max_sack_ranges])

    def state(self) -> dict[bytes, int]:
        """session_id -> consumed frontier, for the durable store."""
        return {sid: st.consumed for sid, st in self.streams.items()}
