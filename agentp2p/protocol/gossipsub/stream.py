"""What the gossipsub adapter puts on a peer's stream: encoded RPCs, queued and coalesced.

Why hand-rolled encoding: the router hands us immutable :class:`~.rpc.Rpc`
values and a forwarded (or published) message goes to several peers at
once. Encoding through protobuf objects per peer would rebuild the same
message bytes each time; :class:`RpcEncoder` encodes each message once per
batch of actions and splices it into every peer's RPC. The bytes are exactly
what :func:`~.codec.encode_message` produces (the test suite checks), and
control/subscription parts still go through :func:`~.codec.encode_rpc`.

Why RPC concatenation works: a protobuf message's encoding concatenated with
another's parses as their merge (repeated fields append, embedded messages
merge recursively). So the RPCs queued for one peer can be written as *one*
RPC frame — many messages and control entries per frame — by concatenating
their bodies under one length prefix, as long as the result stays within
the receiver's limits: :data:`MAX_MERGED_FRAME` bytes (go-libp2p-pubsub's
default 1 MiB RPC limit) and our own decoder's per-RPC counts
(:class:`~.codec.Limits`). One frame instead of fifty means one decode and
one router call at the receiver instead of fifty.

:class:`OutQueue` is one peer's bounded queue (items, bytes, and a
resource-manager reservation); the adapter's writer task drains it with
:meth:`OutQueue.take`, one ``stream.write`` per call.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .codec import DEFAULT_LIMITS, Limits, encode_rpc
from .rpc import Message, Rpc

__all__ = ["MAX_MERGED_FRAME", "OutQueue", "RpcEncoder", "encode_message", "varint"]

#: Largest RPC frame we build by merging (a single bigger RPC goes alone): go's default limit.
MAX_MERGED_FRAME = 1 << 20
#: Queue memory is reserved from the resource manager in chunks of this many bytes.
RESERVE_CHUNK = 64 * 1024


def varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, value: bytes) -> bytes:
    n = len(value)
    return tag + (bytes((n,)) if n < 0x80 else varint(n)) + value


def encode_message(m: Message) -> bytes:
    """A ``Message`` protobuf, byte for byte what codec.encode_message gives (fields in tag order)."""
    out = bytearray()
    f = m.from_
    if f is not None:
        n = len(f)
        out += b"\x0a"
        out += bytes((n,)) if n < 0x80 else varint(n)
        out += f
    d = m.data
    n = len(d)
    out += b"\x12"
    out += bytes((n,)) if n < 0x80 else varint(n)
    out += d
    f = m.seqno
    if f is not None:
        n = len(f)
        out += b"\x1a"
        out += bytes((n,)) if n < 0x80 else varint(n)
        out += f
    t = m.topic.encode()
    n = len(t)
    out += b"\x22"
    out += bytes((n,)) if n < 0x80 else varint(n)
    out += t
    f = m.signature
    if f is not None:
        n = len(f)
        out += b"\x2a"
        out += bytes((n,)) if n < 0x80 else varint(n)
        out += f
    f = m.key
    if f is not None:
        n = len(f)
        out += b"\x32"
        out += bytes((n,)) if n < 0x80 else varint(n)
        out += f
    return bytes(out)


#: An encoded RPC and what it counts against the receiver's per-RPC limits:
#: (bytes, messages, subscriptions, control entries, message ids).
Item = tuple[bytes, int, int, int, int]


class RpcEncoder:
    """Encodes RPCs for the wire, each distinct message once per batch (call :meth:`clear` after)."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Message, bytes]] = {}

    def encode(self, rpc: Rpc) -> Item:
        chunks: list[bytes] = []
        cache = self._cache
        for m in rpc.publish:
            hit = cache.get(id(m))
            if hit is None or hit[0] is not m:
                enc = _field(b"\x12", encode_message(m))
                cache[id(m)] = (m, enc)
            else:
                enc = hit[1]
            chunks.append(enc)
        ctl = rpc.control
        entries = ids = 0
        if rpc.subscriptions or ctl:
            chunks.append(encode_rpc(Rpc(rpc.subscriptions, (), ctl)))
            if ctl:
                entries = len(ctl.ihave) + len(ctl.graft) + len(ctl.prune) + len(ctl.iwant) + len(ctl.idontwant)
                ids = (sum(len(i.ids) for i in ctl.ihave) + sum(len(i.ids) for i in ctl.iwant)
                       + sum(len(i.ids) for i in ctl.idontwant))
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return (data, len(rpc.publish), len(rpc.subscriptions), entries, ids)

    def clear(self) -> None:
        self._cache.clear()


class OutQueue:
    """One peer's outbound RPCs: bounded by ``max_items`` and ``max_bytes`` (queued + being written).

    ``reservation`` (resources.Reservation, optional) holds the bytes against
    the node's memory limits from push until the write that carried them
    completed, rounded up to :data:`RESERVE_CHUNK` (never past ``max_bytes``;
    all given back whenever the queue drains). ``push`` returns False instead
    of going over any bound (or when the manager refuses); the caller counts
    the drop.
    """

    __slots__ = ("max_items", "max_bytes", "items", "bytes", "inflight_items", "inflight_bytes",
                 "last_progress", "_reservation", "_reserved", "_limits", "frames_written", "items_written")

    def __init__(self, max_items: int, max_bytes: int, reservation: Any = None, now: float = 0.0,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.items: deque[Item] = deque()
        #: Bytes held: queued plus the write in progress.
        self.bytes = 0
        self.inflight_items = 0
        self.inflight_bytes = 0
        #: When a write last completed, or the queue last became non-empty.
        self.last_progress = now
        self._reservation = reservation
        #: Bytes reserved from the resource manager: ``bytes`` rounded up to
        #: whole RESERVE_CHUNKs, so that not every RPC costs a reservation.
        self._reserved = 0
        self._limits = limits
        self.frames_written = 0
        self.items_written = 0

    def __len__(self) -> int:
        return len(self.items) + self.inflight_items

    def fill(self) -> float:
        """How full, by items or by bytes, whichever is higher (0..1)."""
        return max((len(self.items) + self.inflight_items) / self.max_items, self.bytes / self.max_bytes)

    def stalled_for(self, now: float) -> float:
        """Seconds this non-empty queue has made no progress (0 when empty)."""
        return now - self.last_progress if (self.items or self.inflight_items) else 0.0

    def push(self, item: Item, now: float) -> bool:
        n = len(item[0])
        if len(self.items) + self.inflight_items >= self.max_items or self.bytes + n > self.max_bytes:
            return False
        if self._reservation is not None and self.bytes + n > self._reserved:
            need = self.bytes + n - self._reserved
            grow = max(need, min(RESERVE_CHUNK, self.max_bytes - self._reserved))
            if not self._reservation.grow(grow):
                if grow == need or not self._reservation.grow(need):
                    return False
                grow = need
            self._reserved += grow
        if not self.items and not self.inflight_items:
            self.last_progress = now
        self.items.append(item)
        self.bytes += n
        return True

    def take(self, budget: int) -> tuple[bytes, int]:
        """Up to ``budget`` bytes of queued RPCs (at least one), merged into as few
        length-prefixed frames as the limits allow, as one buffer for one write;
        and the number of frames. Call :meth:`written` once the write is done."""
        items = self.items
        lim = self._limits
        max_msgs, max_subs = lim.max_messages, lim.max_subscriptions
        max_entries = min(lim.max_grafts, lim.max_prunes, lim.max_ihave_topics)
        max_ids = min(lim.max_ihave_ids, lim.max_iwant_ids, lim.max_idontwant_ids)
        out: list[bytes] = []
        frame: list[bytes] = []
        fsize = fmsgs = fsubs = fents = fids = 0
        total = taken = 0
        frames = 0
        while items and (total < budget or not taken):
            data, msgs, subs, ents, ids = items[0]
            n = len(data)
            if frame and (fsize + n > MAX_MERGED_FRAME or fmsgs + msgs > max_msgs or fsubs + subs > max_subs
                          or fents + ents > max_entries or fids + ids > max_ids):
                body = frame[0] if len(frame) == 1 else b"".join(frame)
                out.append(varint(len(body)))
                out.append(body)
                frames += 1
                frame = []
                fsize = fmsgs = fsubs = fents = fids = 0
            items.popleft()
            frame.append(data)
            fsize += n
            fmsgs += msgs
            fsubs += subs
            fents += ents
            fids += ids
            total += n
            taken += 1
        if frame:
            body = frame[0] if len(frame) == 1 else b"".join(frame)
            out.append(varint(len(body)))
            out.append(body)
            frames += 1
        self.inflight_items = taken
        self.inflight_bytes = total
        return b"".join(out), frames

    def written(self, now: float, frames: int, ok: bool = True) -> None:
        """The write of the last :meth:`take` completed (or failed, ``ok`` False): release its bytes."""
        n = self.inflight_bytes
        self.bytes -= n
        if ok:
            self.items_written += self.inflight_items
            self.frames_written += frames
        self.inflight_items = self.inflight_bytes = 0
        self.last_progress = now
        self._release()

    def _release(self) -> None:
        """Give back what we no longer need: all of it once drained, else all but one spare chunk."""
        if self._reservation is None:
            return
        if not self.bytes:
            keep = 0
        elif self._reserved - self.bytes > RESERVE_CHUNK:
            keep = self.bytes + RESERVE_CHUNK
        else:
            return
        self._reservation.shrink(self._reserved - keep)
        self._reserved = keep

    def clear(self) -> int:
        """Forget everything queued (the peer is gone); returns how many RPCs that was."""
        dropped = len(self.items)
        self.items.clear()
        self.bytes = self.inflight_bytes
        if self._reservation is not None:
            self._reservation.shrink(self._reserved - self.bytes)
            self._reserved = self.bytes
        return dropped

    def close(self) -> None:
        self.items.clear()
        self.bytes = 0
        self.inflight_items = self.inflight_bytes = 0
        self._reserved = 0
        if self._reservation is not None:
            self._reservation.close()
