"""The sending half of a session: sequence numbers, unacked buffer, retransmission.

Every accepted message gets the next seq of our outgoing session and stays
here until the peer cumulatively acknowledges it (or its deadline passes).
Loss is detected two ways:

* **ACK-based** (RACK, RFC 8985, with a SACK-style count): transmissions are
  numbered; when the peer acknowledges (cumulatively or selectively) a
  transmission made ``dupthresh`` or more transmissions, and a quarter RTT,
  after one still unacknowledged, that one is deemed lost and retransmitted
  at once, without waiting a timeout.
* **Timeout**: the oldest transmission still unacknowledged after one RTO
  (RFC 6298 with Karn's rule, :mod:`.rtt`) is lost, as is everything sent at
  the same time; the RTO doubles until a fresh RTT sample arrives.

Selectively acked messages are never retransmitted on a live connection, but
are kept until cumulatively acked: a receiver that restarts without durable
state forgets them, and the resume handshake then tells us so.

A receiver with a durable inbox also reports what it *stored*
(``Ack.stored``). Messages accepted with ``handoff`` (their caller waits
for that receipt only) are released then (window, outbox) — the receiver
answers for them now — and their consumption is counted later
(:attr:`AckOutcome.consumed_to`); when the receiver refuses them for a full
inbox (``Ack.inbox_refused``), :meth:`Sender.fail_refused` gives them up
rather than retransmitting them — exactly those, never a later message that
found room, and only when no other copy of them is in flight that could
find room after the refusal. Other messages are only marked stored: they
stay until consumed, and a refusal is retried (backpressure), as without
receipts.

Output is pulled with :meth:`Sender.take`, retransmissions first, up to a
byte budget, which is what lets the session coalesce many messages per frame.

A signing sender (``sign=True``) numbers a message, counts it against the
window, and holds it back until :meth:`Sender.signed` brings its signature
(the signature covers ``session_id`` and ``seq``, so it cannot come first);
messages go out in seq order, so nothing overtakes an unsigned one.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from agentp2p.pb.msg_pb2 import Ack, Envelope
from agentp2p.messaging.rtt import RttEstimator
from agentp2p.messaging.window import SendWindow, WindowFull

__all__ = ["AckOutcome", "MAX_STORED_REMEMBERED", "MessageTooLarge", "OutMessage", "Sender", "SenderStats"]

#: Released (stored), unconsumed messages whose consumption a sender counts (see Sender).
MAX_STORED_REMEMBERED = 65536


class MessageTooLarge(ValueError):
    """The encoded message exceeds the session's max_message_bytes."""


@dataclass(slots=True, eq=False)
class OutMessage:
    env: Envelope
    wire: bytes | None  # serialized envelope, reused for every (re)transmission; None until signed
    seq: int
    deadline: float | None
    size: int  # what the window accounts for
    tx_count: int = 0
    conn_tx: int = 0  # transmissions on the current stream (see Sender.fail_refused)
    last_sent: float = 0.0
    last_tx: int = 0  # number of the latest transmission
    sacked: bool = False
    queued: bool = False
    done: bool = False  # acked or failed
    handoff: bool = False  # released on the stored receipt (see the module docstring)
    stored: bool = False  # the stored receipt came (kept until consumed)


@dataclass(slots=True)
class AckOutcome:
    """What one ACK did: messages it completed as consumed (``acked``),
    released on the stored receipt (``stored``, handoff messages) or only
    marked stored (``stored_kept``), and, when the peer's consumed frontier
    moved over messages released earlier, that frontier (else 0) and how
    many of those messages it covered."""

    acked: list[OutMessage]
    stored: list[OutMessage]
    stored_kept: list[OutMessage] = field(default_factory=list)
    consumed_to: int = 0
    consumed_stored: int = 0


@dataclass(slots=True)
class SenderStats:
    accepted: int = 0
    transmitted: int = 0
    retransmitted: int = 0
    acked: int = 0
    #: released on the peer's stored receipt (its consumption comes later)
    stored: int = 0
    #: refused by the peer for a full inbox (also counted in failed)
    inbox_full: int = 0
    #: refused by the peer's authorization policy (also counted in failed)
    forbidden: int = 0
    failed: int = 0
    timeouts: int = 0
    fast_retransmits: int = 0


class Sender:
    def __init__(
        self,
        session_id: bytes,
        *,
        window: SendWindow,
        rtt: RttEstimator,
        next_seq: int = 1,
        sign: bool = False,
        max_message_bytes: int = 1024 * 1024,
        dupthresh: int = 3,
    ) -> None:
        self.session_id = session_id
        self.next_seq = next_seq
        self.window = window
        self.rtt = rtt
        self.sign = sign
        self.max_message_bytes = max_message_bytes
        self.dupthresh = dupthresh
        self.stats = SenderStats()
        self.need_forward = False  # low_seq moved past abandoned messages: tell the peer
        #: Seqs released on a stored receipt and not yet covered by the peer's
        #: consumed frontier (ascending), to count their consumption. An
        #: honest peer stores at most its receive window of ours unconsumed;
        #: the cap only bounds what a lying one could make us remember.
        self._stored_seqs: deque[int] = deque(maxlen=MAX_STORED_REMEMBERED)
        self._stored_upto = 0  # highest stored frontier applied
        self._by_seq: dict[int, OutMessage] = {}
        self._order: deque[OutMessage] = deque()  # seq order; finished ones removed lazily
        self._fresh: deque[OutMessage] = deque()  # never sent yet
        self._retx: deque[OutMessage] = deque()  # to send again, ahead of fresh ones
        self._inflight: OrderedDict[int, OutMessage] = OrderedDict()  # by last transmission
        self._deadlines: list[tuple[float, int]] = []
        self._tx = 0
        self._max_acked_tx = 0
        self._max_acked_sent = 0.0

    # ------------------------------------------------------------ accepting
    def accept(self, env: Envelope, deadline: float | None, handoff: bool = False) -> OutMessage:
        """Assign seq and buffer ``env`` (unsent until :meth:`signed` if signing); raise WindowFull if full.

        ``handoff``: release it on the peer's stored receipt (see the module docstring).
        """
        size = len(env.payload)
        if size > self.max_message_bytes:
            raise MessageTooLarge(f"payload of {size} bytes exceeds {self.max_message_bytes}")
        if not self.window.has_room(size):
            self.window.refused = True
            raise WindowFull(f"{self.window.messages} messages unacknowledged")
        env.session_id = self.session_id
        env.seq = self.next_seq
        self.next_seq += 1
        out = self._add(env, deadline, size, encode=not self.sign)
        out.handoff = handoff
        out.queued = True
        self._fresh.append(out)
        self.stats.accepted += 1
        return out

    def restore(self, env: Envelope, deadline: float | None) -> None:
        """Re-buffer a message loaded from the outbox after a restart (already signed).

        Call in ascending seq order, before any new message is accepted.
        """
        if env.session_id != self.session_id:
            raise ValueError("restored message belongs to another session")
        if self._order and self._order[-1].seq >= env.seq:
            raise ValueError("restore messages in ascending seq order")
        self.next_seq = max(self.next_seq, env.seq + 1)
        out = self._add(env, deadline, len(env.payload))
        out.queued = True
        self._fresh.append(out)

    def signed(self, seq: int, signature: bytes) -> OutMessage | None:
        """The signature of accepted message ``seq`` arrived: it may go out now.

        None if there is no such unsigned message (it failed its deadline meanwhile).
        """
        out = self._by_seq.get(seq)
        if out is None or out.wire is not None:
            return None
        out.env.signature = signature
        out.wire = out.env.SerializeToString()
        return out

    def _add(self, env: Envelope, deadline: float | None, size: int, *, encode: bool = True) -> OutMessage:
        out = OutMessage(env, env.SerializeToString() if encode else None, env.seq, deadline, size)
        self._by_seq[out.seq] = out
        self._order.append(out)
        self.window.add(size)
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, out.seq))
        return out

    # --------------------------------------------------------------- status
    @property
    def low_seq(self) -> int:
        """Lowest seq still held; everything below is acked or abandoned."""
        order = self._order
        while order and order[0].done:
            order.popleft()
        return order[0].seq if order else self.next_seq

    @property
    def unacked(self) -> int:
        return len(self._by_seq)

    def has_output(self) -> bool:
        # An unsigned message at the head counts: the frame carries nothing then,
        # and Signed asks for a Transmit again.
        return bool(self._retx or self._fresh) or self.need_forward

    def next_timer(self, connected: bool) -> float | None:
        t: float | None = None
        if connected and self._inflight:
            first = next(iter(self._inflight.values()))
            t = first.last_sent + self.rtt.rto
        dl = self._deadlines
        while dl and (dl[0][1] not in self._by_seq or self._by_seq[dl[0][1]].deadline != dl[0][0]):
            heapq.heappop(dl)
        if dl and (t is None or dl[0][0] < t):
            t = dl[0][0]
        return t

    # ------------------------------------------------------------- sending
    def take(self, now: float, max_bytes: int) -> list[bytes]:
        """Encoded envelopes to put in the next frame (at least one if any is due)."""
        batch: list[bytes] = []
        used = 0
        for q in (self._retx, self._fresh):
            while q:
                out = q[0]
                if out.done or out.sacked or not out.queued:
                    q.popleft()
                    continue
                wire = out.wire
                if wire is None:  # not signed yet: it and everything after it wait
                    self.need_forward = False  # the frame, if any, carries low_seq
                    return batch
                n = len(wire) + 6
                if batch and used + n > max_bytes:
                    return batch
                q.popleft()
                out.queued = False
                used += n
                batch.append(wire)
                self._tx += 1
                if out.tx_count:
                    self.stats.retransmitted += 1
                out.tx_count += 1
                out.conn_tx += 1
                out.last_sent = now
                out.last_tx = self._tx
                inflight = self._inflight
                inflight[out.seq] = out
                inflight.move_to_end(out.seq)
                self.stats.transmitted += 1
        self.need_forward = False  # any Data frame carries low_seq
        return batch

    # ---------------------------------------------------------------- acks
    def on_ack(self, now: float, ack: Ack) -> AckOutcome:
        """Apply an ACK of our session; returns what it completes."""
        top = self.next_seq - 1
        cum = min(ack.cumulative, top)
        stored_to = min(max(ack.stored, cum), top)  # stored >= consumed
        acked: list[OutMessage] = []
        newest: OutMessage | None = None
        order = self._order
        while order and order[0].seq <= cum:
            out = order.popleft()
            if out.done:
                continue
            if newest is None or out.last_tx > newest.last_tx:
                newest = out
            self._finish(out)
            acked.append(out)
        outcome = AckOutcome(acked, [])
        by_seq = self._by_seq
        if stored_to > cum:
            # Each stored seq once: the frontier only moves forward.
            for seq in range(max(cum, self._stored_upto) + 1, stored_to + 1):
                out = by_seq.get(seq)
                if out is None or out.stored:
                    continue
                if newest is None or out.last_tx > newest.last_tx:
                    newest = out
                if out.handoff:
                    self._finish(out)
                    outcome.stored.append(out)
                else:
                    out.stored = True
                    outcome.stored_kept.append(out)
        self._stored_upto = max(self._stored_upto, stored_to)
        stored = outcome.stored
        seqs = self._stored_seqs
        seqs.extend(o.seq for o in stored)
        while seqs and seqs[0] <= cum:
            outcome.consumed_to = seqs.popleft()
            outcome.consumed_stored += 1
        inflight = self._inflight
        for r in ack.selective:
            for seq in range(max(r.start, cum + 1), min(r.end, top) + 1):
                out = by_seq.get(seq)
                if out is None or out.sacked:
                    continue
                out.sacked = True
                inflight.pop(seq, None)
                if newest is None or out.last_tx > newest.last_tx:
                    newest = out
        if newest is not None and newest.tx_count:
            if newest.last_tx > self._max_acked_tx:
                self._max_acked_tx = newest.last_tx
                self._max_acked_sent = newest.last_sent
            if newest.tx_count == 1:  # Karn: only unambiguous samples
                self.rtt.sample(now - newest.last_sent)
            self._detect_losses()
        self.stats.acked += len(acked)
        self.stats.stored += len(stored)
        return outcome

    def fail_refused(self, refused: Iterable[tuple[int, int]]) -> list[OutMessage]:
        """The peer refused the seqs of the ``refused`` ranges (inclusive) for a full inbox.

        Gives up the handoff messages among them that went out and that the
        peer does not hold (not selectively acked); returned, to fail their
        senders at once. Only those: a later message may have found room
        (the reader acknowledged one meanwhile) and be delivered, so failing
        it would make its caller send it twice. Nor one sent more than once
        on this stream: the refusal may be of an earlier copy while a later
        one, still in flight, finds room; it is retried, like a message
        whose caller waits for consumption (a full inbox is backpressure for
        those), until it is stored or its deadline passes. The peer learns
        from ``low_seq`` that it need not wait for the failed ones.
        """
        # conn_tx 0 with tx_count: sent on an earlier stream only, which is gone.
        failed = [o for o in self._held_in(refused)
                  if o.handoff and o.tx_count and o.conn_tx <= 1 and not o.sacked and o.wire is not None]
        self._fail(failed)
        self.stats.inbox_full += len(failed)
        return failed

    def fail_forbidden(self, ranges: Iterable[tuple[int, int]]) -> list[OutMessage]:
        """The peer's policy refused the seqs of ``ranges`` (inclusive): it vetted each
        once and will never deliver it, so every one we still hold fails, now."""
        failed = self._held_in(ranges)
        self._fail(failed)
        self.stats.forbidden += len(failed)
        return failed

    def _held_in(self, ranges: Iterable[tuple[int, int]]) -> list[OutMessage]:
        """The messages we hold with a seq in ``ranges`` (inclusive), each once, in
        seq order: a lying peer's huge or overlapping ranges cost no more than
        what we hold, and never name a message twice."""
        by_seq = self._by_seq
        found: dict[int, OutMessage] = {}
        for start, end in ranges:
            if end - start > len(by_seq):
                found.update((o.seq, o) for o in by_seq.values() if start <= o.seq <= end)
            else:
                found.update((o.seq, o) for o in map(by_seq.get, range(start, end + 1)) if o is not None)
        return [found[seq] for seq in sorted(found)]

    def _fail(self, failed: list[OutMessage]) -> None:
        for out in failed:
            self._finish(out)
        if failed:
            self.need_forward = True  # the peer learns from low_seq it need not wait for them
            self.stats.failed += len(failed)

    def _detect_losses(self) -> None:
        # Lost: at least dupthresh later transmissions were acked, and the
        # newest acked one left a reordering window after it (RACK, RFC 8985),
        # so messages of one frame, or a frame merely overtaken, are not
        # retransmitted for nothing.
        limit = self._max_acked_tx - self.dupthresh
        srtt = self.rtt.srtt
        sent_limit = self._max_acked_sent - (srtt / 4 if srtt is not None else 0.0)
        inflight = self._inflight
        while inflight:
            seq, out = next(iter(inflight.items()))
            if out.last_tx > limit or out.last_sent >= sent_limit:
                break
            del inflight[seq]
            self._requeue(out)
            self.stats.fast_retransmits += 1

    def _requeue(self, out: OutMessage) -> None:
        if not out.queued and not out.done and not out.sacked:
            out.queued = True
            self._retx.append(out)

    def _finish(self, out: OutMessage) -> None:
        out.done = True
        del self._by_seq[out.seq]
        self._inflight.pop(out.seq, None)
        self.window.remove(out.size)

    # -------------------------------------------------------------- timers
    def on_timer(self, now: float, connected: bool) -> list[OutMessage]:
        """Fail messages past their deadline (returned); retransmit on RTO."""
        failed: list[OutMessage] = []
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            deadline, seq = heapq.heappop(dl)
            out = self._by_seq.get(seq)
            if out is not None and out.deadline == deadline:
                self._finish(out)
                failed.append(out)
        if failed:
            self.stats.failed += len(failed)
            low = self.low_seq
            if any(o.seq < low for o in failed):
                self.need_forward = True
        if connected and self._inflight:
            rto = self.rtt.rto
            first = next(iter(self._inflight.values()))
            if first.last_sent + rto <= now:
                # Everything out for longer than the RTO is presumed lost.
                self.stats.timeouts += 1
                self.rtt.on_timeout()
                inflight = self._inflight
                while inflight:
                    seq, out = next(iter(inflight.items()))
                    if out.last_sent + rto > now:
                        break
                    del inflight[seq]
                    self._requeue(out)
        return failed

    # ---------------------------------------------------------- connection
    def on_disconnect(self) -> None:
        """Nothing in flight survives the stream: forget transmissions and queues."""
        self._inflight.clear()
        self._retx.clear()
        self._fresh.clear()
        for out in self._by_seq.values():
            out.queued = False
            out.conn_tx = 0

    def on_resume(self, now: float, ack: Ack | None) -> AckOutcome:
        """Peer's Hello arrived: apply what it holds of our session, resend the rest.

        ``ack`` is None when the peer has no state for our session (it, or we,
        restarted): then every unacked message goes again, in seq order.
        """
        outcome = AckOutcome([], [])
        for out in self._by_seq.values():
            out.sacked = False
        if ack is not None:
            outcome = self.on_ack(now, ack)
        self.on_disconnect()
        for out in self._iter_unacked():
            if not out.sacked:
                out.queued = True
                self._retx.append(out)
        return outcome

    def _iter_unacked(self) -> Iterable[OutMessage]:
        return (o for o in self._order if not o.done)
