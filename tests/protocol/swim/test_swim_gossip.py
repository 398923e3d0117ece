"""Gossip between probes (core.py's gossip timer, contacts.py).

News goes out within one gossip interval to a few members we heard from
lately, marked "no dial"; a core with nothing to say arms no gossip timer;
a gossip frame is applied and never answered; and over real sockets the
transport sends a no-dial frame only on a stream already open.
"""

from __future__ import annotations

import math

import pytest
from multiaddr import Multiaddr

from agentp2p.node import Node
from agentp2p.protocol.swim import Ack, Gossip, MemberUpdate, Message, Ping, Received, State, SwimConfig, SwimCore, Tick
from agentp2p.protocol.swim.contacts import RecentContacts
from agentp2p.protocol.swim.wire import PROTOCOL_ID
from agentp2p.simulation.network import NetworkModel
from agentp2p.simulation.swim import SwimSimulation
from agentp2p.simulation.swim_metrics import Observer
from agentp2p.testing import local_config, wait_until
from tests.protocol.swim.swimhelpers import deliver, events, make_core, pid, run_until, sends
from tests.protocol.swim.swimreal import running_transport

OTHERS = [f"m{i}" for i in range(12)]


def test_news_goes_to_a_few_recent_contacts_within_one_interval_and_never_dials() -> None:
    cfg = SwimConfig(gossip_interval=0.2, gossip_nodes=3)
    a = make_core("a", OTHERS, config=cfg)
    talkers = {pid(f"m{i}") for i in range(5)}
    for k, p in enumerate(sorted(talkers)):
        deliver(a, 0.01 * k, p, Message(k, 0, Ping(a.local_id)))
    # A rumour: m9 is suspected by m0. We take it on and pass it on.
    suspect = MemberUpdate(pid("m9"), State.SUSPECT, 0, (), pid("m0"))
    acts = deliver(a, 0.1, pid("m0"), Message(9, 0, Ack(), (suspect,)))
    assert ("suspect", pid("m9")) in events(acts)
    out = run_until(a, 0.1 + cfg.gossip_interval)
    gossip = sends(out, Gossip)
    assert 1 <= len(gossip) <= cfg.gossip_nodes
    assert {g.to for g in gossip} <= talkers  # only members that talked to us
    assert len({g.to for g in gossip}) == len(gossip)
    assert all(not g.dial for g in gossip)
    assert all(any(u.peer_id == pid("m9") and u.state is State.SUSPECT for u in g.message.updates) for g in gossip)
    assert a.stats.gossip_sent == len(gossip)


def _quiet_core(cfg: SwimConfig, score: int) -> SwimCore:
    """A core three members talked to, with nothing queued and no gossip
    timer armed, at awareness ``score``."""
    a = make_core("a", OTHERS, config=cfg)
    for k in range(3):
        deliver(a, 0.01 * k, pid(f"m{k}"), Message(k, 0, Ping(a.local_id)))
    a._queue.discard(a.local_id)  # noqa: SLF001 - our joining announcement is our own news too
    a._gossip_at = math.inf  # noqa: SLF001 - and the timer it armed
    a.awareness.score = score
    return a


def _first_gossip_after_a_rumour(cfg: SwimConfig, score: int, *, refuting: bool = False) -> float:
    """When the first Gossip frame leaves a core at awareness ``score`` that
    heard a rumour at t = 1.0 (and, if ``refuting``, must refute one about itself)."""
    a = _quiet_core(cfg, score)
    news = MemberUpdate(a.local_id if refuting else pid("m9"), State.SUSPECT, 0, (), pid("m0"))
    deliver(a, 1.0, pid("m0"), Message(9, 0, Ack(), (news,)))
    t = 1.0
    while t < 1.0 + 10 * cfg.gossip_interval * cfg.awareness_max_multiplier:
        t += cfg.gossip_interval / 4
        if sends(run_until(a, t), Gossip):
            return t
    raise AssertionError("no gossip")


def test_a_node_in_poor_health_gossips_less_often_but_refutes_at_once() -> None:
    """In poor health (Lifeguard's score s) gossip waits (s + 1) intervals:
    every frame costs a starved loop at both ends. Our own refutation does
    not wait: it is what the members suspecting us need."""
    cfg = SwimConfig(gossip_interval=0.2, gossip_nodes=3)
    step = cfg.gossip_interval / 4
    assert _first_gossip_after_a_rumour(cfg, 0) == pytest.approx(1.0 + cfg.gossip_interval, abs=step)
    assert _first_gossip_after_a_rumour(cfg, 3) == pytest.approx(1.0 + 4 * cfg.gossip_interval, abs=step)
    assert _first_gossip_after_a_rumour(cfg, 3, refuting=True) == pytest.approx(
        1.0 + cfg.gossip_interval, abs=step)
    off = SwimConfig(gossip_interval=0.2, gossip_nodes=3, awareness_slows_gossip=False)
    assert _first_gossip_after_a_rumour(off, 3) == pytest.approx(1.0 + off.gossip_interval, abs=step)


def test_a_refutation_after_a_slowed_rumour_does_not_wait_for_its_timer() -> None:
    """A rumour armed the gossip timer 4 intervals ahead (score 3); an
    accusation of us 0.1 s later queues our refutation, which goes out within
    one base interval, not at the slowed timer."""
    cfg = SwimConfig(gossip_interval=0.2, gossip_nodes=3)
    a = _quiet_core(cfg, 3)
    deliver(a, 1.0, pid("m0"), Message(9, 0, Ack(), (MemberUpdate(pid("m9"), State.SUSPECT, 0, (), pid("m0")),)))
    assert a.next_deadline() == pytest.approx(1.0 + 4 * cfg.gossip_interval)
    deliver(a, 1.1, pid("m1"), Message(10, 0, Ack(), (MemberUpdate(a.local_id, State.SUSPECT, 0, (), pid("m1")),)))
    gossip = sends(run_until(a, 1.1 + cfg.gossip_interval), Gossip)
    assert gossip and all(any(u.peer_id == a.local_id and u.state is State.ALIVE for u in g.message.updates)
                          for g in gossip)


def test_contacts_older_than_the_window_get_nothing() -> None:
    cfg = SwimConfig(gossip_interval=0.2, gossip_nodes=3, gossip_recent_periods=2)
    a = make_core("a", OTHERS, config=cfg)
    deliver(a, 0.0, pid("m1"), Message(1, 0, Ping(a.local_id)))
    deliver(a, 10.0, pid("m2"), Message(2, 0, Ping(a.local_id)))  # m1 was heard 10 s ago: stale
    deliver(a, 10.0, pid("m2"), Message(3, 0, Ack(), (MemberUpdate(pid("m9"), State.SUSPECT, 0, (), pid("m2")),)))
    gossip = sends(run_until(a, 10.0 + cfg.gossip_interval), Gossip)
    assert gossip and {g.to for g in gossip} == {pid("m2")}


def test_recent_contacts_are_bounded_and_forget_the_oldest() -> None:
    import random

    c = RecentContacts(capacity=4)
    for i in range(10):
        c.heard(bytes([i]), float(i))
    assert len(c) == 4
    assert sorted(c.pick(random.Random(1), 10, 0.0, lambda p: True)) == [bytes([i]) for i in range(6, 10)]
    assert c.pick(random.Random(1), 10, 8.0, lambda p: p != bytes([9])) == [bytes([8])]
    assert len(c) == 2  # 6 and 7 fell out of the window on the way


def test_a_gossip_frame_is_applied_and_never_answered() -> None:
    a = make_core("a", OTHERS)
    news = MemberUpdate(pid("m3"), State.SUSPECT, 0, (), pid("m1"))
    acts = deliver(a, 0.5, pid("m1"), Message(0, 0, Gossip(), (news,)))
    assert ("suspect", pid("m3")) in events(acts)
    assert sends(acts, to=pid("m1")) == []


def _cluster(n: int, seed: int, cfg: SwimConfig) -> tuple[SwimSimulation, Observer]:
    obs = Observer()
    sim = SwimSimulation(n, seed=seed, config=cfg, network=NetworkModel(), on_event=obs)
    obs.sim = sim
    return sim, obs


def test_an_idle_cluster_sends_no_gossip_once_its_news_is_out() -> None:
    sim, _ = _cluster(40, 5, SwimConfig())
    sim.run_until(20.0)
    assert sim.traffic.by_kind.get("Gossip", 0) > 0  # the members' own announcements at start
    before, messages = sim.traffic.by_kind.get("Gossip", 0), sim.traffic.messages
    sim.run_until(50.0)
    assert sim.traffic.by_kind.get("Gossip", 0) == before
    assert (sim.traffic.messages - messages) / 40 / 30.0 < 2.1  # ping + ack per period, nothing more


def test_gossip_spreads_a_failure_to_everyone_faster_than_probes_alone() -> None:
    """From the first member that declares the crashed one failed to the
    last: piggybacked on probes only, that takes several periods; with gossip,
    about a second."""

    def spread(cfg: SwimConfig) -> float:
        sim, obs = _cluster(200, 7, cfg)
        sim.at(5.0, lambda: (sim.crash(11), obs.crash(11, 5.0)))
        sim.run_until(5.0 + cfg.suspicion_max(200) + 20.0)
        c = obs.crashes[11]
        assert c.first_failed is not None and c.all_failed is not None
        return c.all_failed - c.first_failed

    with_gossip, without = spread(SwimConfig()), spread(SwimConfig(gossip_interval=0))
    assert with_gossip < without / 2, (with_gossip, without)


async def test_the_transport_sends_a_no_dial_frame_only_over_an_open_stream() -> None:
    received = bytearray()

    async def serve(stream: object) -> None:
        while data := await stream.read(65536):  # type: ignore[attr-defined]
            received.extend(data)

    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        b.set_stream_handler(PROTOCOL_ID, serve)
        async with running_transport(a) as transport:
            peer = b.peer_id.to_bytes()
            addrs = tuple(Multiaddr(x.split("/p2p/")[0]).to_bytes() for x in b.addrs)
            # No stream, no connection: dropped and counted, nothing dialed.
            assert not transport.send(peer, b"gossip-1", addrs, dial=False)
            assert transport.stats.dropped_no_stream == 1 and transport.stats.dials == 0
            assert not a.is_connected(b.peer_id)
            # A probe opens the stream; the next gossip frame rides on it.
            assert transport.send(peer, b"probe", addrs)
            await wait_until(lambda: bytes(received).endswith(b"probe"), what="the probe")
            assert transport.send(peer, b"gossip-2", addrs, dial=False)
            await wait_until(lambda: bytes(received).endswith(b"gossip-2"), what="the gossip frame")
            assert b"gossip-1" not in received and transport.stats.dials == 1


def _answering(a: SwimCore, acts: list, peer: bytes, now: float) -> None:
    """Ack every ping ``a`` sends to ``peer`` (so ``peer`` stays alive, no news)."""
    for s in sends(acts, Ping, to=peer):
        _answering(a, deliver(a, now, peer, Message(s.message.seq, 0, Ack())), peer, now)


def test_a_queue_with_nothing_that_fits_a_frame_does_not_keep_waking_the_gossip_timer() -> None:
    """An update too big for any frame stays queued (take() skips it): the
    gossip round that finds nothing to send idles the timer until something
    new is queued, instead of firing every interval for ever."""
    cfg = SwimConfig(gossip_interval=0.2)
    a = make_core("a", ["m1"], config=cfg)
    _answering(a, deliver(a, 0.0, pid("m1"), Message(1, 0, Ping(a.local_id))), pid("m1"), 0.0)
    t = 0.0
    while a._queue:  # noqa: SLF001 — let the start-up news run its course
        t = a.next_deadline()
        _answering(a, a.handle(t, Tick()), pid("m1"), t)
        deliver(a, t, pid("m1"), Message(1, 0, Ping(a.local_id)))  # m1 stays a recent contact
    fat = MemberUpdate(pid("m1"), State.ALIVE, 9, tuple(bytes([i]) * 250 for i in range(8)))
    a._queue.push(fat)  # noqa: SLF001
    rounds, sent = 0, a.stats.gossip_sent
    deliver(a, t, pid("m1"), Message(1, 0, Ping(a.local_id)))  # arms the timer
    end = t + 10.0
    while (dl := a.next_deadline()) is not None and dl <= end:
        rounds += dl == a._gossip_at  # noqa: SLF001
        _answering(a, a.handle(dl, Tick()), pid("m1"), dl)
        deliver(a, dl, pid("m1"), Message(1, 0, Ping(a.local_id)))
    assert a._queue  # noqa: SLF001 — still stuck there
    assert rounds == 1 and a.stats.gossip_sent == sent  # one empty round, then quiet (was 50)


def test_a_frame_with_a_body_we_do_not_know_is_ignored_and_not_an_offence() -> None:
    """A newer member's body (as Gossip is to an older one) must not make us
    count it malformed, which the adapter reports as an offence."""
    from agentp2p.protocol.swim.service import _rejections
    from agentp2p.protocol.swim.wire import encode

    a = make_core("a", OTHERS)
    news = MemberUpdate(pid("m3"), State.SUSPECT, 0, (), pid("m1"))
    known = encode(Message(5, 0, Ack(), (news,)))
    future = known.replace(b"\x2a\x00", b"\x62\x00")  # the Ack (field 5) as an unknown field 12
    assert future != known
    acts = a.handle(0.5, Received(pid("m1"), future))
    assert acts == [] and a.stats.unknown_body == 1 and a.stats.malformed == 0 and _rejections(a) == 0
    assert a.member(pid("m3")).state is State.ALIVE  # its updates are ignored with it


async def test_leaving_tells_a_member_whose_due_gossip_frame_predates_the_leave() -> None:
    """_announce_leave_now runs the core's due timers with Leave(): a gossip
    frame that fell due first carries no LEFT, so it must not count as
    having told that member."""
    from agentp2p.protocol.swim.service import SwimService
    from agentp2p.protocol.swim.wire import decode

    written: dict[bytes, bytes] = {}

    class Transport:
        async def send_now(self, peer: bytes, frame: bytes, addrs: tuple[bytes, ...]) -> bool:
            written[peer] = frame
            return True

    a = make_core("a", ["m0", "m1"], config=SwimConfig(gossip_interval=0.2))
    deliver(a, 0.0, pid("m0"), Message(1, 0, Ping(a.local_id)))  # m0: a contact; gossip due at 0.2
    assert a.next_deadline() <= 0.2
    svc = SwimService(SwimConfig())
    svc._core, svc._transport = a, Transport()  # noqa: SLF001
    await svc._announce_leave_now()  # noqa: SLF001 — trio's clock is far past 0.2: the gossip round runs first
    for peer in (pid("m0"), pid("m1")):
        updates = decode(written[peer]).updates
        assert any(u.peer_id == a.local_id and u.state is State.LEFT for u in updates), peer
