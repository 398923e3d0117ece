"""Connection events, fanned out to the protocols that care.

py-libp2p tells "notifees" about connections by awaiting them inline on the
swarm's path, so a slow notifee slows every connection. Ours only records
the event and returns; each consumer (DHT routing-table feed, bootstrap,
membership) reads its own channel from a task in the node's nursery.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import trio

from libp2p.peer.id import ID


@dataclass(frozen=True)
class PeerEvent:
    peer_id: ID
    connected: bool  # False: the last connection to the peer closed
    #: With connected False: that connection ended without a GO_AWAY either
    #: way (GuardedYamux.ended_abruptly) — the peer's process may have died.
    abrupt: bool = False
    #: With connected False, not abrupt: the peer closed it (its GO_AWAY came
    #: before we started closing: GuardedYamux.closed_by_peer), we did
    #: (False), or the connection does not say (None: QUIC).
    by_peer: bool | None = None
    #: With connected True: the peer dialed us (True), we dialed it (False),
    #: or the connection does not say (None).
    inbound: bool | None = None


def is_inbound(conn: Any) -> bool | None:
    """Whether the peer opened ``conn`` (a swarm connection or a muxed one):
    the connection manager closes young inbound connections first when the
    node is full (None: the connection does not say)."""
    muxed = getattr(conn, "muxed_conn", conn)
    # Yamux keeps the side in is_initiator_value; QUIC's connection and the
    # secure channel under Yamux in is_initiator.
    for holder, name in ((muxed, "is_initiator_value"), (muxed, "is_initiator"),
                         (getattr(muxed, "secured_conn", None), "is_initiator")):
        value = getattr(holder, name, None)
        if isinstance(value, bool):
            return not value
    return None


class ConnectionEvents:
    """A libp2p notifee that fans connection events out to subscribers."""

    def __init__(self, host: Any) -> None:
        self._host = host
        #: Each subscriber's channel and its hook for lost events (subscribe).
        self._subscribers: list[tuple[trio.MemorySendChannel[PeerEvent], Callable[[], None] | None]] = []
        #: Events a full subscriber channel lost, all subscribers together.
        self.dropped = 0
        #: Told of every stream opened, either way, and of every request a
        #: service sends or serves on a stream it reuses (``used``): the
        #: connection manager's "in use". A plain call on the swarm's path,
        #: so it must be cheap.
        self.on_use: Callable[[ID], None] | None = None

    def subscribe(self, capacity: int = 4096,
                  on_gap: Callable[[], None] | None = None) -> trio.MemoryReceiveChannel[PeerEvent]:
        """A channel of the events from now on. A consumer ``capacity``
        events behind loses the next ones (counted in ``dropped``) rather
        than block the swarm; ``on_gap`` is then called (a plain call on the
        swarm's path: set a flag), so that a consumer whose state must match
        the connections re-syncs from the live peer list (SWIM does)."""
        send, recv = trio.open_memory_channel[PeerEvent](capacity)
        self._subscribers.append((send, on_gap))
        return recv

    def _emit(self, event: PeerEvent) -> None:
        for sub in list(self._subscribers):
            ch, hook = sub
            try:
                ch.send_nowait(event)
            except trio.WouldBlock:
                self.dropped += 1
                if hook is not None:
                    try:
                        hook()
                    except Exception:  # noqa: BLE001 — one consumer's hook must not cost the others the event
                        pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(sub)

    # INotifee interface -------------------------------------------------------
    async def connected(self, network: Any, conn: Any) -> None:
        self._emit(PeerEvent(conn.muxed_conn.peer_id, True, inbound=is_inbound(conn)))

    async def disconnected(self, network: Any, conn: Any) -> None:
        # Once per connection: a close finished by force tells the notifees
        # only if the library had not (agentp2p/network/closing.py reads this).
        if getattr(conn, "_agentp2p_told", False):
            return
        with contextlib.suppress(Exception):
            conn._agentp2p_told = True
        muxed = conn.muxed_conn
        peer_id = muxed.peer_id
        if not network.get_connections(peer_id):
            self._emit(PeerEvent(peer_id, False, bool(getattr(muxed, "ended_abruptly", False)),
                                 by_peer=getattr(muxed, "closed_by_peer", None)))

    def used(self, peer: ID) -> None:
        """A service used its connection to ``peer`` without opening a stream.

        Why: a service that keeps one stream per peer (the DHT's requests)
        opens it once, so without this a connection carrying a request
        every second looked idle to the connection manager from that open
        on. (The whole-node simulator counted every request as use; the
        node now does too.)"""
        hook = self.on_use
        if hook is not None:
            try:
                hook(peer)
            except Exception:  # noqa: BLE001 — bookkeeping must never break a request
                pass

    async def opened_stream(self, network: Any, stream: Any) -> None:
        self.used(stream.muxed_conn.peer_id)

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def listen(self, network: Any, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        pass


async def wait_identified(host: Any, peer_id: ID, timeout: float = 5.0) -> list[str]:
    """The peer's protocols once identify has filled the peerstore ([] on timeout).

    py-libp2p runs identify on every new connection but signals nothing when
    it finishes, so we poll the peerstore (cheap: a dict lookup).
    """
    store = host.get_peerstore()
    with trio.move_on_after(timeout):
        while True:
            try:
                protos = store.get_protocols(peer_id)
            except Exception:
                protos = None
            if protos:
                return list(protos)
            await trio.sleep(0.01)
    return []
