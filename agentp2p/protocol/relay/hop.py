"""The relay itself: the hop protocol's server side (``/libp2p/circuit/relay/0.2.0/hop``).

RESERVE: the connection's peer (never an ID named in the message) gets a
slot in the books (reservations.py) and the relay's addresses to build
``/p2p-circuit`` addresses from. CONNECT: if the target holds a
reservation and a circuit may open, the relay opens a stop stream to the
target over the target's own connection (never a dial: the target is
connected, or it has no reservation), and once the target accepts, joins
the two streams (splice.py) until the circuit ends or hits its limits.

Not done: reservation vouchers (signed envelopes; the spec calls them
advisory and nothing checks them yet) and active relaying (dialing a
target that is not connected, deprecated by the spec).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.contract import NodeContext
from agentp2p.network.framing import FrameError, length_prefixed, read_message
from agentp2p.network.streams import close_quietly, remote_ip

from .codec import MAX_MESSAGE_BYTES, STOP_PROTOCOL, CodecError, decode_hop, decode_stop, hop_status, limit_of, pb
from .config import RelayConfig
from .reservations import Books, Refused
from .splice import splice

log = logging.getLogger("agentp2p.relay")

__all__ = ["HopServer"]

#: How long a client has to send its request once the stream is open.
_REQUEST_TIMEOUT = 10.0


class HopServer:
    """Reservations and circuits of a relay (see the module doc)."""

    def __init__(self, ctx: NodeContext, config: RelayConfig, addrs: Callable[[], list[str]]) -> None:
        self._ctx = ctx
        self.config = config
        self._addrs = addrs
        self.books = Books(config, refused=pb.RESERVATION_REFUSED, limit_exceeded=pb.RESOURCE_LIMIT_EXCEEDED,
                           no_reservation=pb.NO_RESERVATION)
        self.stats: Counter[str] = Counter()
        self.bytes_relayed = 0

    def limit(self) -> pb.Limit:
        return limit_of(self.config.circuit_duration, self.config.circuit_data)

    async def handle(self, stream: Any) -> None:
        """The hop protocol's stream handler."""
        peer: ID = stream.muxed_conn.peer_id
        try:
            with trio.fail_after(_REQUEST_TIMEOUT):
                msg = decode_hop(await read_message(stream, MAX_MESSAGE_BYTES))
        except (CodecError, FrameError, trio.TooSlowError) as exc:
            self.stats["malformed"] += 1
            self._ctx.offence(peer, "relay: malformed hop message", 1.0)
            await _reply(stream, hop_status(pb.MALFORMED_MESSAGE), close=True)
            log.debug("relay: malformed hop message from %s: %s", peer, exc)
            return
        if remote_ip(stream) is None:
            # Over a circuit (a relayed pipe has no address): relaying a relayed
            # peer would chain circuits and hide its IP from the per-IP bounds.
            self.stats["refused_relayed"] += 1
            await _reply(stream, hop_status(pb.PERMISSION_DENIED), close=True)
            return
        if msg.type == pb.HopMessage.RESERVE:
            await self._reserve(stream, peer)
        elif msg.type == pb.HopMessage.CONNECT:
            await self._connect(stream, peer, msg)
        else:
            self.stats["unexpected"] += 1
            await _reply(stream, hop_status(pb.UNEXPECTED_MESSAGE), close=True)

    async def _reserve(self, stream: Any, peer: ID) -> None:
        now = self._ctx.now()
        try:
            self.books.reserve(peer, remote_ip(stream), now)
        except Refused as refusal:
            self.stats["reservations_refused"] += 1
            await _reply(stream, hop_status(refusal.status), close=True)
            return
        me = str(self._ctx.peer_id)
        addrs = []
        for a in self._addrs():
            text = a if "/p2p/" in a else f"{a}/p2p/{me}"
            with contextlib.suppress(Exception):
                addrs.append(Multiaddr(text).to_bytes())
        reservation = pb.Reservation(expire=int(time.time() + self.config.reservation_ttl), addrs=addrs)
        self.stats["reservations"] += 1
        await _reply(stream, hop_status(pb.OK, reservation=reservation, limit=self.limit()), close=True)

    async def _connect(self, stream: Any, src: ID, msg: pb.HopMessage) -> None:
        try:
            dst = ID(msg.peer.id) if msg.HasField("peer") else None
            if dst is not None:
                dst.to_base58()  # an ID that does not encode is a malformed request
        except Exception:  # noqa: BLE001 — the peer's bytes
            dst = None
        if dst is None or dst == src or dst == self._ctx.peer_id:
            self.stats["malformed"] += 1
            await _reply(stream, hop_status(pb.MALFORMED_MESSAGE), close=True)
            return
        now = self._ctx.now()
        if not self._ctx.dialer.is_connected(dst):
            self.books.disconnected(dst)
        try:
            src_ip = remote_ip(stream)
            self.books.open_circuit(src, dst, now, src_ip)
        except Refused as refusal:
            self.stats["circuits_refused"] += 1
            await _reply(stream, hop_status(refusal.status), close=True)
            return
        try:
            stop = await self._stop_stream(src, dst)
            if stop is None:
                self.stats["circuits_failed"] += 1
                await _reply(stream, hop_status(pb.CONNECTION_FAILED), close=True)
                return
            if not await _reply(stream, hop_status(pb.OK, limit=self.limit())):
                with contextlib.suppress(Exception):
                    await stop.reset()
                return
            self.stats["circuits"] += 1
            ended = await splice(stream, stop, duration=self.config.circuit_duration, data=self.config.circuit_data)
            self.bytes_relayed += ended.forward + ended.backward
            self.stats[f"ended_{ended.reason.replace(' ', '_')}"] += 1
            log.debug("relay: circuit %s -> %s ended (%s; %d / %d bytes)", src, dst, ended.reason, ended.forward,
                      ended.backward)
        finally:
            self.books.close_circuit(src, dst, src_ip)

    async def _stop_stream(self, src: ID, dst: ID) -> Any:
        """Ask ``dst`` to accept a circuit from ``src``; the open stop stream, or None."""
        stop = None
        try:
            with trio.fail_after(self.config.connect_timeout):
                stop = await self._ctx.dialer.open_stream(dst, [STOP_PROTOCOL], dial=False, lookup=False,
                                                          timeout=self.config.connect_timeout)
                connect = pb.StopMessage(type=pb.StopMessage.CONNECT, peer=pb.Peer(id=src.to_bytes()),
                                         limit=self.limit())
                await stop.write(length_prefixed(connect.SerializeToString()))
                answer = decode_stop(await read_message(stop, MAX_MESSAGE_BYTES))
            if answer.type == pb.StopMessage.STATUS and answer.status == pb.OK:
                return stop
            log.debug("relay: %s refused a circuit from %s (status %s)", dst, src, answer.status)
        except Exception as exc:  # noqa: BLE001 — the target failed, timed out or spoke garbage
            log.debug("relay: stop to %s failed: %r", dst, exc)
        if stop is not None:
            await close_quietly(stop, reset=True)
        return None


async def _reply(stream: Any, data: bytes, close: bool = False) -> bool:
    """Write one message; False (and the stream reset) if the peer went away."""
    try:
        with trio.fail_after(5):
            await stream.write(length_prefixed(data))
    except Exception:  # noqa: BLE001
        await close_quietly(stream, reset=True)
        return False
    if close:
        await close_quietly(stream)
    return True
