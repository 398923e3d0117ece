"""The relay's pure parts: its books, circuit addresses, and how they travel."""

from __future__ import annotations

import pytest
from multiaddr import Multiaddr

from agentp2p.errors import ConfigError
from agentp2p.network.addresses import AddressError, parse_peer_addr
from agentp2p.protocol.kademlia.service import from_wire_addrs, wire_addrs
from agentp2p.protocol.relay.client import split_circuit
from agentp2p.protocol.relay.codec import CodecError, decode_hop, pb
from agentp2p.protocol.relay.config import RelayConfig
from agentp2p.protocol.relay.reservations import Books, Refused

R = "12D3KooWBEd8kN6hH6rPVEJRgXBNaTaxtcoNKJUv5p47n7bqDgYY"
T = "12D3KooWMecAx9SFPjPfqtR5jqU4Rj7dYfT8BSHu9qrS6Yza3CNH"
CIRCUIT = f"/ip4/203.0.113.10/tcp/4001/p2p/{R}/p2p-circuit"


def books(**cfg: object) -> Books:
    return Books(RelayConfig(**cfg), refused=pb.RESERVATION_REFUSED,  # type: ignore[arg-type]
                 limit_exceeded=pb.RESOURCE_LIMIT_EXCEEDED, no_reservation=pb.NO_RESERVATION)


def test_reservations_are_bounded_in_all_and_per_ip_and_renewals_are_free() -> None:
    b = books(max_reservations=3, max_reservations_per_ip=2)
    b.reserve("a", "1.1.1.1", 0)
    b.reserve("b", "1.1.1.1", 0)
    with pytest.raises(Refused):
        b.reserve("c", "1.1.1.1", 0)
    b.reserve("a", "1.1.1.1", 10)  # a renewal takes no new slot
    b.reserve("c", "2.2.2.2", 0)
    with pytest.raises(Refused) as full:
        b.reserve("d", "3.3.3.3", 0)
    assert full.value.status == pb.RESERVATION_REFUSED and b.reservations == 3
    b.disconnected("b")
    b.reserve("d", "1.1.1.1", 0)  # b's slot, and its IP's, are free again
    assert b.stats["granted"] == 4 and b.stats["renewed"] == 1 and b.stats["ended_disconnect"] == 1


def test_reservations_expire() -> None:
    b = books(reservation_ttl=60)
    b.reserve("a", None, 0)
    assert b.holds("a", 59) and not b.holds("a", 60)
    b.expire(60)
    assert b.reservations == 0 and b.stats["expired"] == 1


def test_circuits_need_a_reservation_and_are_bounded() -> None:
    b = books(max_circuits=2, max_circuits_per_peer=1)
    with pytest.raises(Refused) as none:
        b.open_circuit("src", "dst", 0)
    assert none.value.status == pb.NO_RESERVATION
    b.reserve("dst", None, 0)
    b.reserve("dst2", None, 0)
    b.open_circuit("src", "dst", 0)
    with pytest.raises(Refused) as per_peer:
        b.open_circuit("other", "dst", 0)
    assert per_peer.value.status == pb.RESOURCE_LIMIT_EXCEEDED
    b.open_circuit("other", "dst2", 0)
    b.reserve("dst3", None, 0)
    with pytest.raises(Refused):
        b.open_circuit("third", "dst3", 0)  # two in all
    b.close_circuit("src", "dst")
    b.open_circuit("third", "dst3", 0)
    assert b.circuits == 2


def test_circuit_addresses_parse_to_the_peer_after_the_circuit() -> None:
    info = parse_peer_addr(f"{CIRCUIT}/p2p/{T}")
    assert str(info.peer_id) == T and [str(a) for a in info.addrs] == [CIRCUIT]
    relay_addr, relay, target = split_circuit(f"{CIRCUIT}/p2p/{T}")  # type: ignore[misc]
    assert str(relay_addr) == f"/ip4/203.0.113.10/tcp/4001/p2p/{R}" and str(relay) == R and str(target) == T
    assert split_circuit(f"/ip4/1.2.3.4/tcp/1/p2p/{R}") is None
    for bad in (f"{CIRCUIT}", f"/p2p-circuit/p2p/{T}", f"{CIRCUIT}/p2p/nope"):
        with pytest.raises(AddressError):
            parse_peer_addr(bad)


def test_circuit_addresses_survive_the_dht_wire() -> None:
    # Cut at the first /p2p/, a circuit became the relay's own address: peers
    # then dialed the relay expecting the NATed node's key (found in the NAT lab).
    wire = wire_addrs([Multiaddr(f"{CIRCUIT}/p2p/{T}"), Multiaddr(f"/ip4/10.1.0.2/tcp/4001/p2p/{T}")])
    assert [str(a) for a in from_wire_addrs(wire)] == [CIRCUIT, "/ip4/10.1.0.2/tcp/4001"]


def test_codec_and_config_refuse_nonsense() -> None:
    with pytest.raises(CodecError):
        decode_hop(b"\x12\x00")  # no type: a required field
    with pytest.raises(CodecError):
        decode_hop(pb.HopMessage(type=pb.HopMessage.STATUS).SerializeToString())  # STATUS without one
    with pytest.raises(ConfigError):
        RelayConfig(service="sometimes")
    with pytest.raises(ConfigError):
        RelayConfig(max_circuits=0)
    with pytest.raises(Exception):
        RelayConfig(relays=["/ip4/1.2.3.4/tcp/1"])  # no /p2p/: nobody to reserve with


def test_one_address_cannot_take_every_circuit_with_fresh_peer_ids() -> None:
    b = books(max_circuits=64, max_circuits_per_peer=8, max_circuits_per_ip=3)
    for target in ("t1", "t2"):
        b.reserve(target, "9.9.9.9", 0)
    for i in range(3):
        b.open_circuit(f"fresh-id-{i}", "t1" if i < 2 else "t2", 0, "1.2.3.4")
    with pytest.raises(Refused) as full:
        b.open_circuit("fresh-id-3", "t2", 0, "1.2.3.4")
    assert full.value.status == pb.RESOURCE_LIMIT_EXCEEDED
    b.open_circuit("fresh-id-4", "t2", 0, "5.6.7.8")  # another address is not held back
    b.close_circuit("fresh-id-0", "t1", "1.2.3.4")
    b.open_circuit("fresh-id-5", "t1", 0, "1.2.3.4")  # the slot came back


def test_an_ipv6_prefix_counts_as_one_address() -> None:
    b = books(max_reservations_per_ip=2)
    b.reserve("a", "2001:db8:1:2::1", 0)
    b.reserve("b", "2001:db8:1:2::ffff", 0)
    with pytest.raises(Refused):
        b.reserve("c", "2001:db8:1:2:abcd::9", 0)  # the same /64
    b.reserve("d", "2001:db8:1:3::1", 0)  # the next /64
