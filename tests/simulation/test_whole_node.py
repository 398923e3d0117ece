"""The whole-node simulator: three real cores per node, coupled by connections, on one clock.

Small networks on virtual time (a few seconds of wall time each); the
1,000- and 10,000-node runs are benchmarks (benchmarks/scale.py whole).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agentp2p.network.connection_manager import ConnectionsConfig
from agentp2p.protocol.swim import EventKind, MemberEvent, State, SwimConfig, Tick
from agentp2p.simulation.whole_node import (
    TOPIC,
    WholeNodeConfig,
    WholeNodeSimulation,
    _detection,
    build,
    run_churn,
    run_partition_merge,
    run_whole_node,
)


def small(**kw: object) -> WholeNodeConfig:
    base: dict[str, object] = dict(n=30, seed=3, join_rate=20.0, capabilities=10)
    base.update(kw)
    return WholeNodeConfig(**base)  # type: ignore[arg-type]


def _a_message_reaches_every_live_node(sim: WholeNodeSimulation) -> None:
    """A live node publishes; within 5 s every other live node has it."""
    before = len(sim.log.published)
    author = sim.random_live()
    sim.publish(author)
    sim.run_until(sim.now + 5.0)
    (msg_id,) = list(sim.log.published)[before:]
    assert set(sim.log.delivered[msg_id]) == sim.live - {author}


def test_every_node_joins_through_a_bootstrap_node_and_the_services_share_its_connections() -> None:
    sim = WholeNodeSimulation(small())
    out = build(sim)
    assert out["joined"] == 30
    sim.run_until(sim.now + 30.0)
    for i in sim.live:
        node = sim.nodes[i]
        assert node.joined is not None and node.booted
        # Every connection reached each service (identify done): SWIM's own
        # dials made gossipsub peers, not just the bootstrap dial.
        assert node.gossip is not None and node.kad is not None
        assert set(node.gossip.peers()) == {sim.nodes[j].pid for j in node.conns}
        assert len(node.kad.table) >= len(node.conns) // 2
    # SWIM: everyone knows everyone; gossipsub meshes formed.
    assert min(sim.members_known()) == 1.0
    assert min(sim.mesh_sizes()) >= 4
    # Each capability has its providers on record.
    assert sum(len(v) for v in sim.providers.values()) == 30
    # A crash not yet detected: every view still holds the node (SWIM's own
    # count includes it), but the share counts live members only; a crashed
    # one held cannot stand in for a live one missed.
    gone = next(i for i in sorted(sim.live) if i not in sim.boot)
    sim.crash(gone)
    others = len(sim.live) - 1
    assert all(gone in sim.swim_held(i) for i in sim.live)
    assert all(sim.nodes[i].swim.alive_count() == others + 1 for i in sim.live)  # type: ignore[union-attr]
    assert sim.members_known() == [1.0] * len(sim.live) and sim.views_whole()
    sim.add_node()  # a newcomer nobody's view holds yet
    assert not sim.views_whole() and min(sim.members_known()) < 1.0


def test_a_full_scenario_at_thirty_nodes_finds_delivers_detects_splits_and_heals() -> None:
    out = run_whole_node(small(), settle=20.0, idle=5.0, newcomers=3, lookups=3, rate=2.0, publish_s=10.0,
                         crash_share=0.1, crash_wait=60.0, partition_s=30.0, heal_wait=30.0)
    assert out["build"]["joined"] == 30
    assert out["newcomer"]["found"] == out["newcomer"]["asked"] == 9
    assert out["newcomer_whole"]["found"] == out["newcomer_whole"]["asked"] == 9
    # Virtual time: the first live agent ends a lookup sooner than the lookup's own end.
    assert out["newcomer"]["p50"] < out["newcomer_whole"]["p50"]
    assert out["totals"]["queries_cancelled"] >= 9
    assert out["pubsub"]["messages"] > 5 and out["pubsub"]["ratio"] == 1.0
    crash = out["crash"]
    assert crash["crashed"] >= 3 and crash["all_seen"] == crash["crashed"]  # every live member saw every crash
    # ... and every one held every crashed node when it crashed (30 nodes, long settled).
    assert crash["pairs_held"] == crash["pairs"] and crash["held_unseen"] == 0
    assert crash["all_holders_saw"] == crash["crashed"]
    part = out["partition"]
    for g in (0, 1):
        assert part[f"pubsub_{g}"]["ratio"] == 1.0  # each half keeps publishing ...
        assert part[f"find_{g}"]["found"] == part[f"find_{g}"]["asked"]  # ... and finding
    heal = out["heal"]
    assert heal["swim_merged_s"] is not None and heal["pubsub_merged_s"] is not None
    assert heal["find_across"]["found"] == heal["find_across"]["asked"]
    assert out["idle"]["Bps"] > 0 and out["idle"]["events_ps"] > 0
    assert out["config"]["publish_s"] == 10.0 and out["config"]["heal_probe_every_s"] == 1  # the run says how it ran
    assert out["config"]["settle_s"] == 20.0 and out["config"]["crash_wait_s"] == 60.0


def test_a_run_is_exactly_reproducible_for_a_seed() -> None:
    def trace(seed: int) -> tuple[object, ...]:
        sim = WholeNodeSimulation(small(seed=seed))
        build(sim)
        for k in range(5):
            sim.at(sim.now + k, lambda: sim.publish(sim.random_live()))
        sim.run_until(sim.now + 10.0)
        c = sim.counters
        return (sim.now, c.bytes, c.messages, c.events, c.dials, sim.connections(),
                sorted((m, tuple(sorted(d.items()))) for m, d in sim.log.delivered.items()))

    assert trace(5) == trace(5)
    assert trace(5) != trace(6)


def test_without_the_connection_manager_full_bootstrap_nodes_lock_newcomers_out() -> None:
    """The node before its connection manager: once every bootstrap node
    holds ``max_connections`` inbound connections, a newcomer's dials are
    refused however often it retries (what the 1,000-node run showed at
    300); the nodes inside still deliver every message to each other."""
    sim = WholeNodeSimulation(small(max_inbound=8, capabilities=5, connections=ConnectionsConfig(enabled=False)))
    build(sim)
    sim.run_until(sim.now + 30.0)
    inside = {i for i in sim.live if sim.nodes[i].booted}
    assert sim.counters.refused > 0
    assert all(sim.nodes[i].inbound <= 8 for i in sim.live)
    assert all(sim.nodes[b].inbound == 8 for b in sim.boot)
    assert 4 < len(inside) < 30
    outside = sim.live - inside
    assert all(not sim.nodes[i].conns for i in outside)
    before = len(sim.log.published)
    author = sorted(inside)[-1]
    sim.publish(author)
    sim.run_until(sim.now + 5.0)
    (msg_id,) = list(sim.log.published)[before:]
    assert set(sim.log.delivered[msg_id]) == inside - {author}


def test_with_the_connection_manager_every_newcomer_gets_in() -> None:
    """The same network with the node's connection manager: idle connections
    above high water (5 of 8 here) are closed, so the bootstrap nodes always
    have room; the trims are counted."""
    sim = WholeNodeSimulation(small(max_inbound=8, capabilities=5))
    build(sim)
    sim.run_until(sim.now + 30.0)
    assert all(sim.nodes[i].booted for i in sim.live)
    assert sim.counters.trimmed > 0
    for i in sim.live:
        node = sim.nodes[i]
        assert node.inbound == sum(not out for _, out in node.conns.values()) <= 8
    _a_message_reaches_every_live_node(sim)


def test_a_crashed_peer_leaves_its_peers_connection_tables_after_the_keepalive() -> None:
    sim = WholeNodeSimulation(small(disconnect_detect=4.0))
    build(sim)
    sim.run_until(sim.now + 10.0)
    victim = sorted(sim.live - set(sim.boot))[0]
    peers = [j for j in sim.nodes[victim].conns]
    assert peers
    sim.crash(victim)
    sim.run_until(sim.now + 3.9)
    assert all(victim in sim.nodes[j].conns for j in peers)
    sim.run_until(sim.now + 0.2)
    assert not any(victim in sim.nodes[j].conns for j in peers)
    assert all(sim.nodes[victim].pid not in sim.nodes[j].gossip.peers() for j in peers)  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [dict(n=3), dict(bootstrap_nodes=1), dict(loss=1.0), dict(latency="x"),
                                 dict(capabilities=0), dict(swim_start="later")])
def test_bad_configurations_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        small(**bad)


def test_the_topic_is_an_agentp2p_topic() -> None:
    assert TOPIC.startswith("/agentp2p/")


def test_partition_merge_reports_when_every_view_is_whole() -> None:
    out = run_partition_merge(small(), settle=20.0, partition_s=20.0, heal_wait=60.0)
    assert out["merged_s"] is not None and out["merged_s"] <= 60.0
    assert out["curve"][-1]["nodes_behind"] == 0 and out["curve"][0]["t"] == 1.0
    assert out["config"]["connect_ahead"] == SwimConfig().connect_ahead
    assert out["declared_failed_after_heal"] == out["false_failures_after_heal"] + out["late_verdicts_after_heal"]


def test_under_churn_arrivals_join_lookups_find_live_agents_and_joined_nodes_hear_every_message() -> None:
    # 600 % an hour for 120 s at 30 nodes: about 6 crashes and 6 arrivals expected.
    def run() -> dict[str, object]:
        out = run_churn(small(), settle=20.0, churn_per_hour=6.0, duration=120.0, rate=1.0, probe_every=2.0)
        out["totals"].pop("wall_s")  # type: ignore[attr-defined]
        return out

    out = run()
    c = out["churn"]
    assert c["left"] >= 1 and c["arrived"] >= 1
    assert c["live_at_end"] == 30 - c["left"] + c["arrived"]
    assert c["arrivals_waiting"] == 0  # every live newcomer got in through a bootstrap node
    assert c["lookups"] >= 30 and c["found"] == c["lookups"]
    assert c["messages"] >= 90 and c["delivered"] == 1.0 and c["fully_delivered"] == 1.0
    # Every SWIM view holds every live member; crashed ones may still be held
    # (a crash is seen ~10-15 s later), but no live node is declared failed.
    assert c["views_min"] == 1.0 and c["false_failures"] == 0
    assert run() == out  # deterministic for a seed


def test_the_heal_probe_interval_is_checked() -> None:
    with pytest.raises(ValueError, match="heal_probe_every"):
        run_whole_node(small(), heal_probe_every=0)


class _Says:
    """Stands in for a node's SWIM core: its next input emits one member event."""

    def __init__(self, kind: EventKind, peer: bytes, incarnation: int) -> None:
        self.event = MemberEvent(kind, peer, incarnation, State.SUSPECT)

    def handle(self, now: float, event: object) -> list[object]:
        return [self.event]

    def next_deadline(self) -> None:
        return None


def test_a_verdict_before_any_frame_from_across_the_healed_cut_is_counted_as_the_partitions() -> None:
    """Right after a heal, a node's suspicion of a member on the other side,
    begun in the partition, can run out before any SWIM frame from there has
    reached it (at 500 nodes, 147 members about one member suspected 3 s
    before the heal). It judged on what it could know, a member unreachable
    for the whole partition: a late verdict, counted apart from false
    failures. A false failure: a verdict about its own side, one whose
    suspicion began after the heal (a false verdict spread by gossip) or at
    a newer incarnation, and any once a frame from across has arrived."""
    sim = WholeNodeSimulation(small())
    build(sim)
    sim.run_until(sim.now + 20.0)
    halves = {i: i % 2 for i in sorted(sim.live)}
    a, across, later, beside = 2, 3, 5, 4
    real = sim.nodes[a].swim

    def say(kind: EventKind, subject: int, incarnation: int = 0) -> tuple[int, int]:
        sim.nodes[a].swim = _Says(kind, sim.nodes[subject].pid, incarnation)  # type: ignore[assignment]
        sim._swim(a, Tick())  # noqa: SLF001
        sim.nodes[a].swim = real
        return sim.late_verdicts, sim.false_failures

    sim.partition(halves)
    sim.run_until(sim.now + 10.0)
    say(EventKind.SUSPECT, across)
    say(EventKind.SUSPECT, beside)
    sim.run_until(sim.now + 10.0)
    false0 = sim.false_failures
    assert say(EventKind.FAILED, across) == (0, false0)  # in the partition: unreachable, neither
    sim.heal()
    assert say(EventKind.FAILED, across) == (1, false0)
    assert say(EventKind.FAILED, across, incarnation=1) == (1, false0 + 1)  # suspected again since: not that one
    assert say(EventKind.FAILED, beside) == (1, false0 + 2)  # its own side: reachable all along
    say(EventKind.SUSPECT, later)  # begun after the heal (gossip of a verdict elsewhere)
    assert say(EventKind.FAILED, later) == (1, false0 + 3)
    assert sim._side(len(sim.nodes) + 7) == 0  # noqa: SLF001 — a node not in the cut: side 0, as reachable() has it
    sim.run_until(sim.now + 10.0)
    assert a in sim._heard_across  # noqa: SLF001 — through the simulator's delivery of SWIM frames
    assert set(sim._heard_across) == set(halves)  # noqa: SLF001 — every node, as the views merge
    # The real cores' own verdicts meanwhile count too (suspicions begun in
    # the partition by a core in poor health wait longer: some end after the
    # heal), so only what this one adds is ours to check.
    late, false = sim.late_verdicts, sim.false_failures
    assert say(EventKind.FAILED, across) == (late, false + 1)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_round_on_refusal_lets_a_join_storm_reach_the_bootstrap_nodes_sooner(seed: int) -> None:
    """80 nodes joining in a second, bootstrap nodes full at 16 inbound: a
    refused newcomer backs off up to 30 s while a full node waits for its
    next round (every 5 s). A round on refusal, as the node runs it
    (ConnectionsConfig.pressure_interval), cuts the P99 wait for a first
    bootstrap connection by more than half (2,000 nodes: docs/scale.md)."""
    def wait_p99(pressure: float) -> tuple[float, int]:
        cfg = small(n=80, seed=seed, join_rate=80.0, swim=False, max_inbound=16,
                    connections=ConnectionsConfig(pressure_interval=pressure))
        b = build(WholeNodeSimulation(cfg))
        assert b["joined"] == 80
        return b["boot_wait_p99"], b["pressure_rounds"]

    (before, none), (after, rounds) = wait_p99(0.0), wait_p99(1.0)
    assert none == 0 and rounds > 0
    assert 2 * after < before


def test_without_swim_the_dht_reknits_a_healed_partition() -> None:
    """SWIM off: the partition's failed requests cost each half its table
    entries of the other; once healed, the DHT pings its lost peers again
    (dht.reconnect_interval), and the connections that makes carry pub/sub
    gossip across. Without it nothing dialed across in 30 s in these runs.
    How soon it merges is a figure, not asserted: across 16 seeds it took
    0-15 s in 13 of them (benchmarks: docs/scale.md)."""
    def heal(seed: int, reconnect: float | None) -> tuple[float | None, int]:
        out = run_whole_node(small(swim=False, seed=seed, dht_reconnect_interval=reconnect), settle=20.0, idle=5.0,
                             newcomers=3, lookups=3, publish_s=5.0, crash_wait=10.0, partition_s=30.0, heal_wait=30.0)
        assert out["config"]["dht_reconnect_interval"] == (10.0 if reconnect is None else reconnect)
        return out["heal"]["pubsub_merged_s"], out["totals"]["dht_reconnected"]

    for seed in (1, 2, 3):
        merged, back = heal(seed, None)
        assert merged is not None and back >= 1
        assert heal(seed, 0.0) == (None, 0)


def test_a_newcomer_takes_the_first_record_fetched_not_the_first_provider_named() -> None:
    """find_agents(limit=1) fetches from every provider the lookup names and
    returns with the first answer; the simulator now measures that, where it
    took the first provider named, however far. Per lookup, never later."""
    from agentp2p.simulation.whole_node import _find

    sim = WholeNodeSimulation(small(n=100, seed=4, join_rate=50.0, capabilities=10))
    build(sim)
    sim.run_until(sim.now + 10.0)
    pairs: list[tuple[float, float]] = []
    for _ in range(12):
        cap = f"capability-{(len(sim.nodes) + 5) % 10}"  # not the newcomer's own (it would be found at once)
        got: list[tuple[bool, float]] = []
        named: list[tuple[bool, float]] = []
        box: list[int] = []
        box.append(sim.add_node(on_boot=lambda box=box, c=cap, t=sim.now, g=got, nm=named:
                                _find(sim, box[0], c, t, g, want=1, first_named=nm)))
        end = sim.now + 30.0
        while not (got and named) and sim.now < end:
            sim.run_until(sim.now + 0.25)
        assert got and got[0][0] and named and named[0][0], (got, named)
        pairs.append((got[0][1], named[0][1]))
    assert all(new <= old + 1e-9 for new, old in pairs), pairs
    assert any(new < old - 1e-3 for new, old in pairs), pairs  # the race does pick a nearer provider


def test_sparing_or_redialing_swims_next_probe_targets_cuts_the_false_suspicions_of_a_trimming_network() -> None:
    """Connections capped at 16 (the manager trims to 8 from 10): a
    connection SWIM's next probe needs is closed before the probe (by our
    manager, or by the member's, which cannot know the probe is coming),
    the probe dials inside its timeout, and a live member is suspected.
    Two guards: our manager spares the members SWIM probes now or next
    (SwimCore.upcoming), and SWIM asks again at once for such a connection
    closed in order (redial_upcoming). Counted: probes of live members that
    failed, over 60 s of steady state, summed over eight seeds (one seed's
    count swings 2-22 with any change to what the network does during its
    build). The mesh shares the protection cap (4 here) and still delivers
    a message to every node. SWIM probes the whole roster here
    (probe_connected_min 0), as by default before 2026-12-05; the default
    now, probing over the connections, does about as well."""
    def suspicions(seed: int, protect: bool, redial: bool, probe_connected_min: int = 0,
                   grace: bool = False) -> tuple[int, int]:  # fmt: skip
        """Suspicions in 60 s of steady state, and probes over connections in them.
        close_grace off (the default): these guards measured alone."""
        sim = WholeNodeSimulation(small(max_inbound=16, protect_probes=protect, redial_upcoming=redial, seed=seed,
                                        probe_connected_min=probe_connected_min, close_grace=grace))
        build(sim)
        sim.run_until(sim.now + 20.0)
        stats = [sim.nodes[i].swim.stats for i in sim.live]  # type: ignore[union-attr]
        before = sum(st.suspected for st in stats), sum(st.connected_probes for st in stats)
        sim.run_until(sim.now + 60.0)
        assert sim.live == set(range(30))  # nobody crashed: every suspicion was of a live member
        count = sum(st.suspected for st in stats) - before[0]
        _a_message_reaches_every_live_node(sim)
        return count, sum(st.connected_probes for st in stats) - before[1]

    seeds = (1, 2, 3, 4, 5, 6, 7, 8)  # four gave 14 unguarded once the DHT's refreshes were spread (2026-12-07)
    neither = sum(suspicions(seed, False, False)[0] for seed in seeds)
    spared = [suspicions(seed, True, False) for seed in seeds]
    assert all(none == 0 for _, none in spared)
    assert neither >= 30, neither  # 40 on 2026-12-07 (the floor was 20 for the first four seeds)
    for guarded in (sum(count for count, _ in spared), sum(suspicions(seed, False, True)[0] for seed in seeds)):
        assert 3 * guarded <= 2 * neither, (guarded, neither)
    # The default since 2026-12-05: over the connections (8 of the 8-10 a
    # node keeps here), where no probe but the roster's and the ring's
    # dials, with both guards.
    default = [suspicions(seed, True, True, SwimConfig().probe_connected_min) for seed in seeds]
    assert all(probes > 30 * 60 // 4 for _, probes in default), default  # most nodes in the mode most of the time
    over_connections = sum(count for count, _ in default)
    assert 3 * over_connections <= 2 * neither, (over_connections, neither)


def _held_the_slow_way(sim: WholeNodeSimulation) -> list[int]:
    return [len(sim.swim_held(i) & sim.live) for i in sorted(sim.live) if sim.nodes[i].swim is not None]


def test_a_warm_start_runs_no_swim_in_the_build_then_every_view_holds_the_whole_network() -> None:
    """swim_start="warm": no SWIM frame while the network is built; when the
    build ends every live node's view is every other live node at once (one
    shared roster), its probes go over the connections it holds, and a crash
    after it is seen failed by every live node."""
    sim = WholeNodeSimulation(small(swim_start="warm", n=40))
    assert sim.swim_started_at is None
    out = build(sim)
    assert out["swim_started_at"] == sim.now
    assert sim.counters.events["swim"] > 0  # the start's ticks and connections...
    assert sim.counters.messages["swim"] == 0  # ... but nothing sent yet
    assert all(sim.nodes[i].swim is not None for i in sim.live)
    assert sim.views_whole() and min(sim.members_known()) == 1.0
    node = sim.nodes[sorted(sim.live)[5]]
    assert node.swim is not None
    held = {sim.index[p] for p in node.swim.keep_connected()}
    assert len(held) >= 8 and len(held - set(node.conns)) <= 1  # the connections it holds (and its ring successor)
    sim.run_until(sim.now + 20.0)
    assert sim.counters.messages["swim"] > 0 and sim.false_failures == 0
    victim = sorted(sim.live - set(sim.boot))[3]
    sim.crash(victim)
    sim.run_until(sim.now + 30.0)
    seen = {i for _, i, j in sim.failures if j == victim}
    assert seen == sim.live
    assert sim.views_whole()
    with pytest.raises(RuntimeError):
        sim.start_swim()


def test_a_newcomer_after_a_warm_start_joins_swim_as_a_node_does() -> None:
    sim = WholeNodeSimulation(small(swim_start="warm"))
    build(sim)
    sim.run_until(sim.now + 5.0)
    late = sim.add_node()
    assert sim.nodes[late].swim is not None
    core = sim.nodes[late].swim
    assert core.alive_count() == 0
    sim.run_until(sim.now + 30.0)
    assert sim.views_whole()  # it learned everyone, and everyone learned it


@pytest.mark.parametrize("start", ["join", "warm"])
def test_the_views_are_counted_as_the_sets_of_live_nodes_they_hold(start: str) -> None:
    """members_known() and views_whole() count a view's live members in
    O(nodes down); the sets they replaced must give the same, with crashed
    nodes still held by some views and not by others."""
    sim = WholeNodeSimulation(small(swim_start=start, n=40))
    build(sim)
    sim.run_until(sim.now + 10.0)
    others = len(sim.live) - 1
    for victim in sorted(sim.live - set(sim.boot))[:3]:
        sim.crash(victim)
    samples = 0
    stale_seen = False
    for _ in range(12):
        sim.run_until(sim.now + 1.0)
        others = len(sim.live) - 1
        slow = _held_the_slow_way(sim)
        assert sim.members_known() == [h / others for h in slow]
        assert sim.views_whole() == (min(slow) == others)
        # Some views still hold a crashed node (counted in alive_count, not here).
        stale_seen |= any(sim.nodes[i].swim.alive_count() > h  # type: ignore[union-attr]
                          for i, h in zip(sorted(sim.live), slow))
        samples += 1
    assert samples == 12 and stale_seen


def test_every_dial_is_counted_by_what_made_it() -> None:
    """Counters.dials_by: the dials each cause made add up to all dials; each
    newcomer's first dial is a bootstrap dial, and SWIM's and the DHT's frames dial."""
    sim = WholeNodeSimulation(small(n=40))
    build(sim)
    sim.run_until(sim.now + 30.0)
    by = sim.counters.dials_by
    assert sum(by.values()) == sim.counters.dials
    assert by["boot"] >= 40 - 4
    assert any(k.startswith("swim:") for k in by) and any(k.startswith("kad:") for k in by)
    assert all(k == "boot" or k.startswith(("swim:", "kad:")) for k in by)  # gossipsub sends only where connected


def test_a_swim_dial_is_named_for_the_frame_that_made_it() -> None:
    """_swim_cause: a Ping to the period's own target is the probe's, any
    other Ping (an admission's, a helper's, a reconnect's) is "other", and
    every other frame by its body."""
    from agentp2p.protocol.swim import Message, Ping, Send
    from agentp2p.protocol.swim.messages import PushPull, Step
    from agentp2p.simulation.whole_node import _swim_cause

    sim = WholeNodeSimulation(small(n=20))
    build(sim)
    sim.run_until(sim.now + 5.0)
    core = sim.nodes[sorted(sim.live)[7]].swim
    assert core is not None
    target = core.upcoming()[0]
    other = next(m.peer_id for m in core.members() if m.peer_id != target)
    assert _swim_cause(core, Send(target, Message(1, 0, Ping(target)))) == "swim:Ping(probe)"
    assert _swim_cause(core, Send(other, Message(2, 0, Ping(other)))) == "swim:Ping(other)"
    assert _swim_cause(core, Send(other, Message(3, 0, PushPull(Step.REQUEST)))) == "swim:PushPull"


def test_crash_detection_counts_apart_the_pairs_whose_observer_never_held_the_node() -> None:
    """An observer that never admitted a node (a newcomer whose candidate
    ping it had not answered) cannot see it fail: such a pair is unseen over
    all pairs (the older measure) but not a miss among held pairs."""
    sim = SimpleNamespace(failures=[(103.0, 1, 5), (104.0, 2, 6), (107.0, 3, 6)],
                          cfg=SimpleNamespace(swim_start="cold"))
    held = {(1, 5), (2, 6), (3, 6), (3, 5), (9, 5)}  # 3 held 5 and missed it; 9 is no observer now; 7: nobody
    out = _detection(sim, [5, 6, 7], 100.0, {1, 2, 3}, held)  # type: ignore[arg-type]
    assert (out["pairs"], out["pairs_seen"], out["missed_by"]) == (9, 3, 3)  # everyone missed 7
    assert (out["pairs_held"], out["held_unseen"]) == (4, 1)  # only (3, 5) was held and missed
    assert out["crashes_held"] == 2  # 7, held by nobody, is no crash any holder could miss
    assert out["all_holders_saw"] == 1 and out["all_holders_p99"] == 7.0  # 6: its holders 2 and 3, the last at +7 s
    assert _detection(sim, [5, 6, 7], 100.0, {1, 2, 3})["pairs_seen"] == 3  # type: ignore[arg-type]
