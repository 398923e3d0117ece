"""The one place that dials: every service that needs a connection asks here.

Before, dialing was written four times (node, bootstrap, SWIM transport,
messaging), each with its own half of the rules. Here they are once:

* **Bans and denials.** A banned peer is not dialed (docs/security.md), nor
  one on the node's deny list (:mod:`agentp2p.network.denylist`).
* **Address hints.** Addresses a caller knows (a bootstrap entry, a SWIM
  member's announced addresses) go into the peerstore before the dial.
* **The library's negative cache.** py-libp2p's swarm refuses for 60 s to
  redial a peer whose addresses all failed. Our callers have their own
  backoff (bootstrap, SWIM's reconnect pings, messaging's redial), and a
  restarted peer must be reachable at once, so every dial clears it.
* **DHT fallback.** When the known addresses fail (or there are none), the
  peer is looked up in the DHT once and dialed at what it advertises.
* **Deadlines.** Every dial has one (``dial_timeout`` unless the caller
  passes a shorter one); a dial never hangs a caller.
* **De-duplication.** Concurrent dials to one peer share a single attempt:
  SWIM, messaging and records asking for the same peer at the same moment
  open one connection, not three (py-libp2p would race them and keep one).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.connection_types import ConnectionType
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from agentp2p.bounded_counts import count_bounded
from agentp2p.errors import DialError, DialTimeout, PeerRefused
from agentp2p.network.multistream import LazyStream, negotiation, wait_accepted

log = logging.getLogger("agentp2p.dialer")

__all__ = ["Dialer", "DialerStats", "Lookup"]

#: How long address hints stay in the peerstore (py-libp2p's own TTL for
#: addresses learnt from a connection is similar).
ADDR_TTL = 3600

Lookup = Callable[[ID], Awaitable[PeerInfo | None]]
#: ``relay_dial(peer, circuit_addrs, timeout)``: connect through a relay (the relay service).
RelayDial = Callable[[ID, list[Multiaddr], float], Awaitable[None]]


def is_circuit(addr: Multiaddr) -> bool:
    return "/p2p-circuit" in str(addr)


#: Distinct names DialerStats.by_purpose keeps (callers name them in code, not peers).
MAX_PURPOSES = 32


@dataclass
class DialerStats:
    dials: int = 0
    successes: int = 0
    failures: int = 0
    shared: int = 0  # callers that joined a dial already in flight
    dht_lookups: int = 0
    refused_banned: int = 0
    refused_denied: int = 0
    refused_not_allowed: int = 0  # the allow list is on and the peer is not on it
    refused_policy: int = 0  # the authorization policy's connect rules refuse the peer
    relayed_dials: int = 0  # direct addresses failed (or none): tried /p2p-circuit ones
    lazy_streams: int = 0  # streams whose protocol rode with their first write (identify said the peer speaks it)
    #: ``dials`` split by what asked for them: the protocol of the stream that
    #: needed the connection (``open_stream``), or the caller's ``purpose``
    #: (``connect``). Which service's dials a storm of new connections is made
    #: of (each costs tens of ms of CPU at both ends). ``MAX_PURPOSES`` names
    #: at most, then one more, "other", for the rest.
    by_purpose: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}

    def dialed(self, purpose: str) -> None:
        """One dial attempt, asked for by ``purpose``."""
        self.dials += 1
        count_bounded(self.by_purpose, purpose, MAX_PURPOSES)


@dataclass
class _InFlight:
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


def to_multiaddrs(addrs: Iterable[Multiaddr | bytes | str]) -> list[Multiaddr]:
    """Parse what callers hand us (bytes from the wire, strings from config); skip garbage."""
    out: list[Multiaddr] = []
    for a in addrs:
        if isinstance(a, Multiaddr):
            out.append(a)
            continue
        with contextlib.suppress(Exception):
            out.append(Multiaddr(a))
    return out


class Dialer:
    """Dial peers and open streams to them, by the rules in the module doc."""

    def __init__(
        self,
        host: Any,
        *,
        timeout: float,
        is_banned: Callable[[ID], bool] = lambda _peer: False,
        is_denied: Callable[[ID], bool] = lambda _peer: False,
        is_permitted: Callable[[ID], bool] = lambda _peer: True,
        refused_by_policy: Callable[[ID], bool] = lambda _peer: False,
        lookup: Lookup | None = None,
    ) -> None:
        self._host = host
        self._self = host.get_id()
        self.timeout = timeout
        self._is_banned = is_banned
        self._is_denied = is_denied
        self._is_permitted = is_permitted
        self._refused_by_policy = refused_by_policy
        self._lookup = lookup
        self._relay_dial: RelayDial | None = None
        self._inflight: dict[ID, _InFlight] = {}
        self.stats = DialerStats()

    def use_relay(self, relay_dial: RelayDial | None) -> None:
        """Who dials ``/p2p-circuit`` addresses (the relay service): py-libp2p's
        swarm drops them, so they are tried here, after the direct ones."""
        self._relay_dial = relay_dial

    def use_lookup(self, lookup: Lookup | None) -> None:
        """Where to find a peer whose known addresses fail (the DHT, once built)."""
        self._lookup = lookup

    # -- what is connected ----------------------------------------------------

    def is_connected(self, peer: ID) -> bool:
        return bool(self._host.get_network().get_connections(peer))

    def is_relayed(self, peer: ID) -> bool:
        """Connected to ``peer`` only through relays (no direct connection)."""
        conns = self._host.get_network().get_connections(peer)
        return bool(conns) and all(c.get_connection_type() is ConnectionType.RELAYED for c in conns)

    def peers(self) -> list[ID]:
        """Peers with at least one open connection."""
        return [p for p, conns in self._host.get_network().connections.items() if conns]

    def known_addrs(self, peer: ID) -> list[Multiaddr]:
        try:
            return list(self._host.get_peerstore().addrs(peer))
        except Exception:  # noqa: BLE001 — the peerstore raises for unknown peers
            return []

    def add_addrs(self, peer: ID, addrs: Iterable[Multiaddr | bytes | str], ttl: int = ADDR_TTL) -> None:
        mas = to_multiaddrs(addrs)
        if mas and peer != self._self:
            self._host.get_peerstore().add_addrs(peer, mas, ttl)

    # -- dialing --------------------------------------------------------------

    async def connect(
        self,
        peer: ID,
        addrs: Iterable[Multiaddr | bytes | str] = (),
        *,
        timeout: float | None = None,
        lookup: bool = True,
        confirm: bool = True,
        purpose: str = "connect",
    ) -> None:
        """Be connected to ``peer`` when this returns; :class:`DialError` otherwise.

        A new connection is usable as soon as Noise's handshake ends: its muxer
        proposal rides without waiting for the peer's answer
        (network/multistream.py), so a peer that refuses us right after the
        handshake closes a connection that was already handed out.
        So ``connect`` waits for the answer as well (one round trip more) and
        turns such a refusal into a DialError (a bootstrapper that took it for
        a success redialed a refusing peer in a loop). ``confirm=False`` skips
        the wait: :meth:`open_stream` dials that way, since its stream's
        negotiation, or a lazy stream's first read, meets the refusal anyway.
        ``purpose`` names what the connection is for, in
        :attr:`DialerStats.by_purpose`.
        """
        if peer == self._self:
            raise DialError("refusing to dial ourselves")
        if self._is_banned(peer):
            self.stats.refused_banned += 1
            raise PeerRefused(f"peer {peer} is banned for misbehaving (see `agentp2p peers`)")
        if self._is_denied(peer):
            self.stats.refused_denied += 1
            raise PeerRefused(f"peer {peer} is on this node's deny list (`agentp2p allow` takes it off)")
        if not self._is_permitted(peer):
            self.stats.refused_not_allowed += 1
            raise PeerRefused(f"peer {peer} is not on this node's allow list (`agentp2p allow-list add` admits it)")
        if self._refused_by_policy(peer):
            self.stats.refused_policy += 1
            raise PeerRefused(f"peer {peer} is refused by this node's policy (its connect rules; `agentp2p policy`)")
        self.add_addrs(peer, addrs)
        limit = self.timeout if timeout is None else min(timeout, self.timeout)
        try:
            with trio.fail_after(limit):
                if confirm:
                    await self._drop_refused(peer)
                if not self.is_connected(peer):
                    await self._connect_shared(peer, lookup, purpose)
                if confirm:
                    await self._confirmed(peer)
        except trio.TooSlowError:
            raise DialTimeout(f"dial {peer} timed out after {limit:g}s") from None

    async def _drop_refused(self, peer: ID) -> None:
        """Close connections the peer refused after the handshake that are
        still in the swarm's table (their close is on its way): a new dial
        must not find them."""
        network = self._host.get_network()
        for conn in list(network.get_connections(peer)):
            state = negotiation(getattr(conn, "muxed_conn", None))
            if state is not None and state.done.is_set() and state.error is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(Exception):
                    await conn.close()
                # A close already under way returns at once; the swarm takes the
                # connection out of its table a moment later (py-libp2p's
                # cleanup). Until then its host.connect would return it again.
                with trio.move_on_after(2):
                    while conn in network.get_connections(peer):
                        await trio.sleep(0.01)

    async def _confirmed(self, peer: ID) -> None:
        """Wait for the peer to accept our connection's muxer (see :meth:`connect`)."""
        why: str | None = "no connection left"
        # Any accepted connection will do (the peer may have dialed us at the same moment).
        for conn in list(self._host.get_network().get_connections(peer)):
            why = await wait_accepted(getattr(conn, "muxed_conn", None))
            if why is None:
                return
        raise DialError(f"dial {peer}: the peer closed the connection during set-up (it may refuse us): {why}")

    async def _connect_shared(self, peer: ID, lookup: bool, purpose: str) -> None:
        while (flight := self._inflight.get(peer)) is not None:
            self.stats.shared += 1
            await flight.done.wait()
            if self.is_connected(peer):
                return
            if flight.error is not None:
                raise DialError(str(flight.error)) from None
            # The dial we joined was cancelled, or its connection is gone
            # already: dial ourselves (unless another waiter got there first).
        flight = self._inflight[peer] = _InFlight()
        try:
            await self._connect_now(peer, lookup, purpose)
        except DialError as exc:
            flight.error = exc
            raise
        except Exception as exc:
            flight.error = DialError(f"dial {peer} failed: {exc!r}")
            raise flight.error from None
        finally:
            flight.done.set()
            if self._inflight.get(peer) is flight:
                del self._inflight[peer]

    async def _connect_now(self, peer: ID, lookup: bool, purpose: str) -> None:
        known = self.known_addrs(peer)
        direct = [a for a in known if not is_circuit(a)]
        relayable = self._relay_dial is not None and len(direct) < len(known)
        try:
            if relayable:
                # A peer with circuits is often behind a NAT, where its direct
                # addresses hang rather than fail: leave the relay half the time
                # the caller gave us.
                half = min(self.timeout, trio.current_effective_deadline() - trio.current_time()) / 2
                with trio.move_on_after(half) as scope:
                    await self._connect_direct(peer, lookup, direct, purpose)
                if scope.cancelled_caught:
                    raise DialError(f"dial {peer}: no direct address answered within {half:.3g}s")
            else:
                await self._connect_direct(peer, lookup, direct, purpose)
        except DialError as exc:
            circuits = [a for a in self.known_addrs(peer) if is_circuit(a)]
            if not circuits or self._relay_dial is None:
                raise
            self.stats.relayed_dials += 1
            left = min(self.timeout, trio.current_effective_deadline() - trio.current_time())
            try:
                await self._relay_dial(peer, circuits, left)
            except Exception as relay_exc:  # noqa: BLE001
                raise DialError(f"{exc}; through a relay: {relay_exc}") from None
            self.stats.successes += 1

    async def _connect_direct(self, peer: ID, lookup: bool, addrs: list[Multiaddr], purpose: str) -> None:
        network = self._host.get_network()
        first: Exception | None = None
        if addrs:
            self.stats.dialed(purpose)
            with contextlib.suppress(Exception):
                network.unblock_peer(peer)
            try:
                await self._host.connect(PeerInfo(peer, addrs))
                self.stats.successes += 1
                return
            except Exception as exc:  # noqa: BLE001 — try the DHT next
                self.stats.failures += 1
                first = exc
        if lookup and self._lookup is not None:
            self.stats.dht_lookups += 1
            try:
                info = await self._lookup(peer)
            except Exception as exc:  # noqa: BLE001
                log.debug("DHT lookup of %s failed: %r", peer, exc)
                info = None
            # What the lookup learnt beyond the addresses that just failed.
            learnt = [a for a in (info.addrs if info is not None else []) if a not in addrs]
            self.add_addrs(peer, learnt)  # circuit addresses among them are for the caller's fallback
            fresh = [a for a in learnt if not is_circuit(a)]
            if fresh:
                self.stats.dialed(purpose)
                with contextlib.suppress(Exception):
                    network.unblock_peer(peer)
                try:
                    await self._host.connect(PeerInfo(peer, fresh))
                    self.stats.successes += 1
                    return
                except Exception as exc:  # noqa: BLE001
                    self.stats.failures += 1
                    raise DialError(f"dial {peer} failed: {exc}") from None
        if first is not None:
            raise DialError(f"dial {peer} failed: {first}") from None
        raise DialError(f"peer {peer}: no known address" + (" and not found in the DHT" if lookup and self._lookup else ""))

    def _lazy_capable(self, peer: ID) -> bool:
        """A connection to ``peer`` whose streams need no negotiation slot
        (py-libp2p's QUIC has one: those are negotiated the library's way)."""
        conns = self._host.get_network().get_connections(peer)
        # Every connection: the swarm picks which one a new stream goes on.
        return bool(conns) and all(
            getattr(getattr(c, "muxed_conn", None), "_negotiation_semaphore", None) is None for c in conns)

    def _speaks(self, peer: ID, protocol: str) -> bool:
        """Identify said ``peer`` speaks ``protocol`` (and the connection can be lazy)."""
        try:
            return self._lazy_capable(peer) and bool(self._host.get_peerstore().supports_protocols(peer, [protocol]))
        except Exception:  # noqa: BLE001 — an unknown peer: negotiate
            return False

    async def open_stream(
        self,
        peer: ID,
        protocols: Sequence[str],
        *,
        addrs: Iterable[Multiaddr | bytes | str] = (),
        timeout: float | None = None,
        dial: bool = True,
        lookup: bool = True,
        lazy: bool = False,
        optimistic: bool = False,
    ) -> Any:
        """A new stream to ``peer`` speaking one of ``protocols``.

        ``dial=False``: only over a connection that is already open (a reply
        path, or a protocol that must not create connections).

        ``lazy=True``: when identify has told us the peer speaks
        ``protocols[0]``, the stream is returned at once and its negotiation
        rides with its first write (a
        :class:`~agentp2p.network.multistream.LazyStream`, as go-libp2p
        does): a request on a new stream costs one round trip, not two. A
        refusal — or a connection that died unnoticed — then shows only at
        the first read, so it suits request/response protocols with short
        deadlines (the DHT), not a service that takes a write for delivery.
        ``optimistic=True`` is lazy before identify has answered too, for a
        single protocol the caller expects the peer to speak (a DHT request
        to a peer another server named: its first request on a fresh
        connection need not wait for identify).
        """
        limit = self.timeout if timeout is None else timeout
        try:
            with trio.fail_after(limit):
                if not self.is_connected(peer):
                    if not dial:
                        raise DialError(f"peer {peer} is not connected")
                    await self.connect(peer, addrs, timeout=limit, lookup=lookup, confirm=False,
                                       purpose=protocols[0] if protocols else "stream")
                if protocols and (
                    (optimistic and len(protocols) == 1 and self._lazy_capable(peer))
                    or ((lazy or optimistic) and self._speaks(peer, protocols[0]))
                ):
                    stream = await self._host.get_network().new_stream(peer)
                    stream.set_protocol(TProtocol(protocols[0]))
                    self.stats.lazy_streams += 1
                    return LazyStream(stream, protocols[0])
                return await self._host.new_stream(peer, [TProtocol(p) for p in protocols])
        except trio.TooSlowError:
            raise DialTimeout(f"opening {'/'.join(protocols)} to {peer} timed out after {limit:g}s") from None
        except DialError:
            raise
        except Exception as exc:  # noqa: BLE001 — negotiation or a dead connection
            raise DialError(f"opening {'/'.join(protocols)} to {peer} failed: {exc}") from None
