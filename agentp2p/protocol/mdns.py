"""mDNS discovery on the local network (off by default; ``--mdns`` turns it on).

py-libp2p's ``MDNSDiscovery`` (zeroconf) advertises us and records what it
hears in the peerstore, but never dials anyone. :class:`MdnsConnector`
closes that gap: it watches what discovery found and connects to new peers,
with a cool-down per peer so an unreachable neighbour is not hammered.

The zeroconf part runs real multicast on every interface, which our tests
(loopback only) never exercise; the connector is tested with a fake source.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import trio

from libp2p.peer.id import ID

if TYPE_CHECKING:
    from agentp2p.contract import Dialing

log = logging.getLogger("agentp2p.mdns")


class MdnsConnector:
    """Connects to peers that a discovery source reports."""

    def __init__(
        self,
        dialer: Dialing,
        discovered: Callable[[], Iterable[ID]],
        interval: float = 1.0,
        cooldown: float = 30.0,
    ) -> None:
        self.dialer = dialer
        self.discovered = discovered
        self.interval = interval
        self.cooldown = cooldown
        self._next_try: dict[ID, float] = {}
        self.connected: set[ID] = set()

    async def step(self) -> None:
        now = trio.current_time()
        for peer_id in list(self.discovered()):
            if self.dialer.is_connected(peer_id):
                continue
            if self._next_try.get(peer_id, 0.0) > now:
                continue
            self._next_try[peer_id] = now + self.cooldown
            if not self.dialer.known_addrs(peer_id):
                continue
            try:
                # Dials us never: the dialer refuses our own ID.
                await self.dialer.connect(peer_id, lookup=False, purpose="mdns")
                self.connected.add(peer_id)
                log.info("mDNS: connected to %s", peer_id)
            except Exception as exc:  # noqa: BLE001 — a LAN neighbour may be gone
                log.debug("mDNS: could not connect to %s: %s", peer_id, exc)

    async def run(self) -> None:
        while True:
            await self.step()
            await trio.sleep(self.interval)


def tcp_port(addrs: Iterable[Any]) -> int:
    """The port of our first plain TCP listen address (what the mDNS record
    advertises), 0 if there is none. Not the first address as such: a QUIC
    one (``/udp/…/quic-v1``) has no TCP port, and asking it for one failed
    the node's start with ``mdns = true``."""
    for a in addrs:
        text = str(a)
        if "/tcp/" in text and "/ws" not in text:
            return int(a.value_for_protocol("tcp"))
    return 0


async def run_mdns(host: Any, dialer: Dialing, me: ID) -> None:
    """Advertise ``host`` over mDNS and connect to the peers it discovers."""
    from libp2p.discovery.mdns.mdns import MDNSDiscovery

    discovery = MDNSDiscovery(host.get_network(), port=tcp_port(host.get_transport_addrs()), host=host)
    discovery.start()
    try:
        connector = MdnsConnector(
            dialer, lambda: [pid for pid, _ in discovery.listener.discovered_services.values() if pid != me]
        )
        await connector.run()
    finally:
        with trio.CancelScope(shield=True):
            try:
                discovery.stop()
            except Exception as exc:  # noqa: BLE001
                log.debug("mDNS stop failed: %r", exc)
