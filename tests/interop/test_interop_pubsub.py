"""Gossipsub between an agentp2p node and go-libp2p-pubsub.

500 messages each way, in both dial directions, and none may be lost.
go-libp2p-pubsub validates signatures on parallel workers, so delivery order
is not preserved: we compare sets. Both sides use StrictSign, so each
message also proves its author; we check the author the receiver reports.

Before a burst we wait until each side knows the other subscribes (and the
Go side has grafted us into its mesh): a message published before that
reaches nobody, by design of gossipsub, not by loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from agentp2p.node import Node, Subscription
from agentp2p.testing import local_config, wait_until
from tests.interop.gopeer import GoPeer

pytestmark = pytest.mark.interop

N = 500
DEADLINE = 30.0  # seconds for a whole burst to arrive; it takes about 1 s


@contextlib.asynccontextmanager
async def pair(binary: Path, python_dials: bool) -> AsyncIterator[tuple[Node, GoPeer]]:
    async with Node(local_config()) as py:
        if python_dials:
            async with GoPeer(binary) as go:
                await py.connect(go.addr)
                yield py, go
        else:
            async with GoPeer(binary, bootstrap=[py.addrs[0]]) as go:
                await wait_until(lambda: py.is_connected(go.peer_id), what="inbound connection from Go")
                yield py, go


async def joined(py: Node, go: GoPeer, topic: str) -> None:
    """Wait until both sides see each other subscribed and Go has us in its mesh."""
    await go.wait_mesh(topic, str(py.peer_id))
    await wait_until(
        lambda: go.peer_id in {str(p) for p in py.topic_peers(topic)}, what="Go peer in our topic peers"
    )
    await wait_until(
        lambda: go.peer_id in {str(p) for p in py.pubsub.mesh_peers(topic)},
        what="Go peer in our mesh",
    )


async def receive_from(sub: Subscription, sender: str, n: int) -> list[bytes]:
    """The next ``n`` messages authored by ``sender`` (py-libp2p also delivers our own)."""
    got: list[bytes] = []
    with trio.fail_after(DEADLINE):
        while len(got) < n:
            msg = await sub.receive()
            if str(msg.sender) == sender:
                got.append(msg.data)
    return got


async def go_receive(go: GoPeer, sender: str, n: int) -> list[bytes]:
    got: list[bytes] = []
    with trio.fail_after(DEADLINE):
        while len(got) < n:
            msg = await go.next_message(timeout=DEADLINE)
            assert msg.from_peer == sender
            got.append(msg.data)
    return got


DIRECTIONS = [pytest.param(True, id="python-dials-go"), pytest.param(False, id="go-dials-python")]


@pytest.mark.parametrize("python_dials", DIRECTIONS)
async def test_first_message_each_way(go_peer_binary: Path, python_dials: bool) -> None:
    """One message each way, checked field by field."""
    topic = "agentp2p/interop/one"
    async with pair(go_peer_binary, python_dials) as (py, go), py.subscribe(topic) as sub:
        await go.subscribe(topic)
        await joined(py, go, topic)

        await py.publish(topic, b"\x00from python\xff")
        msg = await go.next_message()
        assert (msg.topic, msg.data, msg.from_peer) == (topic, b"\x00from python\xff", str(py.peer_id))
        assert msg.received_from == str(py.peer_id)
        assert len(msg.seqno) == 8

        await go.publish(topic, b"from go")
        [data] = await receive_from(sub, go.peer_id, 1)
        assert data == b"from go"


@pytest.mark.parametrize("python_dials", DIRECTIONS)
async def test_500_each_way_none_lost(go_peer_binary: Path, python_dials: bool) -> None:
    topic = "agentp2p/interop/burst"
    async with pair(go_peer_binary, python_dials) as (py, go), py.subscribe(topic) as sub:
        await go.subscribe(topic)
        await joined(py, go, topic)
        py_sent = {b"py-%d" % i for i in range(N)}
        go_sent = {b"go-%d" % i for i in range(N)}

        # Both bursts at once: the two directions share one connection.
        results: dict[str, list[bytes]] = {}

        async def py_side() -> None:
            for data in sorted(py_sent):
                await py.publish(topic, data)

        async def go_side() -> None:
            for data in sorted(go_sent):
                await go.publish(topic, data)

        async def collect_go() -> None:
            results["go"] = await go_receive(go, str(py.peer_id), N)

        async def collect_py() -> None:
            results["py"] = await receive_from(sub, go.peer_id, N)

        async with trio.open_nursery() as nursery:
            for task in (collect_go, collect_py, py_side, go_side):
                nursery.start_soon(task)

        assert len(results["go"]) == N and set(results["go"]) == py_sent
        assert len(results["py"]) == N and set(results["py"]) == go_sent
        stats = py.stats()["pubsub"]
        assert stats["dropped_inbound"] == stats["dropped_outbound"] == stats["rejected"] == 0
        # No duplicates trail in: the next message each side gets is a new one.
        await py.publish(topic, b"end")
        assert (await go.next_message()).data == b"end"
        await go.publish(topic, b"end")
        assert await receive_from(sub, go.peer_id, 1) == [b"end"]


async def test_large_messages_each_way(go_peer_binary: Path) -> None:
    """Up to 1,000,000 bytes: under both sides' 1 MiB RPC limit, in one message."""
    topic = "agentp2p/interop/large"
    async with pair(go_peer_binary, python_dials=True) as (py, go), py.subscribe(topic) as sub:
        await go.subscribe(topic)
        await joined(py, go, topic)
        for size in (64 * 1024, 1_000_000):
            await py.publish(topic, b"p" * size)
            assert (await go.next_message()).data == b"p" * size
            await go.publish(topic, b"g" * size)
            assert await receive_from(sub, go.peer_id, 1) == [b"g" * size]
