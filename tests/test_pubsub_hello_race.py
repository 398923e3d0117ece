"""A subscription made while a peer's pubsub streams are being set up reaches that peer.

py-libp2p 0.8.1, which we used before, lost such a subscription: its hello
(our topics) was built before the write and the peer registered after it,
so a subscribe() in between reached the peer by neither path (found against
go-libp2p; docs/interop.md). We worked around it by re-announcing topics
when the peer's queue appeared; that workaround and the test of it, which
poked the library's queues, are gone with the library's router.

Our router cannot lose it: the peer becomes known to the router (and is
sent the hello, our topics at that moment) synchronously when its first
stream is up, and every later subscribe() is announced to every known peer;
what is sent before our stream is open waits in the peer's queue, in order.
These tests pin the outcome from both sides of the race.
"""

from __future__ import annotations

import trio

from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


async def _delivers(a: Node, b: Node, sub, topic: str) -> None:  # type: ignore[no-untyped-def]
    await wait_until(lambda: b.peer_id in a.pubsub.mesh_peers(topic), what="mesh")
    await a.publish(topic, b"reached")
    with trio.fail_after(10):
        while (msg := await sub.receive()).sender != a.peer_id:
            pass
    assert msg.data == b"reached"


async def test_topic_subscribed_before_connecting_reaches_the_peer() -> None:
    async with Node(local_config()) as a, Node(local_config()) as b:
        async with b.subscribe("raced") as sub, a.subscribe("raced"):
            # b subscribed with no peers: its announcement went to nobody; the
            # hello b sends a when they connect must carry the topic.
            await a.connect(b.addrs[0])
            await wait_until(lambda: b.peer_id in a.topic_peers("raced"), what="a learns b's topic")
            await wait_until(lambda: a.peer_id in b.topic_peers("raced"), what="b learns a's topic")
            await _delivers(a, b, sub, "raced")


async def test_topic_subscribed_while_connecting_reaches_the_peer() -> None:
    """Subscribe in every window of the connection set-up: right after the dial
    starts, and at each step of the scheduler until the streams are up."""
    for delay_steps in (0, 1, 5, 20, 50):
        async with Node(local_config()) as a, Node(local_config()) as b:
            async with a.subscribe("raced"):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(a.connect, b.addrs[0])
                    for _ in range(delay_steps):
                        await trio.lowlevel.checkpoint()
                    async with b.subscribe("raced") as sub:
                        await wait_until(lambda: b.peer_id in a.topic_peers("raced"),
                                         what=f"a learns b's topic (subscribed after {delay_steps} steps)")
                        await _delivers(a, b, sub, "raced")
