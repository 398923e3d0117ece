"""Circuit relay v2 with go-libp2p, both ways round.

* A go-libp2p relay (its own relay service): an agentp2p node reserves a
  slot on it, and another agentp2p node reaches that one through it.
* Our relay: a go-libp2p node reserves a slot on it (go-libp2p's client,
  which checks our RESERVE answer), and an agentp2p node reaches the Go
  node through it.

A ping over the circuit proves the whole path: hop CONNECT, stop CONNECT,
then Noise and Yamux end to end through the relay.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from libp2p.peer.id import ID

from agentp2p.network.relayed import relayed_connections
from agentp2p.node import Node
from agentp2p.protocol.autonat.config import AutoNATConfig
from agentp2p.protocol.relay.config import RelayConfig
from agentp2p.testing import local_config, wait_until
from tests.interop.gopeer import GoPeer

pytestmark = pytest.mark.interop

QUIET = AutoNATConfig(client=False)


def cfg(**relay: object) -> object:
    return local_config(swim=False, autonat=QUIET, relay=RelayConfig(**relay))  # type: ignore[arg-type]


async def test_our_node_reserves_on_a_go_relay_and_is_reached_through_it(go_peer_binary: Path) -> None:
    async with GoPeer(go_peer_binary, flags=("--relay-service",)) as relay:
        async with Node(cfg(relays=[relay.addr])) as b:
            await wait_until(lambda: bool(b.stats()["relay"]["circuit_addrs"]), 15, "B's reservation on the Go relay")
            circuit = b.stats()["relay"]["circuit_addrs"][0]
            assert circuit.startswith(relay.addr.split("/p2p/")[0]) and relay.peer_id in circuit
            async with Node(cfg()) as a:
                await a.connect(f"{circuit}/p2p/{b.peer_id}")
                assert relayed_connections(a.host, b.peer_id)
                assert await a.ping(b.peer_id) > 0


async def test_a_go_node_reserves_on_our_relay_and_is_reached_through_it(go_peer_binary: Path) -> None:
    async with Node(cfg(service="on")) as r:
        # go-peer is ready only once go-libp2p's client accepted our reservation.
        async with GoPeer(go_peer_binary, flags=("--reserve", r.addrs[0])) as go:
            assert r.stats()["relay"]["relay"]["reservations_held"] == 1
            async with Node(cfg()) as a:
                target = ID.from_base58(go.peer_id)
                await a.connect(f"{r.addrs[0]}/p2p-circuit/p2p/{go.peer_id}")
                assert relayed_connections(a.host, target)
                assert await a.ping(target) > 0
                assert r.stats()["relay"]["relay"]["circuits"] == 1
