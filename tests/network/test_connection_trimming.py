"""The connection manager on real sockets: idle connections above the high-water
mark are closed, the gossipsub mesh is kept, and a bootstrap node whose inbound
slots were full lets newcomers in again (the lockout the whole-node simulator found)."""

from __future__ import annotations

import contextlib
import os

import trio

from agentp2p import Node
from agentp2p.network.connection_manager import ConnectionsConfig
from agentp2p.protocol.kademlia.codec import Message, MessageType
from agentp2p.protocol.kademlia.events import StartLookup
from agentp2p.protocol.swim import SwimConfig
from agentp2p.protocol.swim.service import SwimService
from agentp2p.testing import local_config, wait_until

#: Trim fast enough for a test: rounds every 0.1 s, no grace, idle after 0.3 s.
FAST = dict(grace=0.0, idle=0.3, interval=0.1)


class NoRecords:
    """Stands in for the records service, whose announcement topic every node
    meshes on (and whose mesh the manager protects): a hub with no topic has
    nothing protected, so the water marks alone decide."""

    name = "records"

    def attach(self, ctx: object) -> None:
        pass

    async def run(self, ctx: object) -> None:
        await trio.sleep_forever()

    def stats(self) -> dict[str, object]:
        return {}


async def test_idle_connections_above_high_water_are_closed_down_to_low_water() -> None:
    # idle 0: the six just opened streams (identify, the DHT); the unit tests cover "in use".
    cfg = local_config(swim=False, connections=ConnectionsConfig(high_water=4, low_water=2, **{**FAST, "idle": 0.0}))
    async with Node(cfg, services=[NoRecords()]) as hub, contextlib.AsyncExitStack() as stack:
        cm = hub.connections
        assert cm is not None
        cm.config.enabled = False  # held off until all six are connected, so one round sees them all
        others = [await stack.enter_async_context(Node(local_config(swim=False, connections=ConnectionsConfig(
            enabled=False)))) for _ in range(6)]
        for o in others:
            await o.connect(hub.addrs[0])
        await wait_until(lambda: len(hub.peers()) == 6, 10, "six connections")
        cm.config.enabled = True
        await wait_until(lambda: len(hub.peers()) == 2, 10, "two connections left")
        assert cm.trimmed == 4 and hub.stats()["network"]["trimming"]["trimmed"] == 4
        # The others see their connections closed: none of them is refused or banned.
        await wait_until(lambda: sum(not o.is_connected(hub.peer_id) for o in others) == 4, 10,
                         "the others see four connections closed")
        closed = [o for o in others if not o.is_connected(hub.peer_id)]
        await closed[0].connect(hub.addrs[0])
        assert await closed[0].ping(hub.peer_id) > 0


async def test_the_gossipsub_mesh_is_never_trimmed() -> None:
    topic = "/agentp2p/test/trim-mesh"
    # 2 mesh peers + 6 idle ones: above high water 5, down to low water 4;
    # up to low_water / 2 = 2 peers are protected, so both mesh peers stay.
    conns = ConnectionsConfig(high_water=5, low_water=4, **{**FAST, "idle": 0.0})
    async with Node(local_config(swim=False, connections=conns), services=[NoRecords()]) as hub, \
            contextlib.AsyncExitStack() as stack:
        cm = hub.connections
        assert cm is not None
        cm.config.enabled = False  # until the mesh has formed
        await stack.enter_async_context(hub.subscribe(topic))
        meshed, idle = [], []
        for k in range(8):
            o = await stack.enter_async_context(Node(local_config(swim=False)))
            if k < 2:
                await stack.enter_async_context(o.subscribe(topic))
                meshed.append(o)
            else:
                idle.append(o)
            await o.connect(hub.addrs[0])
        await wait_until(lambda: {str(p) for p in hub.pubsub.mesh_peers(topic)}
                         == {str(o.peer_id) for o in meshed}, 15, "the mesh formed")
        # The hub sets its side of the last connections up a moment after the dialers return.
        await wait_until(lambda: len(hub.peers()) == 8, 10, "all 8 on the hub")
        cm.config.enabled = True
        await wait_until(lambda: len(hub.peers()) == 4, 15, "down to low water")
        assert cm.trimmed == 4
        assert all(hub.is_connected(o.peer_id) for o in meshed)
        assert sum(hub.is_connected(o.peer_id) for o in idle) == 2


async def _newcomers_get_in(conns: ConnectionsConfig, count: int, expect_all: bool) -> Node:
    """A bootstrap node full at 3 connections, and ``count`` newcomers one
    after another: all get in (``expect_all``), or the fourth and later are
    refused however often they retry (five refused attempts show it).
    Returns the bootstrap node, still open, for its counters."""
    async with Node(local_config(swim=False, max_connections=3, connections=conns)) as boot, \
            contextlib.AsyncExitStack() as stack:
        for k in range(count):
            n = await stack.enter_async_context(Node(local_config(
                swim=False, bootstrap=[boot.addrs[0]], bootstrap_retry_initial=0.1, bootstrap_retry_max=0.2,
                connections=ConnectionsConfig(enabled=False))))
            if expect_all or k < 3:
                await wait_until(lambda n=n: n.bootstrapper.successes > 0, 20.0, f"newcomer {k} in")
            else:
                await wait_until(lambda n=n: n.bootstrapper.attempts >= 5, 20.0, f"newcomer {k} retrying")
                assert n.bootstrapper.successes == 0, f"newcomer {k} got in"
    return boot


async def test_a_full_bootstrap_node_lets_newcomers_in_again() -> None:
    """A bootstrap node refusing inbound past max_connections: without the
    manager, newcomer 4 and later are refused however often they retry;
    with it, the old connections go idle and are closed, and all get in."""
    for enabled, expect_all in ((False, False), (True, True)):
        await _newcomers_get_in(ConnectionsConfig(enabled=enabled, high_water=2, low_water=1, **FAST), 6, expect_all)


async def test_a_refused_newcomer_makes_a_full_node_trim_at_once() -> None:
    """A bootstrap node whose periodic rounds are an hour apart: full after
    three newcomers (max_connections, which py-libp2p enforces and our
    inbound gate reports), it refuses the fourth, and that refusal runs a
    round at once (pressure_interval), so every newcomer gets in. With
    pressure_interval 0 the fourth is refused however often it retries."""
    for pressure, expect_all in ((0.0, False), (0.1, True)):
        conns = ConnectionsConfig(high_water=2, low_water=1, grace=0.0, idle=0.3, interval=3600.0,
                                  pressure_interval=pressure)
        boot = await _newcomers_get_in(conns, 5, expect_all)
        cm = boot.connections
        assert cm is not None
        assert (cm.pressure_rounds > 0, cm.trimmed > 0) == (expect_all, expect_all)


async def test_a_refusal_at_our_inbound_limit_runs_a_round_at_once() -> None:
    """The same through our own inbound limit (resources), which refuses
    after the handshake: the refusals bring a round forward, and it closes
    young connections down to high water (a newcomer's connect is its only
    try here, so no later round finds them idle); with pressure_interval 0
    nothing is closed."""
    from agentp2p.network.resources import ResourceLimits

    for pressure in (0.0, 0.1):
        conns = ConnectionsConfig(high_water=2, low_water=1, grace=10.0, idle=0.3, interval=3600.0,
                                  pressure_interval=pressure)
        cfg = local_config(swim=False, connections=conns, resources=ResourceLimits(max_inbound_connections=3))
        async with Node(cfg) as boot, contextlib.AsyncExitStack() as stack:
            cm = boot.connections
            assert cm is not None
            for _ in range(5):
                n = await stack.enter_async_context(Node(local_config(swim=False, connections=ConnectionsConfig(
                    enabled=False))))
                with contextlib.suppress(Exception):  # refused: the test looks at the boot node
                    await n.connect(boot.addrs[0])
            if pressure:
                await wait_until(lambda: cm.pressure_rounds > 0 and cm.trimmed > 0, 10.0, "a round on the refusal")
            else:
                await wait_until(lambda: boot.stats()["network"]["inbound"].get("refused_limit", 0) >= 2, 10.0,
                                 "refusals")
                assert cm.pressure_rounds == 0 and cm.trimmed == 0


async def test_a_round_on_refusal_closes_young_inbound_connections_not_the_nodes_own_dials() -> None:
    """A node that has just dialed two peers itself, then takes three
    newcomers and refuses a fourth (our inbound limit): the round that
    refusal brings closes the three young inbound connections and keeps the
    node's own two dials, though they are the least recently used (an
    interval's round would close them first). Each connection's side comes
    from the connection event (``is_inbound``)."""
    from agentp2p.network.resources import ResourceLimits

    conns = ConnectionsConfig(high_water=2, low_water=1, grace=30.0, idle=30.0, interval=3600.0,
                              pressure_interval=0.1)
    cfg = local_config(swim=False, connections=conns, resources=ResourceLimits(max_inbound_connections=3))
    off = ConnectionsConfig(enabled=False)
    # NoRecords: no topic mesh, so no newcomer is protected; the sides alone decide.
    async with Node(cfg, services=[NoRecords()]) as boot, contextlib.AsyncExitStack() as stack:
        cm = boot.connections
        assert cm is not None
        dialed = [await stack.enter_async_context(Node(local_config(swim=False, connections=off)))
                  for _ in range(2)]
        for d in dialed:
            await boot.connect(d.addrs[0])
        # The manager has both as our dials (a stream seen before the event would leave the side unknown).
        await wait_until(lambda: all(getattr(cm._peers.get(d.peer_id), "inbound", None) is False for d in dialed),
                         5.0, "our dials recorded as outbound")
        for _ in range(4):
            n = await stack.enter_async_context(Node(local_config(swim=False, connections=off)))
            with contextlib.suppress(Exception):  # the fourth is refused: the test looks at boot
                await n.connect(boot.addrs[0])
        await wait_until(lambda: cm.pressure_rounds > 0 and cm.trimmed >= 3 and len(boot.peers()) <= 2, 10.0,
                         "a round on the refusal",
                         lambda: f"{cm.stats()}, {len(boot.peers())} peers, {boot.stats()['network']['inbound']}")
        assert set(boot.peers()) == {d.peer_id for d in dialed}


async def test_a_messaging_peer_with_messages_in_flight_is_kept() -> None:
    """The hub's oldest connection carries a message its peer has not taken
    yet: without protection it would be the first closed (idle longest)."""
    conns = ConnectionsConfig(high_water=3, low_water=2, **{**FAST, "idle": 0.0})
    async with Node(local_config(swim=False, connections=conns), services=[NoRecords()]) as hub, \
            Node(local_config(swim=False)) as slow:
        cm = hub.connections
        assert cm is not None
        cm.config.enabled = False
        await slow.connect(hub.addrs[0])
        sent = trio.Event()

        async def send() -> None:
            await hub.send(slow.peer_id, b"take your time", timeout=60)
            sent.set()

        async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
            nursery.start_soon(send)
            await wait_until(lambda: slow.peer_id in hub.messaging.busy_peers(), 10, "the message in flight")
            for _ in range(3):
                o = await stack.enter_async_context(Node(local_config(swim=False)))
                await o.connect(hub.addrs[0])
            await wait_until(lambda: len(hub.peers()) == 4, 10, "four connections")
            cm.config.enabled = True
            await wait_until(lambda: len(hub.peers()) == 2, 10, "down to low water")
            assert hub.is_connected(slow.peer_id)
            msg = await slow.receive()
            assert msg.payload == b"take your time"
            with trio.fail_after(10):
                await sent.wait()
        assert slow.peer_id not in hub.messaging.busy_peers()


async def test_the_members_swim_probes_next_are_kept_though_idle_longest() -> None:
    """SWIM names the members it probes now or next (connect_ahead draws):
    closing one of those connections as idle a moment before its probe
    makes the probe dial inside its timeout, and a live member suspect (the
    whole-node simulator traced 32 of 49 false suspicions at 500 nodes to
    it). Here they are the connections idle longest, the first a round would
    close without protection. The decision is read in one step, so SWIM
    cannot draw new targets in between."""
    swim = SwimConfig(ring_probe_every=0)  # the draws ahead only: 2 of them
    conns = ConnectionsConfig(high_water=5, low_water=4, **{**FAST, "idle": 0.0})
    async with Node(local_config(swim=swim, connections=conns), services=[NoRecords()]) as hub, \
            contextlib.AsyncExitStack() as stack:
        cm, members = hub.connections, hub.services["swim"]
        assert cm is not None and isinstance(members, SwimService)
        cm.config.enabled = False  # its rounds close nothing; the one below is read by hand
        for _ in range(6):
            o = await stack.enter_async_context(Node(local_config()))
            await o.connect(hub.addrs[0])
        await wait_until(lambda: len(hub.peers()) == 6 and members.alive_count() == 6, 15, "six members")
        cap = cm.low_water // 2
        await wait_until(lambda: len(members.protected_peers()) >= cap, 15, "targets drawn ahead")
        # One synchronous step (no await): SWIM draws nothing new in between.
        named = members.protected_peers()[:cap]
        now = trio.current_time()
        for p in hub.peers():
            if p not in named:
                cm.used(p, now)  # every other connection in use more recently
        cm.config.enabled = True
        trim = cm.to_trim(now, hub.peers())
        cm.config.enabled = False
        assert len(trim) == 2 and not set(trim) & set(named)


def _record_uses(node: Node) -> list[object]:
    """The peers ``node``'s connection manager is told of as in use, from now on (it is still told)."""
    seen: list[object] = []
    inner = node.events.on_use

    def on_use(peer: object) -> None:
        seen.append(peer)
        if inner is not None:
            inner(peer)

    node.events.on_use = on_use
    return seen


async def test_dht_requests_on_a_reused_stream_count_as_use() -> None:
    """The DHT keeps one stream per peer, so only its first request opens a
    stream, and the connection manager's "in use" was the last stream
    opened: a connection carrying a request a second looked idle from its
    stream's open on, and went before one opened later and idle since.
    Every request now counts, at both ends. Three peers, each asked once in
    turn (each opens its stream), then the first asked again on its reused
    stream: the round (all in use, one over high water) closes the least
    recently used, which must now be the second, not the first. Then a
    lookup, whose requests take the path queries take, tells the manager of
    every peer it asks."""
    conns = ConnectionsConfig(high_water=2, low_water=1, grace=0.0, idle=60.0, interval=0.1)
    async with Node(local_config(swim=False, connections=conns), services=[NoRecords()]) as hub, \
            contextlib.AsyncExitStack() as stack:
        cm, service = hub.connections, hub.dht.service
        assert cm is not None and service is not None
        cm.config.enabled = False  # its rounds close nothing; the one below is read by hand
        peers = []
        for _ in range(3):
            o = await stack.enter_async_context(Node(local_config(swim=False)))
            await o.connect(hub.addrs[0])
            peers.append(o)
        await wait_until(lambda: hub.dht.routing_table_size >= 3, 15, "the hub's table holds all three")
        served = _record_uses(peers[0])
        msg = Message(MessageType.FIND_NODE, key=os.urandom(32))
        for o in peers:
            await service.request(o.peer_id, msg)
        opened, before = service.sender_stats.streams_opened, served.count(hub.peer_id)
        await service.request(peers[0].peer_id, msg)
        assert service.sender_stats.streams_opened == opened, "the last request reused its stream"
        assert served.count(hub.peer_id) == before + 1, "the serving end counts a request on a reused stream"
        cm.config.enabled = True
        trim = cm.to_trim(trio.current_time(), hub.peers())
        cm.config.enabled = False
        assert trim == [peers[1].peer_id]
        # A lookup's requests (the path the DHT's queries take) count too, on the same reused streams.
        told = _record_uses(hub)
        opened = service.sender_stats.streams_opened
        await service.query(lambda q: StartLookup(q, os.urandom(32)))
        assert service.sender_stats.streams_opened == opened, "the lookup reused the streams"
        assert set(told) == {o.peer_id for o in peers}
