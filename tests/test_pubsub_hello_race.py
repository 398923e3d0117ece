"""py-libp2p 0.8.1 loses a subscription made while a peer's pubsub stream is set up.

``Pubsub._handle_new_peer`` builds the hello (our topics) first, awaits the
write, then registers the peer; ``subscribe()`` announces only to registered
peers. A topic subscribed in that window reaches the peer by neither path,
so the peer never sends us that topic. Found against go-libp2p (about 1 run
in 10 when the Go peer dials us and we subscribe right away); it is not
specific to Go. The fix re-announces our topics when the peer's queue is
created (agentp2p/protocol/pubsub.py, item 4; docs/interop.md).

The race window cannot be hit on demand, so these tests reproduce its exact
outcome: the hello the peer receives is stale (built before we subscribed)
and the subscribe() announcement ran before the peer was registered.
"""

from __future__ import annotations

from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.rpc_queue import RpcQueue

from agentp2p.config import PubSubConfig
from agentp2p.node import Node
from agentp2p.protocol.pubsub import PubSub
from agentp2p.testing import local_config, wait_until


def stale_hello(pubsub) -> None:  # type: ignore[no-untyped-def]
    """Make every hello look as if built before any subscription (the race's outcome)."""

    def hello() -> rpc_pb2.RPC:
        return rpc_pb2.RPC()

    pubsub.get_hello_packet = hello


async def test_topic_subscribed_during_peer_setup_still_reaches_the_peer() -> None:
    async with Node(local_config()) as a, Node(local_config()) as b:
        stale_hello(b.pubsub.pubsub)
        async with b.subscribe("raced") as sub, a.subscribe("raced"):
            # b subscribed with no peers: its announcement went to nobody, and
            # the hello b sends a will not carry the topic either.
            await a.connect(b.addrs[0])
            await wait_until(lambda: b.peer_id in a.topic_peers("raced"), what="a learns b's topic")
            await wait_until(lambda: a.peer_id in b.topic_peers("raced"), what="b learns a's topic")
            await wait_until(lambda: b.peer_id in a.pubsub.router.mesh.get("raced", ()), what="mesh")
            await a.publish("raced", b"reached")
            while (msg := await sub.receive()).sender != a.peer_id:
                pass
            assert msg.data == b"reached"


def test_new_peer_queue_gets_current_topics_first() -> None:
    """The re-announcement is the first thing queued, and only when we hold topics."""
    from libp2p import new_host

    ps = PubSub(new_host(), PubSubConfig())
    empty = RpcQueue()
    ps.pubsub.peer_queues["p1"] = empty
    assert len(empty) == 0  # no topics, nothing sent

    ps.pubsub.subscribed_topics_receive["t1"] = None  # type: ignore[assignment]
    ps.pubsub.subscribed_topics_receive["t2"] = None  # type: ignore[assignment]
    queue = RpcQueue()
    ps.pubsub.peer_queues["p2"] = queue
    assert len(queue) == 1
    rpc = queue._queue.pop()
    assert [(s.subscribe, s.topicid) for s in rpc.subscriptions] == [(True, "t1"), (True, "t2")]
    assert queue._queue.max_size == PubSubConfig().peer_queue_size
