"""Circuit relay v2 between real nodes on 127.0.0.1 (behind real NATs:
tests/reachability/test_relay_nat.py).

A peer reached only through a relay works like any other (ping, direct
messages, pub/sub), and the relay gives each client no more than its
share: reservations keyed by the connection and bounded per IP, circuits
bounded per peer, and every circuit cut at its data or time limit.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

import pytest
import trio

from agentp2p.network.framing import length_prefixed, read_message
from agentp2p.network.relayed import relayed_connections
from agentp2p.node import Node
from agentp2p.protocol.autonat.config import AutoNATConfig
from agentp2p.protocol.relay.client import RelayError, open_circuit, reserve
from agentp2p.protocol.relay.codec import HOP_PROTOCOL, STOP_PROTOCOL, decode_hop, decode_stop, pb
from agentp2p.protocol.relay.config import RelayConfig
from agentp2p.testing import local_config, wait_until

QUIET = AutoNATConfig(client=False)


def cfg(**relay: object) -> object:
    return local_config(swim=False, autonat=QUIET, relay=RelayConfig(**relay))  # type: ignore[arg-type]


def circuit_of(node: Node) -> str:
    return node.stats()["relay"]["circuit_addrs"][0] + f"/p2p/{node.peer_id}"


@contextlib.asynccontextmanager
async def relayed(relay_cfg: dict | None = None) -> AsyncIterator[tuple[Node, Node, Node]]:
    """A relay R, a node B with a reservation on R, a node A that knows B only by its circuit."""
    async with Node(cfg(service="on", **(relay_cfg or {}))) as r:
        async with Node(cfg(relays=[r.addrs[0]])) as b:
            await wait_until(lambda: bool(b.stats()["relay"]["circuit_addrs"]), 15, "B's reservation")
            async with Node(cfg()) as a:
                yield r, a, b


@pytest.mark.trio
async def test_a_peer_behind_a_relay_works_like_any_other() -> None:
    async with relayed() as (r, a, b):
        await a.connect(circuit_of(b))
        assert a.stats()["relay"]["client"]["dials_ok"] == 1
        assert relayed_connections(a.host, b.peer_id) and relayed_connections(b.host, a.peer_id)
        assert await a.ping(b.peer_id) > 0
        # A direct message, reliable and acknowledged, over the circuit.
        async with trio.open_nursery() as nursery:
            got: list[bytes] = []

            async def take() -> None:
                got.append((await b.receive()).payload)

            nursery.start_soon(take)
            await a.send(b.peer_id, b"through the relay", timeout=20)
        assert got == [b"through the relay"]
        # Pub/sub meshes over it too.
        async with b.subscribe("t") as sub:
            await wait_until(lambda: b.peer_id in a.topic_peers("t"), 15, "A sees B's subscription")
            await a.publish("t", b"hello")
            with trio.fail_after(15):
                assert (await sub.receive()).data == b"hello"
        stats = r.stats()["relay"]["relay"]
        assert stats["circuits"] == 1 and stats["circuits_open"] == 1
        assert r.stats()["relay"]["relay"]["books_granted"] == 1


@pytest.mark.trio
async def test_peers_learn_our_circuits_from_identify() -> None:
    """The circuit is in the signed peer record too: a py-libp2p receiver keeps
    only the record's addresses when identify carries one."""
    async with relayed() as (r, a, b):
        await a.connect(b.addrs[0])  # directly: A learns B's addresses from identify
        circuit = b.stats()["relay"]["circuit_addrs"][0]
        await wait_until(lambda: any(str(x).startswith(circuit) for x in a.dialer.known_addrs(b.peer_id)), 10,
                         "B's circuit in A's peerstore")


@pytest.mark.trio
async def test_a_circuit_ends_at_its_data_limit_and_its_slot_is_freed() -> None:
    async with relayed({"circuit_data": 64 * 1024}) as (r, a, b):
        await a.connect(circuit_of(b))
        with trio.move_on_after(10), contextlib.suppress(Exception):  # 200 KiB: the cut comes at 64
            await a.send(b.peer_id, b"x" * (200 * 1024), timeout=10, wait="stored")
        await wait_until(lambda: r.stats()["relay"]["relay"].get("ended_data_limit", 0) == 1, 10, "the cut")
        await wait_until(lambda: r.stats()["relay"]["relay"]["circuits_open"] == 0, 10, "the slot freed")
        # Both ends notice the cut. A direct connection may follow: on loopback
        # B is dialable (identify told A where), and messaging retries.
        await wait_until(lambda: not relayed_connections(a.host, b.peer_id), 10, "A's relayed connection closed")
        await wait_until(lambda: not relayed_connections(b.host, a.peer_id), 10, "B's relayed connection closed")


@pytest.mark.trio
async def test_an_idle_circuit_ends_at_its_duration() -> None:
    async with relayed({"circuit_duration": 1.0}) as (r, a, b):
        await a.connect(circuit_of(b))
        # Nothing is sent: a limit checked only on reads would never fire.
        await wait_until(lambda: r.stats()["relay"]["relay"].get("ended_duration_limit", 0) == 1, 10, "the cut")
        await wait_until(lambda: r.stats()["relay"]["relay"]["circuits_open"] == 0, 10, "the slot freed")
        await wait_until(lambda: not relayed_connections(b.host, a.peer_id), 10, "B's relayed connection closed")


@pytest.mark.trio
async def test_reservations_are_bounded_per_ip_and_belong_to_the_connection() -> None:
    async with Node(cfg(service="on", max_reservations_per_ip=2)) as r, \
            Node(cfg()) as c1, Node(cfg()) as c2, Node(cfg()) as c3:
        for c in (c1, c2, c3):
            await c.connect(r.addrs[0])
        await reserve(c1.dialer, r.peer_id, 5)
        await reserve(c1.dialer, r.peer_id, 5)  # a refresh replaces c1's own
        await reserve(c2.dialer, r.peer_id, 5)
        with pytest.raises(RelayError) as refused:
            await reserve(c3.dialer, r.peer_id, 5)  # a third from 127.0.0.1
        assert refused.value.status == pb.RESERVATION_REFUSED
        # A RESERVE naming other peers still reserves for the sender only (py-libp2p's
        # relay takes the ID from the message: one peer could fill every slot).
        stream = await c1.dialer.open_stream(r.peer_id, [HOP_PROTOCOL], lookup=False)
        spoof = pb.HopMessage(type=pb.HopMessage.RESERVE, peer=pb.Peer(id=c3.peer_id.to_bytes()))
        await stream.write(length_prefixed(spoof.SerializeToString()))
        assert decode_hop(await read_message(stream, 4096)).status == pb.OK
        books = r.services["relay"].hop.books  # type: ignore[attr-defined]
        assert books.reservations == 2 and books.holds(c1.peer_id, trio.current_time())
        assert not books.holds(c3.peer_id, trio.current_time())


@pytest.mark.trio
async def test_circuits_are_bounded_per_peer_and_need_a_reservation() -> None:
    async with relayed({"max_circuits_per_peer": 1}) as (r, a, b):
        async with Node(cfg()) as c:
            await a.connect(circuit_of(b))
            await c.connect(r.addrs[0])
            with pytest.raises(RelayError) as full:
                await open_circuit(c.dialer, r.peer_id, b.peer_id, 5)  # B already has its one circuit
            assert full.value.status == pb.RESOURCE_LIMIT_EXCEEDED
            with pytest.raises(RelayError) as none:
                await open_circuit(b.dialer, r.peer_id, c.peer_id, 5)  # C holds no reservation
            assert none.value.status == pb.NO_RESERVATION


@pytest.mark.trio
async def test_a_reservation_ends_when_its_peer_disconnects() -> None:
    async with Node(cfg(service="on")) as r, Node(cfg()) as a, Node(cfg()) as c:
        await c.connect(r.addrs[0])
        await reserve(c.dialer, r.peer_id, 5)
        books = r.services["relay"].hop.books  # type: ignore[attr-defined]
        assert books.reservations == 1
        await c.disconnect(r.peer_id)
        await wait_until(lambda: books.reservations == 0, 10, "the reservation dropped")
        await a.connect(r.addrs[0])
        with pytest.raises(RelayError) as none:
            await open_circuit(a.dialer, r.peer_id, c.peer_id, 5)
        assert none.value.status == pb.NO_RESERVATION


@pytest.mark.trio
async def test_a_client_reserves_again_when_its_relay_connection_drops() -> None:
    async with relayed() as (r, a, b):
        books = r.services["relay"].hop.books  # type: ignore[attr-defined]
        await b.disconnect(r.peer_id)
        await wait_until(lambda: b.stats()["relay"]["client"]["reservations"] >= 2, 15, "B's new reservation")
        assert books.reservations == 1
        await a.connect(circuit_of(b))
        assert relayed_connections(a.host, b.peer_id)


@pytest.mark.trio
async def test_only_a_relay_we_reserved_on_may_end_circuits_here() -> None:
    async with relayed() as (r, a, b):
        # A, not a relay of B's, sends B a stop CONNECT as if relaying someone.
        await a.connect(b.addrs[0])
        stream = await a.dialer.open_stream(b.peer_id, [STOP_PROTOCOL], lookup=False)
        connect = pb.StopMessage(type=pb.StopMessage.CONNECT, peer=pb.Peer(id=r.peer_id.to_bytes()))
        await stream.write(length_prefixed(connect.SerializeToString()))
        answer = decode_stop(await read_message(stream, 4096))
        assert answer.status == pb.PERMISSION_DENIED
        await wait_until(lambda: b.stats()["relay"]["client"].get("circuits_refused") == 1, 5, "the refusal counted")
        assert not relayed_connections(b.host, a.peer_id)


@pytest.mark.trio
async def test_malformed_requests_are_answered_and_counted() -> None:
    async with Node(cfg(service="on")) as r, Node(cfg()) as c:
        await c.connect(r.addrs[0])
        stream = await c.dialer.open_stream(r.peer_id, [HOP_PROTOCOL], lookup=False)
        await stream.write(length_prefixed(b"\x08\x07\xff\xff"))
        assert decode_hop(await read_message(stream, 4096)).status == pb.MALFORMED_MESSAGE
        assert r.stats()["relay"]["relay"]["malformed"] == 1


@pytest.mark.trio
async def test_autonat_will_not_judge_over_a_circuit() -> None:
    from agentp2p.protocol.autonat.codec import PROTOCOL_ID, Status, decode_response, encode_request
    
    lab = AutoNATConfig(client=False, allow_private=True)
    async with Node(cfg(service="on")) as r:
        async with Node(local_config(swim=False, autonat=lab, relay=RelayConfig(relays=[r.addrs[0]]))) as b:
            await wait_until(lambda: bool(b.stats()["relay"]["circuit_addrs"]), 15, "B's reservation")
            async with Node(cfg()) as a:
                await a.connect(circuit_of(b))
                stream = await a.dialer.open_stream(b.peer_id, [PROTOCOL_ID], lookup=False)
                await stream.write(length_prefixed(encode_request(a.peer_id.to_bytes(), [])))
                answer = decode_response(await read_message(stream, 4096))
                # No IP is known for a relayed peer: nothing may be dialed (the spec's rule).
                assert answer.status is Status.E_DIAL_REFUSED


@pytest.mark.trio
async def test_a_direct_address_that_hangs_leaves_the_relay_its_turn() -> None:
    """Behind a NAT, a peer's direct addresses often hang (dropped SYNs)
    rather than fail: the dialer gives them half its time, then the relay."""
    held: list[trio.SocketStream] = []

    async def swallow(stream: trio.SocketStream) -> None:
        held.append(stream)  # accept, never answer: the handshake waits
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, swallow, 0, host="127.0.0.1"))
        silent = listeners[0].socket.getsockname()[1]
        async with relayed() as (r, _a, b):
            async with Node(local_config(swim=False, autonat=QUIET, dial_timeout=4.0)) as a:
                a.dialer.add_addrs(b.peer_id, [f"/ip4/127.0.0.1/tcp/{silent}"])
                t0 = trio.current_time()
                await a.connect(circuit_of(b))
                assert relayed_connections(a.host, b.peer_id)
                assert held, "the direct address was tried first"
                assert trio.current_time() - t0 < 4.0
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_relay_will_not_serve_over_a_circuit() -> None:
    """Chained circuits would hide the client's IP from the per-IP bounds."""
    async with relayed() as (r, a, b):
        b.services["relay"]._serve(True)  # type: ignore[attr-defined]  # B offers relay service too
        await a.connect(circuit_of(b))
        with pytest.raises(RelayError) as denied:
            await reserve(a.dialer, b.peer_id, 5)
        assert denied.value.status == pb.PERMISSION_DENIED
        assert b.stats()["relay"]["relay"]["refused_relayed"] == 1


@pytest.mark.trio
async def test_auto_relay_reserves_only_on_relays_it_reaches_directly() -> None:
    async with relayed() as (r, a, r2):
        r2.services["relay"]._serve(True)  # type: ignore[attr-defined]  # r2 relays too, but A reaches it via R
        await a.connect(circuit_of(r2))
        await a.connect(r.addrs[0])
        await wait_until(lambda: "/libp2p/circuit/relay/0.2.0/hop" in a.context.protocols_of(r2.peer_id), 10,
                         "A knows r2 offers relay service")
        svc = a.services["relay"]
        svc.follow_reachability(public=False, private=True)  # type: ignore[attr-defined]
        await svc._keep(a.context)  # type: ignore[attr-defined]  # one whole pass over the candidates, here
        assert list(svc.granted) == [r.peer_id]  # type: ignore[attr-defined]
        assert svc.counters["reservations_failed"] == 0  # type: ignore[attr-defined]
