"""WebSocket transport and the mDNS connector."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from libp2p.peer.id import ID

from agentp2p.node import Node
from agentp2p.protocol.mdns import MdnsConnector, tcp_port
from agentp2p.testing import local_config, wait_until


async def test_websocket_listen_and_dial_both_ways() -> None:
    async with Node(local_config(listen=["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"])) as a:
        ws_addr = next(x for x in a.addrs if "/ws/" in x)
        async with Node(local_config()) as tcp_only:  # listens on TCP, dials ws
            await tcp_only.connect(ws_addr)
            assert await tcp_only.ping(a.peer_id) > 0
        async with Node(local_config(listen=["/ip4/127.0.0.1/tcp/0/ws"])) as ws_only:
            tcp_addr = next(x for x in a.addrs if "/ws/" not in x)
            await ws_only.connect(tcp_addr)  # ws-only node still dials TCP
            assert await ws_only.ping(a.peer_id) > 0
            await a.connect(ws_only.addrs[0])  # and is dialed over ws


async def test_mdns_connector_dials_discovered_peers_once() -> None:
    # SWIM off: b's SWIM would redial a after the disconnect below.
    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        # What zeroconf's listener would have recorded for b:
        a.host.get_peerstore().add_addrs(b.peer_id, b.listen_addrs, 120)
        ghost = ID.from_base58("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq")
        found = [b.peer_id, a.peer_id, ghost]  # self and an address-less peer are skipped
        connector = MdnsConnector(a.dialer, lambda: found, cooldown=60)
        await connector.step()
        assert a.is_connected(b.peer_id) and connector.connected == {b.peer_id}
        await a.disconnect(b.peer_id)
        await wait_until(lambda: not a.is_connected(b.peer_id))
        await connector.step()  # cool-down: no immediate redial
        assert not a.is_connected(b.peer_id)


async def test_mdns_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node with the default config starts no mDNS: no zeroconf instance,
    no advertisement, no mDNS task. A node with ``mdns=True`` next to it shows
    the probe would see one (zeroconf itself is faked: tests stay on loopback)."""
    import libp2p.discovery.mdns.mdns as library_mdns

    started: list[object] = []

    class FakeDiscovery:
        def __init__(self, swarm: object, **kwargs: object) -> None:
            self.swarm = swarm
            self.listener = SimpleNamespace(discovered_services={})

        def start(self) -> None:
            started.append(self.swarm)

        def stop(self) -> None:
            pass

    monkeypatch.setattr(library_mdns, "MDNSDiscovery", FakeDiscovery)

    def mdns_tasks(node: Node) -> list[str]:
        assert node._nursery is not None
        return [t.name for t in node._nursery.child_tasks if "mdns" in t.name]

    async with Node(local_config()) as default, Node(local_config(mdns=True)) as on:
        await wait_until(lambda: on.host.get_network() in started, what="the mdns=True node to advertise")
        assert mdns_tasks(on)
        assert default.host.get_network() not in started
        assert mdns_tasks(default) == []


async def test_mdns_advertises_the_tcp_port_when_quic_is_listed_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mdns = true`` beside a QUIC listen address: the record carries the TCP
    listener's port. It took the first address that was not /ws, and a
    /udp/…/quic-v1 one has no TCP port: the node failed to start
    (ProtocolLookupError)."""
    import libp2p.discovery.mdns.mdns as library_mdns

    ports: list[object] = []

    class FakeDiscovery:
        def __init__(self, swarm: object, **kwargs: object) -> None:
            ports.append(kwargs.get("port"))
            self.listener = SimpleNamespace(discovered_services={})

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

    monkeypatch.setattr(library_mdns, "MDNSDiscovery", FakeDiscovery)
    listen = ["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"]
    async with Node(local_config(listen=listen, mdns=True, swim=False)) as node:
        await wait_until(lambda: bool(ports), what="the mDNS advertisement")
        tcp = next(a for a in node.addrs if "/tcp/" in a)
        assert ports == [int(tcp.split("/tcp/")[1].split("/")[0])]
    assert tcp_port(["/ip4/127.0.0.1/udp/4001/quic-v1"]) == 0  # nothing to advertise, as before
