"""Peers the table lost to failed requests are pinged again now and then
(lost.py): after a partition heals they come back, and nothing else does."""

from __future__ import annotations

import random

from agentp2p.protocol.kademlia import (
    KademliaConfig,
    PeerConnected,
    PeerDisconnected,
    RoutingUpdated,
    StartLookup,
    Tick,
    kad_key,
)
from agentp2p.protocol.kademlia.events import AddAddresses
from agentp2p.protocol.kademlia.lost import LostPeers

from .kadhelpers import Driver, IdealNetwork, core_knowing, pid, same_bucket

CFG = KademliaConfig(refresh_interval=1e9, refresh_check_interval=1e9, request_timeout=5.0, ping_timeout=5.0,
                     max_failures=1, reconnect_interval=10.0, lost_forget_after=600.0)


def _partitioned(cut: set[bytes]) -> tuple[Driver, IdealNetwork]:
    """A core whose lookup ran while ``cut`` was unreachable."""
    net = IdealNetwork(100)
    for p in cut:
        net.override[p] = lambda m: None
    core = core_knowing(net.peers[:30], config=CFG)
    d = Driver(core, net, ping_ok=lambda p: p not in cut)
    for p in cut:
        d.feed(PeerDisconnected(p))  # the partition closed their connections
    d.feed(StartLookup("q", b"k"))
    d.run_until_finished("q")
    return d, net


def test_peers_lost_in_a_partition_are_pinged_again_and_come_back_once_it_heals() -> None:
    cut = set(IdealNetwork(100).peers[:10])
    d, net = _partitioned(cut)
    core = d.core
    lost = {a.peer for a in d.actions if isinstance(a, RoutingUpdated) and not a.added}
    assert lost and lost <= cut and all(p not in core.table for p in lost)
    assert {p for p in cut if p in core.lost} == lost  # exactly the peers dropped for failures
    # Still partitioned: one ping per interval, each failing; the peers stay lost.
    t0, pings0 = d.now, len(d.pings)
    d.run(t0 + 60.0)
    tried = d.pings[pings0:]
    assert 5 <= len(tried) <= 7 and {p.peer for p in tried} <= lost
    assert core.stats.reconnected == 0 and all(p in core.lost for p in lost)
    # Before each ping the core hands the adapter the addresses to dial.
    adds = [a for a in d.actions if isinstance(a, AddAddresses) and a.peer in lost]
    assert len(adds) >= len(tried) and all(a.addrs == (b"/sim",) for a in adds)
    # The heal: every lost peer answers its next ping and is back in the table.
    for p in cut:
        net.override.pop(p)
    d.ping_ok = lambda p: True
    d.run(d.now + 10.0 * (len(lost) + 1) * 4)
    assert core.stats.reconnected == len(lost) and not core.lost
    # Back in the table, or (its bucket filled up meanwhile) first in line for a slot.
    t = core.table
    assert all(p in t or p in t._buckets[t.bucket_of(kad_key(p))].replacements for p in lost)
    assert any(p in t for p in lost)


def test_nothing_is_lost_without_failures_and_no_timer_runs_for_it() -> None:
    """A closed connection (our connection manager or theirs trimming it) is
    not a failure: the peer stays in the table, nothing is retried, and an
    empty lost set arms no timer (idle nodes stay idle)."""
    net = IdealNetwork(40)
    core = core_knowing(net.peers[:30], config=CFG)
    d = Driver(core, net)
    for p in net.peers[:30]:
        d.feed(PeerDisconnected(p))
    d.run(d.now + 120.0)
    assert not core.lost and not d.pings and core.stats.reconnects == 0
    assert core.next_deadline() >= CFG.cleanup_interval - 1


def test_reconnect_off() -> None:
    cut = set(IdealNetwork(100).peers[:10])
    net = IdealNetwork(100)
    for p in cut:
        net.override[p] = lambda m: None
    cfg = KademliaConfig(refresh_interval=1e9, refresh_check_interval=1e9, request_timeout=5.0, max_failures=1,
                         reconnect_interval=0.0)
    d = Driver(core_knowing(net.peers[:30], config=cfg), net)
    d.feed(StartLookup("q", b"k"))
    d.run_until_finished("q")
    assert d.core.stats.evictions > 0
    pings = len(d.pings)
    d.run(d.now + 120.0)
    assert not d.core.lost and d.core.stats.reconnects == 0 and len(d.pings) == pings


def test_a_peer_seen_alive_again_is_no_longer_lost() -> None:
    cut = set(IdealNetwork(100).peers[:10])
    d, _net = _partitioned(cut)
    back = next(p for p in cut if p in d.core.lost)
    d.feed(PeerConnected(back, (b"/sim",), True))  # it dialed us: alive, a server
    assert back not in d.core.lost and back in d.core.table


def test_lost_peers_are_bounded_forgotten_and_picked_at_random() -> None:
    lp = LostPeers(max_peers=3, forget_after=100.0)
    assert not lp.add(pid("no-addrs"), (), 0.0)  # cannot be dialed again: not kept
    for i in range(5):
        assert lp.add(pid(i), (b"/a",), float(i))
    assert len(lp) == 3 and pid(0) not in lp and pid(1) not in lp  # the longest lost went first
    rng = random.Random(3)
    picks = {lp.pick(50.0, rng)[0] for _ in range(60)}  # type: ignore[index]
    assert picks == {pid(2), pid(3), pid(4)}
    lp.add(pid(2), (b"/b",), 90.0)  # lost again: its clock restarts
    assert lp.pick(104.5, rng) is not None and len(lp) == 1 and lp.addrs(pid(2)) == (b"/b",)
    assert lp.pick(191.0, rng) is None and len(lp) == 0


def test_one_ping_at_a_time_per_lost_peer() -> None:
    """A ping slower than the interval is not doubled by the next round."""
    cfg = KademliaConfig(refresh_interval=1e9, refresh_check_interval=1e9, ping_timeout=30.0,
                         reconnect_interval=10.0)
    net = IdealNetwork(40)
    core = core_knowing(net.peers[:5], config=cfg)
    d = Driver(core, net, latency=25.0)  # answers take 2.5 intervals
    gone = pid("gone")
    core.lost.add(gone, (b"/sim",), 0.0)
    d.feed(Tick())  # (added by hand: let the core arm its timer again)
    d.run(24.0)
    assert [p.peer for p in d.pings] == [gone] and core.stats.reconnects == 1
    d.run(40.0)  # answered at 35: back, and nothing more to try
    assert core.stats.reconnected == 1 and gone in core.table and len(d.pings) == 1


def test_an_entry_failing_its_liveness_check_is_lost_too() -> None:
    """A full bucket pings its least recently seen entry before a newcomer
    may take its slot; one that does not answer is dropped, and lost."""
    cfg = KademliaConfig(k=2, max_candidates=20, refresh_interval=1e9, reconnect_interval=10.0)
    me = pid("me")
    same = same_bucket(me, 3)
    core = core_knowing(same[:2], config=cfg, me=me)
    d = Driver(core, lambda p, m: None, ping_ok=lambda p: p != same[0])
    d.feed(PeerConnected(same[2], (b"/c",), True))
    d.run(1.0)
    assert same[0] not in core.table and same[0] in core.lost and core.lost.addrs(same[0]) == (b"/sim",)


def test_a_peer_that_turned_client_is_not_retried() -> None:
    cut = set(IdealNetwork(100).peers[:10])
    d, _net = _partitioned(cut)
    gone = next(p for p in cut if p in d.core.lost)
    d.feed(PeerConnected(gone, (b"/sim",), False))  # identify: it no longer serves the DHT
    assert gone not in d.core.lost and gone not in d.core.table


def test_an_answer_after_the_peer_was_forgotten_keeps_its_addresses() -> None:
    cfg = KademliaConfig(refresh_interval=1e9, refresh_check_interval=1e9, ping_timeout=30.0,
                         reconnect_interval=10.0, lost_forget_after=12.0)
    core = core_knowing(IdealNetwork(40).peers[:5], config=cfg)
    d = Driver(core, IdealNetwork(40), latency=25.0)
    gone = pid("gone")
    core.lost.add(gone, (b"/old",), 0.0)
    d.feed(Tick())
    d.run(40.0)  # pinged at 10, forgotten at 12 (the next round's pick), answered at 35
    entry = core.table.get(gone)
    assert entry is not None and entry.addrs == (b"/old",)


def test_a_connected_lost_peer_is_pinged_without_stale_addresses() -> None:
    """Requests can fail over a live connection (a starved peer): the ping
    then rides that connection, and the table's old addresses are not
    pushed ahead of the connection's in the peerstore."""
    net = IdealNetwork(100)
    silent = set(net.peers[:10])
    for p in silent:
        net.override[p] = lambda m: None
    d = Driver(core_knowing(net.peers[:30], config=CFG), net)  # all connected
    d.feed(StartLookup("q", b"k"))
    d.run_until_finished("q")
    assert any(p in d.core.lost for p in silent)
    d.run(d.now + 30.0)
    assert d.core.stats.reconnects >= 2
    assert not [a for a in d.actions if isinstance(a, AddAddresses) and a.peer in silent]


def test_an_answer_from_a_peer_connected_as_a_client_does_not_enter_the_table() -> None:
    """(A client refuses the DHT's ping on real sockets; the simulators answer
    every ping, so the core checks what identify said of the connection.)"""
    cfg = KademliaConfig(refresh_interval=1e9, refresh_check_interval=1e9, ping_timeout=30.0,
                         reconnect_interval=10.0)
    core = core_knowing(IdealNetwork(40).peers[:5], config=cfg)
    d = Driver(core, IdealNetwork(40), latency=5.0)
    client, server = pid("client"), pid("server")
    core.lost.add(client, (b"/old",), 0.0)
    d.feed(Tick())
    d.run(11.0)  # the ping is out
    assert [p.peer for p in d.pings] == [client]
    d.feed(PeerConnected(client, (b"/new",), False))
    d.run(20.0)
    assert core.stats.reconnected == 1 and client not in core.table
    core.lost.add(server, (b"/old",), d.now)
    d.feed(Tick())
    d.run(31.0)  # pinged at 30
    assert d.pings[-1].peer == server
    d.feed(PeerConnected(server, (b"/new",), True))  # (enters the table on its own)
    d.run(40.0)
    entry = core.table.get(server)
    assert core.stats.reconnected == 2 and entry is not None and entry.addrs == (b"/new",)
