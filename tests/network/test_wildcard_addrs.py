"""A node bound to a wildcard (``/ip4/0.0.0.0``, the daemon's default)
advertises each local interface's address instead.

py-libp2p reports the bound address as it is, and advertises it so: in
identify, its signed peer record, and (through our node) SWIM's signed
"alive" and the capability record. Nobody can dial ``0.0.0.0``; SWIM left
it out, so such a node told the network no address at all.

The tests never bind a wildcard (127.0.0.1 only): the node listens on
127.0.0.1 and its listener reports ``0.0.0.0`` with the same port, which is
exactly what py-libp2p reports for a wildcard bind; the interfaces are
pinned to loopback.
"""

from __future__ import annotations

from types import SimpleNamespace

from multiaddr import Multiaddr

from agentp2p.network import interfaces
from agentp2p.network.interfaces import expand_wildcards
from agentp2p.node import Node
from agentp2p.protocol.swim import service as swim_service
from agentp2p.protocol.swim.service import SwimService
from agentp2p.protocol.swim.wire import MAX_ADDRS
from agentp2p.testing import local_config, wait_until

from agentp2p.application.records.service import _record_addrs as records_addrs

from tests.adversarial.swim_attacker import FAST

IPS = (["192.0.2.7", "127.0.0.1"], ["fd00::7", "::1"])


def test_expand_wildcards_lists_each_interface_loopback_last_and_keeps_the_rest() -> None:
    got = expand_wildcards(
        [Multiaddr("/ip4/0.0.0.0/tcp/4001"), Multiaddr("/ip6/::/udp/4001/quic-v1"),
         Multiaddr("/ip4/127.0.0.1/tcp/4001"), Multiaddr("/ip4/10.1.2.3/tcp/9/p2p-circuit")],
        IPS,
    )  # fmt: skip
    assert [str(a) for a in got] == [
        "/ip4/192.0.2.7/tcp/4001", "/ip4/127.0.0.1/tcp/4001",  # the explicit 127.0.0.1 one: not twice
        "/ip6/fd00::7/udp/4001/quic-v1", "/ip6/::1/udp/4001/quic-v1",
        "/ip4/10.1.2.3/tcp/9/p2p-circuit",
    ]  # fmt: skip
    # A /p2p suffix (identify's form) stays on each.
    full = expand_wildcards([Multiaddr("/ip4/0.0.0.0/tcp/1/p2p/12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8")], IPS)
    assert [str(a).split("/")[2] for a in full] == ["192.0.2.7", "127.0.0.1"]
    assert all(str(a).endswith("/p2p/12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8") for a in full)


def test_the_machines_interfaces_always_include_loopback_and_never_a_link_local_one() -> None:
    v4, v6 = interfaces.local_ips()
    assert v4[-1] == "127.0.0.1" and v6[-1] == "::1"
    assert not any(ip.lower().startswith("fe80") for ip in v6)


def test_an_interface_listing_that_fails_or_holds_junk_leaves_the_rest(monkeypatch) -> None:
    from types import SimpleNamespace

    import ifaddr

    ip = SimpleNamespace
    adapters = [SimpleNamespace(ips=None), SimpleNamespace(),
                SimpleNamespace(ips=[ip(ip="not an ip"), ip(ip="169.254.1.1"), ip(ip=("fe80::1", 0, 2)),
                                     ip(ip="192.0.2.9"), ip(ip=("fd00::9", 0, 0)), ip(ip=None), ip()])]  # fmt: skip
    monkeypatch.setattr(ifaddr, "get_adapters", lambda: adapters)
    monkeypatch.setattr(interfaces, "_interfaces", None)
    assert interfaces.local_ips() == (("192.0.2.9", "127.0.0.1"), ("fd00::9", "::1"))

    def broken() -> list:
        raise OSError("no netlink")

    monkeypatch.setattr(ifaddr, "get_adapters", broken)
    monkeypatch.setattr(interfaces, "_interfaces", None)
    assert interfaces.local_ips() == (("127.0.0.1",), ("::1",))


def test_swim_advertises_no_more_addresses_than_a_member_update_may_carry() -> None:
    # A receiver rejects the whole frame past the wire's bound: a node on
    # many interfaces must cut its list, not be silenced.
    many = [Multiaddr(f"/ip4/10.0.0.{i}/tcp/4001") for i in range(MAX_ADDRS + 5)]
    long = Multiaddr("/dns4/" + ".".join(["a" * 60] * 4) + "/tcp/1/p2p/12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8")
    assert len(long.to_bytes()) > swim_service.MAX_ADDR_BYTES
    got = swim_service._dialable([long, Multiaddr("/ip4/0.0.0.0/tcp/1"), *many])
    assert got == [a.to_bytes() for a in many[:MAX_ADDRS]]
    # Loopback ones go last, so a cut drops them first.
    loop = Multiaddr("/ip4/127.0.0.1/tcp/4001")
    assert loop.to_bytes() not in swim_service._dialable([loop, *many])
    assert swim_service._dialable([loop, many[0]]) == [many[0].to_bytes(), loop.to_bytes()]


def _as_wildcard(node: Node) -> None:
    """Make ``node``'s listener report ``/ip4/0.0.0.0`` with its real port, as
    py-libp2p does for a wildcard bind."""
    inner = node.host.get_transport_addrs

    def reported() -> list[Multiaddr]:
        return [Multiaddr(str(a).replace("/ip4/127.0.0.1/", "/ip4/0.0.0.0/")) for a in inner()]

    node.host.get_transport_addrs = reported  # type: ignore[method-assign]


async def test_a_wildcard_listener_advertises_its_interfaces_to_swim_identify_and_records(monkeypatch) -> None:
    monkeypatch.setattr(interfaces, "local_ips", lambda: (("127.0.0.1",), ("::1",)))
    swim_a = SwimService(FAST)
    a = Node(local_config(), services=[swim_a])
    _as_wildcard(a)
    async with a:
        port = str(a.listen_addrs[0]).split("/")[-1]
        # The library's view: the wildcard, as bound, and advertised as is.
        assert [str(x) for x in a.listen_addrs] == [f"/ip4/0.0.0.0/tcp/{port}"]
        here = f"/ip4/127.0.0.1/tcp/{port}"
        # Ours: where a peer can dial us.
        assert [str(x) for x in a.context.listen_addrs()] == [here]
        assert a.addrs == a.dialable_addrs() == [f"{here}/p2p/{a.peer_id}"]
        assert [str(x) for x in a.host.get_addrs()] == [f"{here}/p2p/{a.peer_id}"]  # identify and its peer record
        assert swim_a._core is not None and swim_a._core.addrs == (Multiaddr(here).to_bytes(),)  # SWIM's "alive"
        assert [str(x) for x in records_addrs(a.context)] == [here]
        # A peer that learns of us through identify never holds the wildcard.
        async with Node(local_config(bootstrap=[a.addrs[0]])) as b:
            await wait_until(lambda: bool(b.context.protocols_of(a.peer_id)), what="b identified a")
            known = {str(x).split("/p2p/")[0] for x in b.dialer.known_addrs(a.peer_id)}
            assert here in known and not any("0.0.0.0" in k for k in known), known


def test_local_clients_get_loopback_first_and_remote_relay_clients_no_private_address(monkeypatch) -> None:
    from agentp2p.protocol.relay.service import RelayService

    monkeypatch.setattr(interfaces, "local_ips", lambda: (("192.0.2.7", "10.0.0.7", "127.0.0.1"), ("::1",)))
    wild = [Multiaddr("/ip4/0.0.0.0/tcp/4001")]
    listen = expand_wildcards(wild)
    assert [str(a) for a in listen] == ["/ip4/192.0.2.7/tcp/4001", "/ip4/10.0.0.7/tcp/4001", "/ip4/127.0.0.1/tcp/4001"]
    node = SimpleNamespace(listen_addrs=wild, peer_id="12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8",
                           addrs=[f"{a}/p2p/x" for a in listen])  # fmt: skip
    assert Node.dialable_addrs(node)[0] == "/ip4/127.0.0.1/tcp/4001/p2p/x"  # type: ignore[arg-type]
    relay = RelayService()
    relay._ctx = SimpleNamespace(listen_addrs=lambda: listen)  # type: ignore[assignment]
    # No public address known: the LAN ones (a lab), not loopback, which a
    # client elsewhere would dial on its own machine...
    assert relay._relay_addrs() == ["/ip4/192.0.2.7/tcp/4001", "/ip4/10.0.0.7/tcp/4001"]
    # ... unless loopback is all there is (a devnet on 127.0.0.1).
    relay._ctx = SimpleNamespace(listen_addrs=lambda: [Multiaddr("/ip4/127.0.0.1/tcp/4001")])  # type: ignore[assignment]
    assert relay._relay_addrs() == ["/ip4/127.0.0.1/tcp/4001"]
    relay._ctx = SimpleNamespace(listen_addrs=lambda: listen)  # type: ignore[assignment]
    # One confirmed public (AutoNAT): the LAN and loopback ones are of no use to a client far away.
    relay._public_addrs = ["/ip4/192.0.2.7/tcp/4001"]
    assert relay._relay_addrs() == ["/ip4/192.0.2.7/tcp/4001"]
