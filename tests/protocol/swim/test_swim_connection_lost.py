"""A connection that ends without a goodbye makes SWIM probe that member next.

When a peer's process dies, its kernel closes its sockets: every peer
connected to it sees the connection end with no Yamux GO_AWAY. That is a
hint (ConnectionLost) to probe the member in the next period instead of in
its round-robin turn. A close either side announced (GO_AWAY: a disconnect,
a trim, a shutdown) is no hint.
"""

from __future__ import annotations

from typing import Any

import trio

from agentp2p.node import Node
from agentp2p.protocol.swim import Ack, ConnectionLost, Message, Ping, SwimConfig
from agentp2p.testing import local_config, wait_until
from tests.protocol.swim.swimhelpers import deliver, make_core, next_tick, pid, run_until, sends

OTHERS = [f"m{i}" for i in range(30)]


def test_a_lost_member_is_probed_next_period() -> None:
    a = make_core("a", OTHERS)
    t, acts = next_tick(a)
    (current,) = sends(acts, Ping)
    lost = pid("m17") if current.to != pid("m17") else pid("m18")
    a.handle(t + 0.1, ConnectionLost(lost))
    run_until(a, t + 0.9)  # this period's probe runs out (fallback ping, helpers)
    _, acts = next_tick(a)
    assert [s.to for s in sends(acts, Ping)] == [lost]
    assert a.stats.hinted_probes == 1


def test_hints_about_strangers_repeats_and_beyond_the_bound_are_dropped() -> None:
    a = make_core("a", OTHERS)
    a.handle(0.01, ConnectionLost(pid("stranger")))
    a.handle(0.01, ConnectionLost(pid("m3")))
    a.handle(0.01, ConnectionLost(pid("m3")))
    for i in range(10, 30):
        a.handle(0.01, ConnectionLost(pid(f"m{i}")))
    assert len(a._ahead) <= SwimConfig().connect_ahead + 4  # noqa: SLF001 — the bound
    assert 1 <= a.stats.hinted_probes < 22
    assert a.stats.connections_lost == 22  # m3 twice and m10..m29: not the stranger
    assert a.member(pid("stranger")) is None


def test_members_that_keep_dropping_their_connections_cannot_take_our_probing_over() -> None:
    """Two members hinting every period (a flapping link, or on purpose):
    each is hinted once per cooldown, and the round-robin goes on."""
    a = make_core("a", OTHERS, config=SwimConfig(gossip_interval=0, ring_probe_every=0))  # the round-robin's pace
    flappers = (pid("m1"), pid("m2"))
    probed: list[bytes] = []
    t = 0.0
    for _ in range(60):
        for f in flappers:
            a.handle(t + 0.01, ConnectionLost(f))
        t, acts = next_tick(a)
        for ping in sends(acts, Ping):  # everyone answers: all stay alive
            probed.append(ping.to)
            deliver(a, t + 0.01, ping.to, Message(ping.message.seq, 0, Ack()))
    assert a.stats.hinted_probes <= 2 * 2  # once each per 30-period cooldown, over 60 periods
    assert len(set(probed)) == len(OTHERS)  # two rounds of the round-robin: everyone, twice
    assert sum(p in flappers for p in probed) <= 2 * 2 + 2 * 2


async def _raw_close(node: Node, other: Node) -> None:
    """Close ``node``'s sockets to ``other`` under Yamux: no GO_AWAY, as a killed
    process. All of them: both may have dialed (SWIM probes), and a
    connection that stays is no reason to check on the peer."""
    conns = node.host.get_network().get_connections
    await wait_until(lambda: len(conns(other.peer_id)) == len(other.host.get_network().get_connections(node.peer_id)),
                     10, "both ends to list the same connections")
    for conn in conns(other.peer_id):
        await conn.muxed_conn.secured_conn._inner.close()


async def _next_close(events: Any) -> Any:
    with trio.fail_after(10):
        async for ev in events:
            if not ev.connected:
                return ev
    raise AssertionError("events ended")


async def test_a_silent_close_is_reported_abrupt_and_an_announced_one_is_not() -> None:
    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        events = a.events.subscribe()
        await b.connect(a.addrs[0])
        await wait_until(lambda: a.is_connected(b.peer_id), what="a sees b")
        await b.disconnect(a.peer_id)  # GO_AWAY
        ev = await _next_close(events)
        assert ev.peer_id == b.peer_id and not ev.abrupt

        await b.connect(a.addrs[0])
        await wait_until(lambda: a.is_connected(b.peer_id), what="a sees b again")
        await _raw_close(b, a)
        ev = await _next_close(events)
        assert ev.peer_id == b.peer_id and ev.abrupt


async def test_an_announced_close_says_which_end_closed() -> None:
    """by_peer: True at the end that got the GO_AWAY first, False at the end
    that sent it (SWIM's close_grace and redial act on the peer's closes only)."""
    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        a_events, b_events = a.events.subscribe(), b.events.subscribe()
        await b.connect(a.addrs[0])
        await wait_until(lambda: a.is_connected(b.peer_id), what="a sees b")
        await b.disconnect(a.peer_id)
        at_a, at_b = await _next_close(a_events), await _next_close(b_events)
        assert (at_a.peer_id, at_a.abrupt, at_a.by_peer) == (b.peer_id, False, True)
        assert (at_b.peer_id, at_b.abrupt, at_b.by_peer) == (a.peer_id, False, False)


async def test_a_go_away_after_we_started_closing_is_not_the_peers_close() -> None:
    """Both ends closing at once: the GO_AWAY that crosses ours is no proof
    the peer chose to close (the closing end never hears one otherwise)."""
    from agentp2p.network.yamux import TYPE_GO_AWAY

    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        await b.connect(a.addrs[0])
        await wait_until(lambda: a.is_connected(b.peer_id), what="a sees b")
        (conn,) = a.host.get_network().get_connections(b.peer_id)
        muxed = conn.muxed_conn
        muxed.closing = True  # as close() sets it before its GO_AWAY goes out
        await muxed._inspect(TYPE_GO_AWAY, 0, 0, 0)  # noqa: SLF001 — the header check, alone
        assert muxed.go_away_received and not muxed.closed_by_peer
        muxed.closing = False
        await muxed._inspect(TYPE_GO_AWAY, 0, 0, 0)  # noqa: SLF001
        assert muxed.closed_by_peer


async def test_swim_checks_at_once_on_a_member_whose_process_was_killed() -> None:
    """A real kill (SIGKILL of a subprocess node): the kernel closes its socket,
    the node hears ConnectionLost and probes it; the probe fails (nobody
    listens any more) and the member is suspected. (In-process, a "killed"
    peer would redial at once and keep a connection: no hint, rightly.)"""
    import os

    from tests.protocol.swim.swimreal import FAST, ProcNode

    async with Node(local_config(swim=FAST)) as a:
        swim = a.services["swim"]
        proc = ProcNode(os.urandom(32), a.addrs[0], FAST)
        try:
            await proc.start()
            await wait_until(lambda: (m := swim.member(proc.peer_id)) is not None and m.state == "alive", 20,
                             "the process node a member")
            assert swim.stats()["core"]["connections_lost"] == 0
            proc.kill()
            await wait_until(lambda: swim.stats()["core"]["connections_lost"] >= 1, 10, "the hint")
            await wait_until(lambda: swim.member(proc.peer_id).state in ("suspect", "dead"), 10, "the suspicion")
        finally:
            proc.close()
