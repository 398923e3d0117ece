"""Hostile DHT peers on real sockets (issue #13): a peer that answers garbage,
one that names hundreds of fake "closer" peers (at an address that accepts
TCP and never speaks), one that never answers, one whose length prefix is
huge — none can stall a lookup past its deadline or grow the seeker's state;
and a peer that sends the server garbage loses its stream and earns an offence.

The hostile node is an ordinary node whose ``/agentp2p/kad/1.0.0`` handler
was replaced, so identify still tells its peers it is a DHT server.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from agentp2p.config import DHTConfig
from agentp2p.network.framing import encode_varint, length_prefixed
from agentp2p.node import Node
from agentp2p.protocol.kademlia import PROTOCOL_ID, Message, MessageType, Peer, decode_message, encode_message
from agentp2p.protocol.kademlia.streams import MessageStream
from agentp2p.testing import local_config, wait_until

#: Short deadlines so a stalled lookup would show: the whole query 3 s, one request 1 s.
FAST = DHTConfig(query_timeout=3.0, request_timeout=1.0)
SLACK = 1.5


def fake_peer_id() -> bytes:
    """An Ed25519-shaped peer ID nobody holds the key of."""
    return b"\x00\x24\x08\x01\x12\x20" + os.urandom(32)


Answer = Callable[[Message], Awaitable[bytes | None]]


def hostile(answer: Answer) -> Callable[[Any], Awaitable[None]]:
    """A kad handler that reads each request and writes whatever ``answer`` returns (None: nothing)."""

    async def handler(stream: Any) -> None:
        ms = MessageStream(stream, 1 << 20)
        while (raw := await ms.read()) is not None:
            out = await answer(decode_message(raw))
            if out is not None:
                await stream.write(out)

    return handler


@contextlib.asynccontextmanager
async def blackhole() -> AsyncIterator[str]:
    """A TCP address that accepts connections and never says a word."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    held: list[Any] = []

    async def accept() -> None:
        while True:
            sock, _ = await listener.accept()
            held.append(sock)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        try:
            yield f"/ip4/127.0.0.1/tcp/{listener.getsockname()[1]}"
        finally:
            nursery.cancel_scope.cancel()
            for s in held:
                s.close()
            listener.close()


@contextlib.asynccontextmanager
async def scene(answer: Answer) -> AsyncIterator[tuple[Node, Node, list[Node]]]:
    """Three honest servers, a hostile one, and a seeker connected to the hostile
    one and to one honest node (both in its table)."""
    async with contextlib.AsyncExitStack() as stack:
        honest = [await stack.enter_async_context(Node(local_config(swim=False)))]
        for _ in range(2):
            cfg = local_config(swim=False, bootstrap=[honest[0].addrs[0]])
            honest.append(await stack.enter_async_context(Node(cfg)))
        evil = await stack.enter_async_context(Node(local_config(swim=False)))
        evil.set_stream_handler(PROTOCOL_ID, hostile(answer))
        seeker = await stack.enter_async_context(Node(local_config(swim=False, dht=FAST)))
        await seeker.connect(evil.addrs[0])
        await seeker.connect(honest[0].addrs[0])
        await wait_until(lambda: {evil.peer_id, honest[0].peer_id} <= set(seeker.dht.routing_table_peers()),
                         what="the hostile and an honest peer in the seeker's table")
        await wait_until(lambda: all(n.dht.routing_table_size >= 2 for n in honest), what="honest tables")
        yield seeker, evil, honest


async def _timed(fn: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    start = trio.current_time()
    result = await fn()
    return result, trio.current_time() - start


async def _settles(seeker: Node) -> None:
    """Nothing outlives the queries: no pending request, no query, no idle sender for a dead peer."""
    await wait_until(lambda: seeker.dht.stats()["adapter"]["requests_pending"] == 0
                     and seeker.dht.stats()["adapter"]["queries_running"] == 0, 10, "the seeker's queries to end")


async def _garbage(req: Message) -> bytes:
    return length_prefixed(os.urandom(200))


async def _silent(req: Message) -> None:
    await trio.sleep_forever()


async def _huge_prefix(req: Message) -> bytes:
    return encode_varint(1 << 30)  # a 1 GiB message announced; nothing follows


@pytest.mark.parametrize("answer", [_garbage, _silent, _huge_prefix], ids=["garbage", "silent", "huge-prefix"])
async def test_a_bad_answerer_cannot_stall_a_lookup(answer: Answer) -> None:
    async with scene(answer) as (seeker, evil, honest):
        assert await honest[1].dht_put("adv/value", b"still found") >= 1
        # A lookup of a random key asks the hostile peer too; it ends by its deadline.
        peers, took = await _timed(lambda: seeker.dht.lookup(os.urandom(32)))
        assert took < FAST.query_timeout + SLACK
        assert set(peers) & {n.peer_id for n in honest}
        assert evil.peer_id not in peers
        value, took = await _timed(lambda: seeker.dht_get("adv/value"))
        assert value == b"still found" and took < FAST.query_timeout + SLACK
        await _settles(seeker)
        stats = seeker.dht.stats()["adapter"]
        # The hostile peer's answers were counted (garbage, a dead stream, a
        # timeout), nothing raised, and it is out of the table or on its way.
        assert stats["failures"] + stats["malformed_answers"] + stats["timeouts"] >= 1


async def test_fake_closer_peers_cost_a_deadline_not_memory() -> None:
    """Every answer names 64 fresh fake peers (the codec's cap) at an address that
    accepts TCP and never speaks; a second kind names 5,000 (refused whole)."""
    async with blackhole() as hole:
        named = [0]

        async def fakes(req: Message) -> bytes:
            n = 5000 if named[0] % 2 else 64
            named[0] += 1
            closer = tuple(Peer(fake_peer_id(), (trio_addr(hole),)) for _ in range(n))
            return length_prefixed(encode_message(Message(req.type, key=req.key, closer_peers=closer)))

        async with scene(fakes) as (seeker, evil, honest):
            for _ in range(3):
                peers, took = await _timed(lambda: seeker.dht.lookup(os.urandom(32)))
                assert took < FAST.query_timeout + SLACK
                assert set(peers) & {n.peer_id for n in honest}
            providers_before = seeker.dht.stats()["adapter"]["requests"]
            await honest[2].provide("adv/cap")
            found, took = await _timed(lambda: seeker.find_providers("adv/cap"))
            assert [p.peer_id for p in found] == [honest[2].peer_id]
            assert took < FAST.query_timeout + SLACK
            await _settles(seeker)
            assert named[0] >= 3
            core = seeker.dht.service.core  # type: ignore[union-attr]
            # The fakes never entered the table (they never answered), and the
            # per-response cap bounded what each answer could add to a lookup.
            assert len(core.table) <= 1 + len(honest) + 1
            assert seeker.dht.stats()["adapter"]["requests"] - providers_before < 300
            # Senders (streams) for peers that failed are forgotten once their requests end.
            await wait_until(lambda: seeker.dht.stats()["adapter"]["open_senders"] <= len(honest) + 2, 10,
                             "senders of the fake peers to go")


def trio_addr(addr: str) -> bytes:
    from multiaddr import Multiaddr

    return Multiaddr(addr).to_bytes()


async def test_garbage_requests_reset_the_stream_and_are_an_offence() -> None:
    async with Node(local_config(swim=False)) as victim, Node(local_config(swim=False)) as attacker:
        await attacker.connect(victim.addrs[0])
        # Undecodable bytes in a well-formed frame: malformed.
        stream = await attacker.dialer.open_stream(victim.peer_id, [PROTOCOL_ID])
        await stream.write(length_prefixed(b"\xff" * 64))
        ms = MessageStream(stream, 1 << 20)
        with trio.fail_after(5):
            assert await ms.read() is None  # reset (py-libp2p reads it as EOF)
        # A length prefix over the limit: refused before the body is read.
        stream = await attacker.dialer.open_stream(victim.peer_id, [PROTOCOL_ID])
        await stream.write(encode_varint(10 << 20) + b"x" * 100)
        with trio.fail_after(5):
            assert await MessageStream(stream, 1 << 20).read() is None
        stats = victim.dht.stats()["adapter"]
        assert stats["malformed"] == 1 and stats["oversized"] == 1
        assert victim.penalties.points(attacker.peer_id) > 5.5  # 1 + 5, halving each minute
        # The victim still answers an honest request on a fresh stream.
        reply = await attacker.dht.service.request(  # type: ignore[union-attr]
            victim.peer_id, Message(MessageType.FIND_NODE, key=b"\x12\x20" + os.urandom(32)))
        assert reply is not None and reply.type is MessageType.FIND_NODE


async def test_requests_over_the_per_peer_rate_reset_the_stream() -> None:
    dht = DHTConfig(inbound_requests_per_second=5.0, inbound_request_burst=10)
    async with Node(local_config(swim=False, dht=dht)) as victim, Node(local_config(swim=False)) as attacker:
        await attacker.connect(victim.addrs[0])
        ping = Message(MessageType.PING)
        ok = 0
        for _ in range(15):
            try:
                await attacker.dht.service.request(victim.peer_id, ping, timeout=5)  # type: ignore[union-attr]
                ok += 1
            except Exception:  # noqa: BLE001 — the refusal: a reset stream
                pass
        assert 10 <= ok < 15
        assert victim.dht.stats()["adapter"]["rate_limited"] >= 1
        assert victim.penalties.points(attacker.peer_id) > 0


async def test_streams_over_the_per_peer_bound_are_refused() -> None:
    dht = DHTConfig(max_inbound_streams_per_peer=3)
    async with Node(local_config(swim=False, dht=dht)) as victim, Node(local_config(swim=False)) as attacker:
        await attacker.connect(victim.addrs[0])
        streams = []
        for _ in range(5):
            with contextlib.suppress(Exception):  # a refused one may be reset before negotiation ends
                streams.append(await attacker.dialer.open_stream(victim.peer_id, [PROTOCOL_ID]))
        await wait_until(lambda: victim.dht.stats()["adapter"]["streams_refused"] == 2, 10, "2 streams refused")
        assert victim.dht.stats()["adapter"]["inbound_streams"] == 3
        for s in streams:
            with contextlib.suppress(Exception):
                await s.reset()
