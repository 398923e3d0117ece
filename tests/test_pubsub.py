"""Pub/sub: complete delivery, visible drops, validators, backpressure.

Gossipsub forwards a message to the topic's *mesh*, which each router
builds at its heartbeat from the peers it knows subscribe: a message
published before the meshes formed reaches only the peers the publisher
itself knows subscribe (flood publishing). Tests that measure delivery
therefore wait for the meshes first, as the go interop tests do.
"""

from __future__ import annotations

import trio


from agentp2p.config import PubSubConfig
from agentp2p.errors import PubSubError
from agentp2p.node import Node
from agentp2p.testing import local_config, network, wait_until

import pytest


def reached_for_sure(publisher: Node, subscribers: list[Node], topic: str) -> set[object]:
    """The subscribers each message of ``publisher`` reaches for sure: those
    it floods (the topic peers it knows), and from them on, over mesh links
    both ends hold. A link only one end holds (its GRAFT still on the way)
    carries nothing the other way, and what a mesh peer missed is never
    gossiped to it (IHAVE goes to peers outside the mesh)."""
    by_id = {n.peer_id: n for n in subscribers}
    frontier = [by_id[p] for p in publisher.topic_peers(topic) if p in by_id]
    seen = {n.peer_id for n in frontier}
    while frontier:
        n = frontier.pop()
        for p in n.pubsub.mesh_peers(topic):
            m = by_id.get(p)
            if m is not None and p not in seen and n.peer_id in m.pubsub.mesh_peers(topic):
                seen.add(p)
                frontier.append(m)
    return seen


def delivery_state(nodes: list[Node], subscribers: list[Node], topic: str, received: dict[int, list[bytes]],
                   n_msgs: int) -> str:  # fmt: skip
    """What a failed delivery test saw: who missed what (``received`` is by
    index in ``subscribers``), each node's links and losses."""
    lines = []
    short = {n.peer_id: f"node{i}" for i, n in enumerate(nodes)}
    for i, got in received.items() if n_msgs else ():
        missing = sorted(set(range(n_msgs)) - {int(x[1:]) for x in got})
        lines.append(f"{short[subscribers[i].peer_id]}: {len(got)} of {n_msgs}, missing {missing[:5]}..{missing[-5:]}")
    for i, n in enumerate(nodes):
        st = n.stats()["pubsub"]
        lines.append(f"node{i}: peers {[short.get(p, '?') for p in n.peers()]}, "
                     f"topic peers {[short.get(p, '?') for p in n.topic_peers(topic)]}, "
                     f"mesh {[short.get(p, '?') for p in n.pubsub.mesh_peers(topic)]}, "
                     + ", ".join(f"{k} {st.get(k)}" for k in ("dropped_inbound", "dropped_outbound",
                                                              "dropped_disconnected", "write_failures",
                                                              "peers_gone_with_queue", "open_retries")))
    return "\n".join(lines)


@pytest.mark.slow
async def test_1000_messages_reach_every_subscriber_of_5_node_topic() -> None:
    n_msgs = 1000
    async with network(5) as nodes:
        publisher, subscribers = nodes[1], [n for i, n in enumerate(nodes) if i != 1]
        received: dict[int, list[bytes]] = {i: [] for i in range(len(subscribers))}
        async with trio.open_nursery() as nursery:
            subs = []
            for node in subscribers:
                subs.append(await node.pubsub.open_subscription("load"))
            # "Each subscriber in some mesh" was not enough: a subscriber whose
            # only mesh link the other end has not taken yet (its GRAFT not
            # read) can miss the burst for good. (With that wait this test
            # timed out in CI three times, its cause not seen; this closes
            # one way to lose.) Relies on flood publishing (the default) and
            # on scores above the publish threshold (fresh peers: 0).
            everyone = {n.peer_id for n in subscribers}
            await wait_until(lambda: reached_for_sure(publisher, subscribers, "load") == everyone,
                             what="meshes that reach every subscriber",
                             detail=lambda: delivery_state(nodes, subscribers, "load", received, 0))

            async def drain(i: int) -> None:
                async for msg in subs[i]:
                    received[i].append(msg.data)
                    if len(received[i]) == n_msgs:
                        return

            for i in range(len(subs)):
                nursery.start_soon(drain, i)
            for k in range(n_msgs):
                await publisher.publish("load", b"m%05d" % k)
            await wait_until(lambda: all(len(r) >= n_msgs for r in received.values()), timeout=90,
                             what="every message at every subscriber",
                             detail=lambda: delivery_state(nodes, subscribers, "load", received, n_msgs))
        expected = [b"m%05d" % k for k in range(n_msgs)]
        for i, got in received.items():
            assert sorted(got) == expected, f"subscriber {i}: {len(got)} msgs, {len(set(got))} unique"
        for n in nodes:
            s = n.stats()["pubsub"]
            assert s["dropped_inbound"] == 0 and s["dropped_outbound"] == 0


async def test_relay_forwards_a_whole_burst() -> None:
    """X and Y connect only to the relay; X publishes 50 messages at once; Y gets all
    of them. (py-libp2p's router, which we used before, forwarded at most 10 msg/s
    per topic and peer by default and dropped the rest silently.)"""
    # Without SWIM, whose members would connect x and y directly.
    async with Node(local_config(swim=False)) as relay, relay.subscribe("burst"):
        async with Node(local_config(swim=False)) as x, Node(local_config(swim=False)) as y:
            await x.connect(relay.addrs[0])
            await y.connect(relay.addrs[0])
            async with y.subscribe("burst") as sub, x.subscribe("burst"):
                await wait_until(lambda: relay.peer_id in x.topic_peers("burst") and relay.peer_id in y.topic_peers("burst"))
                await wait_until(lambda: {x.peer_id, y.peer_id} <= set(relay.pubsub.mesh_peers("burst")), what="mesh")
                assert not x.is_connected(y.peer_id)
                n = 50
                for k in range(n):
                    await x.publish("burst", b"%d" % k)
                got: list[bytes] = []
                with trio.move_on_after(10):
                    while len(got) < n:
                        got.append((await sub.receive()).data)
                assert sorted(got) == sorted(b"%d" % k for k in range(n))


async def test_peer_queue_has_the_configured_bounds() -> None:
    async with network(2, pubsub=PubSubConfig(peer_queue_size=777)) as (a, b):
        await wait_until(lambda: a.pubsub.peer_queue(b.peer_id) is not None)
        queue = a.pubsub.peer_queue(b.peer_id)
        assert queue.max_items == 777 and queue.max_bytes == PubSubConfig().peer_queue_bytes


async def test_full_subscriber_buffer_drops_are_counted() -> None:
    async with network(2, pubsub=PubSubConfig(subscription_buffer=10)) as (a, b):
        async with b.subscribe("slow") as sub, b.subscribe("slow") as fast:
            await wait_until(lambda: b.peer_id in a.topic_peers("slow"))
            for k in range(30):
                await a.publish("slow", b"%d" % k)
                if fast.pending():
                    await fast.receive()
            await wait_until(lambda: sub.dropped == 20, what="20 counted drops")
            assert sub.pending() == 10
            assert b.stats()["pubsub"]["dropped_inbound"] >= 20


async def test_publish_backpressure_raises_instead_of_dropping() -> None:
    """A peer that stopped taking our writes: once its queue is past the
    high-water mark, publish() waits, then raises — nothing is dropped."""
    cfg = PubSubConfig(peer_queue_size=64, backpressure_high_water=0.5, publish_timeout=0.2)
    async with network(2, pubsub=cfg) as (a, b):
        async with b.subscribe("bp"):
            await wait_until(lambda: b.peer_id in a.topic_peers("bp"))
            await wait_until(lambda: a.pubsub.router._peers[b.peer_id].out_stream is not None)
            # Simulate a peer that stopped reading: our writes to it never complete
            # (yamux lets up to its 16 MiB window through first; this is what follows).
            stream = a.pubsub.router._peers[b.peer_id].out_stream
            unblock = trio.Event()

            async def stuck_write(data: bytes) -> None:
                await unblock.wait()

            stream.write = stuck_write
            with pytest.raises(PubSubError, match="timed out"):
                for k in range(64):
                    await a.publish("bp", b"x%d" % k)
            assert a.pubsub.peer_queue(b.peer_id).fill() > 0.5
            # At least one wait (a write already in flight when the stream got
            # stuck may complete and end a first wait early: CI saw 2).
            assert a.stats()["pubsub"]["backpressure_waits"] >= 1
            assert a.stats()["pubsub"]["dropped_outbound"] == 0
            unblock.set()


async def test_validator_rejects_and_raising_validator_is_contained() -> None:
    async with network(2) as (a, b):
        b.set_topic_validator("v", lambda m: not m.data.startswith(b"bad"))

        def explode(m):  # type: ignore[no-untyped-def]
            raise ValueError("validator bug")

        b.set_topic_validator("w", explode)
        async with b.subscribe("v") as sub, b.subscribe("w") as subw:
            await wait_until(lambda: b.peer_id in a.topic_peers("v") and b.peer_id in a.topic_peers("w"))
            await a.publish("w", b"never")
            await a.publish("v", b"bad one")
            await a.publish("v", b"good one")
            with trio.fail_after(10):
                msg = await sub.receive()
            assert msg.data == b"good one" and msg.sender == a.peer_id and msg.topic == "v"
            await wait_until(lambda: b.stats()["pubsub"]["rejected"] >= 2)
            assert subw.pending() == 0
            assert await a.ping(b.peer_id) > 0


async def test_node_runs_pubsub_before_listening() -> None:
    async with Node(local_config()) as node:
        assert node.pubsub.is_running


@pytest.mark.slow
async def test_publisher_at_1000_per_second_into_10_node_topic_loses_nothing() -> None:
    """Offered at 1,000 msg/s, every message reaches all nine subscribers:
    where the routers cannot keep up, publish() waits (backpressure) rather
    than any queue dropping."""
    # 150 messages x 10 in-process nodes x ~6 gossip copies each already
    # costs ~30 s of py-libp2p CPU; the benchmarks measure larger runs.
    n_msgs = 150
    async with network(10) as nodes:
        publisher, subscribers = nodes[0], nodes[1:]
        subs = [await n.pubsub.open_subscription("rate") for n in subscribers]
        await wait_until(
            lambda: all(len(n.topic_peers("rate")) >= 1 for n in subscribers)
            and len(publisher.topic_peers("rate")) >= 1
            and all(len(n.pubsub.mesh_peers("rate")) >= 1 for n in subscribers),
            # Ten nodes in one process open pubsub, DHT and SWIM streams to
            # each other at once; on a loaded CI machine the subscription
            # exchange took over 10 s (py-libp2p negotiates each stream).
            timeout=30,
            what="topic membership",
        )
        got: list[set[bytes]] = [set() for _ in subs]
        dup = [0 for _ in subs]

        async def drain(i: int) -> None:
            while len(got[i]) < n_msgs:
                data = (await subs[i].receive()).data
                if data in got[i]:
                    dup[i] += 1
                got[i].add(data)

        async with trio.open_nursery() as nursery:
            for i in range(len(subs)):
                nursery.start_soon(drain, i)
            start = trio.current_time()
            for k in range(n_msgs):
                # pace at 1,000 msg/s (publish itself may wait longer)
                await trio.sleep_until(start + k / 1000)
                await publisher.publish("rate", b"r%04d" % k)
            with trio.fail_after(120):
                while any(len(g) < n_msgs for g in got):
                    await trio.sleep(0.05)
        assert dup == [0] * len(subs)
        for n in nodes:
            s = n.stats()["pubsub"]
            assert s["dropped_inbound"] == 0 and s["dropped_outbound"] == 0
