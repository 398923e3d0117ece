"""The receiving half of a session: reorder buffer, dedup, ACK generation.

Per incoming session (the peer's outgoing session) we keep:

* ``delivered``: every seq up to it has been handed to the application (or
  skipped: rejected by the adapter's inspection, or abandoned by the sender). Anything at
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

**What one sender can make us hold is bounded across its sessions.** Every
message we keep (buffered out of order, or delivered and not yet consumed)
counts against ``max_held`` messages and ``max_held_bytes`` bytes of this
receiver, whatever session it came on, and the adapter (its node-wide
totals and resource manager) may refuse it too when it vets new messages. A
message that does not fit is dropped *unacknowledged*: the sender keeps it
and retransmits, so a full inbox is backpressure, never growth. In
particular a new Hello with a new session id does not grant a fresh window
on top of messages still undelivered: the window is the room left. When the
current session changes, the old one's out-of-order buffer is dropped (never
acknowledged cumulatively, so its sender still holds those messages and the
resume handshake has it resend them); a session is forgotten (beyond
``max_sessions``) only once nothing of it is held.

**A durable receiver** (``durable=True``: its adapter writes delivered
messages to an on-disk inbox) also acknowledges what it *stored*: the
adapter reports each committed write (:meth:`Receiver.persisted`) and the ACK
carries the stored frontier (``Ack.stored``), on which the sender forgets
those messages. So the sender's window no longer bounds what waits here for
the application; this receiver's bounds do, and a message refused because
they are full is reported (``Ack.inbox_refused``, exactly the seqs refused
since the last ACK, and ``Ack.inbox_full``, the lowest of them) so that its
sender fails it with a clear error rather than retransmitting it until its
deadline. Exactly: room may come back between two messages (the reader
acknowledged one), and a later message taken then must not be reported
refused with the earlier one, or its sender would fail a message that is
delivered. A refused seq taken from a later copy before the ACK is built
is no longer reported. Its reorder window counts from what was delivered, not
from what was consumed (a sender that forgot stored messages sends beyond
the consumed frontier; what is held stays bounded by ``max_held``).

New messages are taken in two steps, so that the adapter can vet them
without the receiver calling out: :meth:`Receiver.on_data` screens what it
can itself (duplicates, window, this sender's bounds) and returns the new
ones, already held; :meth:`Receiver.vetted` takes the adapter's verdicts and
buffers or delivers them. What the adapter must hear back (messages let go
of, notices) is left in ``released_*`` and ``notices`` for the session.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agentp2p.messaging.events import FORBIDDEN, INBOX_FULL
from agentp2p.pb.msg_pb2 import Ack, Data, Envelope, SeqRange

__all__ = ["InStream", "Receiver", "ReceiverStats"]

#: Bytes we count for an envelope besides its payload and variable strings.
ENVELOPE_BASE_COST = 192


def held_size(env: Envelope) -> int:
    """What holding ``env`` costs, for the inbox bounds (cheap, no re-encoding)."""
    return len(env.payload) + len(env.id) + len(env.type) + ENVELOPE_BASE_COST


@dataclass(slots=True)
class InStream:
    session_id: bytes
    delivered: int = 0
    #: Every seq up to it is in the adapter's durable inbox, or consumed, or skipped.
    stored: int = 0
    #: seq -> (envelope, held size), or None = rejected (skipped when reached)
    buffer: dict[int, tuple[Envelope, int] | None] = field(default_factory=dict)
    pending: deque[tuple[int, int]] = field(default_factory=deque)  # (seq, size): delivered, not consumed
    #: Seqs the policy refused, reported in every ACK until the sender's
    #: low_seq passes them (it has failed them): a lost ACK loses nothing.
    forbidden: set[int] = field(default_factory=set)

    @property
    def consumed(self) -> int:
        return self.pending[0][0] - 1 if self.pending else self.delivered

    @property
    def idle(self) -> bool:
        """Nothing of this session is held (it may be forgotten)."""
        return not self.pending and not self.buffer


@dataclass(slots=True)
class ReceiverStats:
    delivered: int = 0
    duplicates: int = 0
    out_of_window: int = 0
    rejected: int = 0
    foreign_session: int = 0
    malformed: int = 0
    skipped: int = 0
    #: refused because the inbox (this sender's share or the node's) was full
    inbox_full: int = 0
    #: Hellos that opened a session while max_sessions were already known
    session_churn: int = 0
    #: ACKs that told the sender its messages were refused for a full inbox (durable only)
    inbox_full_reported: int = 0
    #: refused by the authorization policy (also counted in rejected), and reported to the sender
    forbidden: int = 0


class Receiver:
    def __init__(
        self,
        *,
        window: int = 4096,
        auto_consume: bool = False,
        known: Mapping[bytes, int] | None = None,
        max_sessions: int = 4,
        max_sack_ranges: int = 32,
        max_held: int | None = None,
        max_held_bytes: int = 16 * 1024 * 1024,
        restored: Mapping[bytes, list[tuple[int, int]]] | None = None,
        durable: bool = False,
    ) -> None:
        """``known``: session -> consumed frontier (durable store). ``restored``:
        session -> [(seq, size)] delivered before a restart and not yet
        consumed (ascending); they count as held, as delivered and as stored
        (they come from the store), so their retransmissions are dropped as
        duplicates. ``durable``: acknowledge stored messages and report
        refusals for a full inbox (see the module docstring)."""
        self.window = window
        self.durable = durable
        #: Seqs of the current session refused for a full inbox since the last
        #: ACK and not taken since (bounded: seqs of the reorder window only).
        self.refused: set[int] = set()
        self.max_held = max_held if max_held is not None else window
        self.max_held_bytes = max_held_bytes
        self.held = 0
        self.held_bytes = 0
        #: What the adapter must hear (the session turns these into actions):
        #: held messages let go of since it last looked, and notices.
        self.released_messages = 0
        self.released_bytes = 0
        self.notices: list[str] = []
        self._vetting: tuple[InStream, list[tuple[Envelope, int]], bool] | None = None
        self.auto_consume = auto_consume
        self.max_sessions = max_sessions
        self.max_sack_ranges = max_sack_ranges
        self.stats = ReceiverStats()
        self.streams: OrderedDict[bytes, InStream] = OrderedDict()
        for sid, delivered in (known or {}).items():
            self.streams[sid] = InStream(sid, delivered)
        for sid, items in (restored or {}).items():
            st = self.streams.get(sid)
            if st is None:
                st = self.streams[sid] = InStream(sid, items[0][0] - 1 if items else 0)
            else:
                self.streams.move_to_end(sid)
            for seq, size in items:
                if seq <= st.consumed or (st.pending and seq <= st.pending[-1][0]):
                    continue
                st.pending.append((seq, size))
                st.delivered = max(st.delivered, seq)
                st.stored = max(st.stored, seq)
                self.held += 1
                self.held_bytes += size
        # The most recently used restored stream is our best guess for Hello.
        self.current: InStream | None = next(reversed(self.streams.values()), None)
        self.ack_pending = False
        self.ack_urgent = False  # gap or duplicate seen: the sender needs to know now
        self.unacked_consumed = 0

    # -------------------------------------------------------------- frames
    def on_hello(self, session_id: bytes, low_seq: int) -> list[Envelope]:
        if self._vetting is not None:
            raise RuntimeError("the previous frame's messages await their verdicts (vetted)")
        st = self.streams.get(session_id)
        if st is None:
            # No state for this session: start where the sender says it is.
            if len(self.streams) >= self.max_sessions:
                self.stats.session_churn += 1
                self.notices.append("session_churn")
            st = self.streams[session_id] = InStream(session_id, max(low_seq - 1, 0))
            self._forget_idle()
        else:
            self.streams.move_to_end(session_id)
        old = self.current
        if old is not None and old is not st and old.buffer:
            self._drop_buffer(old)
        if old is not st:
            self.refused.clear()  # refusals are reported for the current session only
        self.current = st
        self.ack_pending = True
        return self._forward(st, low_seq)

    def on_data(self, data: Data) -> tuple[list[Envelope], list[tuple[Envelope, int]]]:
        """A Data frame of the current session: returns (deliverable now, new messages to vet).

        Deliverable now: what the sender's ``low_seq`` releases. New: messages
        not seen before, in the window and within this sender's bounds, with
        their held size; they count as held from here on, and are buffered or
        delivered by :meth:`vetted` once the adapter has judged them.
        """
        if self._vetting is not None:
            raise RuntimeError("the previous frame's messages await their verdicts (vetted)")
        st = self.current
        if st is None or data.session_id != st.session_id:
            self.stats.foreign_session += 1
            return [], []
        deliver = self._forward(st, data.low_seq)
        fresh: list[tuple[Envelope, int]] = []
        seen: set[int] = set()  # this frame's new seqs: a copy later in the frame is a duplicate
        buffer = st.buffer
        stats = self.stats
        # Durable: the sender forgets stored messages, so it runs ahead of
        # what was consumed; the reorder window counts from what was delivered.
        limit = (st.delivered if self.durable else st.consumed) + self.window
        full = False
        for env in data.messages:
            seq = env.seq
            if env.session_id != st.session_id or seq == 0:
                stats.malformed += 1
                continue
            if seq <= st.delivered or seq in buffer or seq in seen:
                stats.duplicates += 1
                self.ack_urgent = True  # our ACK was probably lost
                continue
            if seq > limit:
                stats.out_of_window += 1
                continue
            size = held_size(env)
            if full or not self._hold(size):
                # No room: drop it unacknowledged; the sender keeps it and
                # retransmits (durable: the sender is told, and fails it).
                full = True
                stats.inbox_full += 1
                self._refuse(seq)
                continue
            seen.add(seq)
            fresh.append((env, size))
            self.refused.discard(seq)  # a later copy found room: no longer refused
        if data.messages:
            self.ack_pending = True
        self._vetting = (st, fresh, full)
        return deliver, fresh

    def vetted(self, verdicts: Sequence[str | None]) -> tuple[list[Envelope], list[tuple[Envelope, str]]]:
        """The verdicts on the last :meth:`on_data`'s new messages (see
        :class:`~.events.Inspected`): returns (to deliver in order, rejected with reason)."""
        vetting, self._vetting = self._vetting, None
        if vetting is None:
            return [], []
        st, fresh, full = vetting
        if len(verdicts) != len(fresh):
            raise ValueError(f"{len(verdicts)} verdicts for {len(fresh)} messages")
        deliver: list[Envelope] = []
        rejected: list[tuple[Envelope, str]] = []
        buffer = st.buffer
        stats = self.stats
        for (env, size), verdict in zip(fresh, verdicts):
            if verdict is not None:
                # Not kept; the adapter's accounting let go of it already.
                self.held -= 1
                self.held_bytes -= size
                if verdict == INBOX_FULL:
                    full = True
                    stats.inbox_full += 1
                    self._refuse(env.seq)
                    continue
                stats.rejected += 1
                rejected.append((env, verdict))
                if verdict == FORBIDDEN:
                    stats.forbidden += 1
                    st.forbidden.add(env.seq)
                    if len(st.forbidden) > self.window:  # a sender that never moves low_seq on
                        st.forbidden.discard(min(st.forbidden))
                    self.ack_pending = self.ack_urgent = True  # the sender's caller is waiting
            seq = env.seq
            if seq == st.delivered + 1 and not buffer:
                st.delivered = seq  # fast path: in order, nothing buffered
                if verdict is None:
                    self._hand_over(st, env, size, deliver)
            else:
                self.ack_urgent = True  # a gap: selective ACK it promptly
                buffer[seq] = (env, size) if verdict is None else None
                self._drain(st, deliver)
        if full:
            self.notices.append("inbox_full")
        return deliver, rejected

    # ------------------------------------------------------------ bounds
    def _refuse(self, seq: int) -> None:
        """``seq`` of the current session was refused for lack of room: a durable
        receiver tells the sender in its next ACK, which goes out at once."""
        if not self.durable:
            return
        self.refused.add(seq)
        self.ack_pending = self.ack_urgent = True

    def _hold(self, size: int) -> bool:
        """Room for one more message of ``size`` from this sender? (then it is held)"""
        if self.held >= self.max_held or (self.held and self.held_bytes + size > self.max_held_bytes):
            return False
        self.held += 1
        self.held_bytes += size
        return True

    def _release(self, size: int) -> None:
        """Stop holding a message the adapter counted too (it hears of it: ``released_*``)."""
        self.held -= 1
        self.held_bytes -= size
        self.released_messages += 1
        self.released_bytes += size

    def _drop_buffer(self, st: InStream) -> None:
        for item in st.buffer.values():
            if item is not None:
                self._release(item[1])
        st.buffer.clear()

    def _forget_idle(self) -> None:
        """Beyond max_sessions, forget the least recently used sessions that hold nothing."""
        excess = len(self.streams) - self.max_sessions
        if excess <= 0:
            return
        for sid in [sid for sid, st in self.streams.items() if st.idle and st is not self.current][:excess]:
            del self.streams[sid]

    def _hand_over(self, st: InStream, env: Envelope, size: int, deliver: list[Envelope]) -> None:
        deliver.append(env)
        self.stats.delivered += 1
        if self.auto_consume:
            self.unacked_consumed += 1
            self._release(size)
        else:
            st.pending.append((env.seq, size))

    def _drain(self, st: InStream, deliver: list[Envelope]) -> None:
        buffer = st.buffer
        while st.delivered + 1 in buffer:
            st.delivered += 1
            item = buffer.pop(st.delivered)
            if item is not None:
                self._hand_over(st, item[0], item[1], deliver)

    def _forward(self, st: InStream, low_seq: int) -> list[Envelope]:
        """The sender holds nothing below ``low_seq``: stop waiting for it."""
        deliver: list[Envelope] = []
        target = low_seq - 1
        if st.forbidden and min(st.forbidden) <= target:
            st.forbidden = {s for s in st.forbidden if s > target}  # the sender has failed those
        if target <= st.delivered:
            return deliver
        below = sorted(s for s in st.buffer if s <= target)
        self.stats.skipped += target - st.delivered - len(below)
        for seq in below:
            item = st.buffer.pop(seq)
            if item is not None:
                self._hand_over(st, item[0], item[1], deliver)
        st.delivered = target
        self._drain(st, deliver)
        self.ack_pending = True
        return deliver

    # --------------------------------------------------------- consumption
    def consume(self, session_id: bytes, seq: int) -> bool:
        """The application took ``seq``; True if that advanced the ACK point."""
        st = self.streams.get(session_id)
        if st is None or not st.pending or st.pending[0][0] != seq:
            return False
        _, size = st.pending.popleft()
        self._release(size)
        if st is not self.current and st.idle:
            self._forget_idle()
        self.unacked_consumed += 1
        self.ack_pending = True
        return True

    def persisted(self, session_id: bytes, seq: int) -> bool:
        """The adapter committed delivered messages of ``session_id`` up to ``seq``
        to its durable inbox; True if that advanced the stored frontier (an ACK is due)."""
        st = self.streams.get(session_id)
        if st is None or not self.durable:
            return False
        seq = min(seq, st.delivered)
        if seq <= st.stored:
            return False
        self.unacked_consumed += seq - st.stored  # counts towards ack_every like consumption
        st.stored = seq
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
        # Nothing at or above ``cap`` is acknowledged in this ACK: a refused
        # seq that does not fit in its forbidden ranges must not be covered
        # as handled (the sender would take it as delivered).
        cap = None
        reported: list[SeqRange] = []
        if st.forbidden:
            reported = _ranges(sorted(st.forbidden))[: self.max_sack_ranges]
            rest = [s for s in st.forbidden if s > reported[-1].end]
            if rest:
                cap = min(rest)
                self.ack_pending = True  # more to report once the sender moves on
        cum = st.consumed if cap is None else min(st.consumed, cap - 1)
        ranges: list[SeqRange] = []
        top = st.delivered if cap is None else min(st.delivered, cap - 1)
        if top > cum:
            ranges.append(SeqRange(start=cum + 1, end=top))
        if st.buffer:
            ranges += _ranges(sorted(s for s in st.buffer if cap is None or s < cap))
        ack = Ack(session_id=st.session_id, cumulative=cum, selective=ranges[: self.max_sack_ranges])
        ack.forbidden.extend(reported)
        if self.durable:
            # Above the stored frontier, seqs that were skipped (rejected,
            # abandoned) need no storing: with nothing pending above it, the
            # whole delivered prefix is accounted for.
            stored = st.stored if st.pending and st.pending[-1][0] > st.stored else st.delivered
            ack.stored = max(stored if cap is None else min(stored, cap - 1), cum)
            if self.refused:
                refused = _ranges(sorted(self.refused))[: self.max_sack_ranges]
                ack.inbox_full = refused[0].start
                ack.inbox_refused.extend(refused)
                self.refused.clear()  # beyond the ranges sent: retransmitted, refused (and reported) again
                self.stats.inbox_full_reported += 1
        return ack

    def state(self) -> dict[bytes, int]:
        """session_id -> consumed frontier, for the durable store."""
        return {sid: st.consumed for sid, st in self.streams.items()}


def _ranges(seqs: list[int]) -> list[SeqRange]:
    """Ascending distinct ``seqs`` (not empty) as ranges of consecutive ones."""
    ranges: list[SeqRange] = []
    start = end = seqs[0]
    for seq in seqs[1:]:
        if seq == end + 1:
            end = seq
            continue
        ranges.append(SeqRange(start=start, end=end))
        start = end = seq
    ranges.append(SeqRange(start=start, end=end))
    return ranges
