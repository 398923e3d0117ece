"""The core against scripted peers on virtual time: serving, queries, timeouts, quorum, timers."""

from __future__ import annotations

import pytest

from agentp2p.protocol.kademlia import (
    Bootstrap,
    CancelQuery,
    CancelRequest,
    CloseRequest,
    ClosestPeers,
    FindPeer,
    FindProviders,
    GetValue,
    KademliaConfig,
    Message,
    MessageType,
    Mode,
    NamespacedValidator,
    Peer,
    PeerConnected,
    PeerFound,
    Provide,
    ProvidersFound,
    ProvidersProgress,
    PutValue,
    QueryError,
    QueryFinished,
    Record,
    RequestReceived,
    ResponseReceived,
    RoutingUpdated,
    SendRequest,
    SendResponse,
    StartLookup,
    Tick,
    ValueFound,
    ValuePut,
    encode_message,
    kad_key,
)

from .kadhelpers import FAIL, Driver, IdealNetwork, SeqValidator, closest_to, core_knowing, pid, same_bucket

VALIDATOR = NamespacedValidator({"v": SeqValidator()})
QUIET = KademliaConfig(refresh_interval=1e9, refresh_check_interval=1e9)  # no refresh lookups in the way


def serve(core, msg, peer=pid("asker"), now=0.0):  # type: ignore[no-untyped-def]
    acts = core.handle(now, RequestReceived(peer, "r1", msg))
    return [a for a in acts if isinstance(a, (SendResponse, CloseRequest))]


# ------------------------------------------------------------------ serving


def test_find_node_answers_k_closest_without_the_requester() -> None:
    peers = [pid(i) for i in range(60)]
    core = core_knowing(peers)
    asker = peers[0]
    [resp] = serve(core, Message(MessageType.FIND_NODE, key=b"x"), asker)
    assert isinstance(resp, SendResponse)
    ids = [p.id for p in resp.message.closer_peers]
    held = [e.peer for e in core.table.peers()]  # bucket 0 is full at k = 20: not all 60 fit
    assert asker in held and ids == closest_to(b"x", [p for p in held if p != asker])
    assert all(p.addrs == (b"/sim",) for p in resp.message.closer_peers)


def test_peers_without_addresses_are_not_served() -> None:
    """A go FindPeer asker would take such an answer for the target, found
    with no address (the mixed interop test saw it)."""
    peers = [pid(i) for i in range(10)]
    core = core_knowing(peers)
    core.handle(0.0, PeerConnected(pid("no-addrs"), (), True))
    assert pid("no-addrs") in [e.peer for e in core.table.peers()]
    [resp] = serve(core, Message(MessageType.FIND_NODE, key=pid("no-addrs")), peers[0])
    ids = [p.id for p in resp.message.closer_peers]
    assert pid("no-addrs") not in ids and len(ids) == 9 and all(p.addrs for p in resp.message.closer_peers)


def test_put_get_value_and_refusals() -> None:
    core = core_knowing([pid(i) for i in range(5)], validator=VALIDATOR)
    put = Message(MessageType.PUT_VALUE, key=b"/v/a", record=Record(b"/v/a", b"2:x"))
    [r] = serve(core, put)
    assert isinstance(r, SendResponse) and r.message == put  # the echo is the acknowledgement
    [r] = serve(core, Message(MessageType.GET_VALUE, key=b"/v/a"))
    assert r.message.record.value == b"2:x" and len(r.message.closer_peers) == 5
    for bad in (
        Message(MessageType.PUT_VALUE, key=b"/v/a", record=Record(b"/v/a", b"1:older")),
        Message(MessageType.PUT_VALUE, key=b"/v/a", record=Record(b"/v/b", b"3:x")),
        Message(MessageType.PUT_VALUE, key=b"/v/b", record=Record(b"/v/b", b"no seq")),
        Message(MessageType.PUT_VALUE, key=b"/v/b"),
        Message(MessageType.GET_VALUE),
    ):
        [r] = serve(core, bad)
        assert isinstance(r, CloseRequest) and r.error
    assert core.records.get(b"/v/a", 0.0).value == b"2:x"  # type: ignore[union-attr]


def test_add_provider_only_for_the_sender_and_get_providers() -> None:
    core = core_knowing([pid(i) for i in range(5)])
    me, other = pid("prov"), pid("other")
    add = Message(MessageType.ADD_PROVIDER, key=b"cid",
                  provider_peers=(Peer(other, (b"/o",)), Peer(me, (b"/me",))))
    [r] = serve(core, add, me)
    assert r == CloseRequest(me, "r1", None)  # ADD_PROVIDER has no answer
    [r] = serve(core, Message(MessageType.ADD_PROVIDER, key=b"cid", provider_peers=(Peer(other),)), me)
    assert r.error  # nobody may announce someone else
    [r] = serve(core, Message(MessageType.GET_PROVIDERS, key=b"cid"))
    assert r.message.provider_peers == (Peer(me, (b"/me",)),)


def test_ping_client_mode_and_malformed() -> None:
    core = core_knowing([])
    [r] = serve(core, Message(MessageType.PING))
    assert r.message.type is MessageType.PING
    [r] = serve(core, b"\xff\xff\xff")
    assert isinstance(r, CloseRequest) and "malformed" in r.error and core.stats.malformed == 1
    client = core_knowing([], config=KademliaConfig(mode=Mode.CLIENT))
    [r] = serve(client, encode_message(Message(MessageType.PING)))
    assert r.error == "client mode"


def test_provider_record_expires_after_48h() -> None:
    core = core_knowing([])
    p = pid("prov")
    serve(core, Message(MessageType.ADD_PROVIDER, key=b"cid", provider_peers=(Peer(p),)), p)
    get = Message(MessageType.GET_PROVIDERS, key=b"cid")
    assert serve(core, get, now=47.9 * 3600)[0].message.provider_peers
    assert not serve(core, get, now=48.1 * 3600)[0].message.provider_peers


def test_record_expires_after_ttl() -> None:
    core = core_knowing([], config=KademliaConfig(record_ttl=100.0), validator=VALIDATOR)
    serve(core, Message(MessageType.PUT_VALUE, key=b"/v/a", record=Record(b"/v/a", b"1:x")))
    assert serve(core, Message(MessageType.GET_VALUE, key=b"/v/a"), now=99.0)[0].message.record is not None
    assert serve(core, Message(MessageType.GET_VALUE, key=b"/v/a"), now=100.0)[0].message.record is None


# ------------------------------------------------------------------ lookups


def test_lookup_finds_true_closest_with_alpha_in_flight() -> None:
    net = IdealNetwork(500)
    d = Driver(core_knowing(net.peers[:30], config=QUIET), net)
    d.feed(StartLookup("q", b"somewhere"))
    res = d.run_until_finished("q")
    assert isinstance(res.result, ClosestPeers)
    assert [p.id for p in res.result.peers] == closest_to(b"somewhere", net.peers)
    assert d.max_outstanding <= 3
    assert res.stats.requests == len(d.sent) and res.stats.failures == 0
    print(f"\nlookup over 500 ideal peers: {res.stats.requests} requests, {res.stats.hops} hops")


def test_silent_peers_time_out_and_are_evicted() -> None:
    net = IdealNetwork(100)
    silent = set(net.peers[:10])
    for p in silent:
        net.override[p] = lambda m: None
    cfg = KademliaConfig(refresh_interval=1e9, request_timeout=5.0, max_failures=1)
    core = core_knowing(net.peers[:30], config=cfg)
    d = Driver(core, net)
    d.feed(StartLookup("q", b"k"))
    res = d.run_until_finished("q")
    cancelled = [a for a in d.actions if isinstance(a, CancelRequest)]  # timed out, or abandoned at the end
    assert res.stats.failures == core.stats.timeouts > 0 and len(cancelled) >= core.stats.timeouts
    assert not res.stats.timed_out and res.stats.duration < cfg.lookup_timeout
    assert {p.id for p in res.result.peers} <= set(net.peers) - silent
    removed = {a.peer for a in d.actions if isinstance(a, RoutingUpdated) and not a.added}
    assert removed and removed <= silent
    d.feed(ResponseReceived(cancelled[0].request_id, Message(MessageType.FIND_NODE)))
    assert core.stats.unsolicited == 1  # a late answer is dropped


def test_garbage_wrong_type_and_failed_streams_count_as_failures() -> None:
    net = IdealNetwork(100)
    bad = net.peers[:9]
    for i, p in enumerate(bad):
        net.override[p] = [lambda m: b"\xff\x00garbage", lambda m: Message(MessageType.PING), lambda m: FAIL][i % 3]
    d = Driver(core_knowing(net.peers[:30], config=QUIET), net)
    d.feed(StartLookup("q", b"k"))
    res = d.run_until_finished("q")
    assert {p.id for p in res.result.peers}.isdisjoint(bad)
    assert res.stats.failures >= 1 and d.core.stats.malformed >= 1


def _fake_flood(n: int) -> tuple[Peer, ...]:
    return tuple(Peer(pid(f"fake{i}"), (b"/nowhere",)) for i in range(n))


@pytest.mark.parametrize("slow_after", [0.0, None])  # off (the default), and learned from the liars' fast answers
def test_ten_thousand_fake_closer_peers_cannot_stall_or_grow_memory(slow_after: float | None) -> None:
    """Liars answer with 10,000 fake peers (as a decoded Message: the codec
    would refuse the bytes); the fakes never answer. The lookup ends by its
    deadline, and nothing it holds grows past its bounds."""
    net = IdealNetwork(200)
    flood = _fake_flood(10_000)
    fakes = {p.id for p in flood}
    by_dist = {p.id: p for p in flood}
    near = [by_dist[i] for i in closest_to(b"k", list(by_dist), 10_000)]  # the fakes closest to the target first
    liars = net.peers[:5]
    for i, p in enumerate(liars):  # each liar leads with a different slice of the closest fakes
        net.override[p] = lambda m, i=i: Message(m.type, m.key, closer_peers=tuple(near[20 * i:] + near[:20 * i]))
    cfg = KademliaConfig(refresh_interval=1e9, lookup_timeout=30.0, request_timeout=10.0, slow_after=slow_after)
    core = core_knowing(liars + net.peers[5:15], config=cfg)
    d = Driver(core, lambda peer, m: None if peer in fakes else net(peer, m))
    d.feed(StartLookup("q", b"k"))
    worst_candidates = worst_inflight = worst_pending = 0
    while "q" not in d.finished:
        d.run(d.queue[0][0])
        for q in core._queries.values():
            worst_candidates = max(worst_candidates, q.lookup.candidate_count())
            worst_inflight = max(worst_inflight, len(q.lookup.in_flight()))
        worst_pending = max(worst_pending, core.pending_count())  # lookup requests + table liveness pings
    res = d.finished["q"]
    assert res.stats.duration <= cfg.lookup_timeout + 1e-9
    # α holding slots, and at most 3α more given up as slow (slow_after).
    bound = cfg.alpha + (3 * cfg.alpha if slow_after is None else 0)
    assert worst_candidates <= cfg.max_candidates and worst_inflight <= bound
    assert d.max_outstanding <= bound and worst_pending <= bound + 1
    assert res.stats.requests <= 3 * cfg.max_candidates
    assert core.pending_count() == 0 and core.query_count() == 0
    assert not {p.id for p in res.result.peers} & fakes
    print(f"\nflooded lookup: {res.stats.requests} requests, {res.stats.failures} failed, "
          f"ended after {res.stats.duration:.1f} s (timed_out={res.stats.timed_out}), "
          f"at most {worst_candidates} candidates held")


def test_flood_as_bytes_is_refused_by_the_codec() -> None:
    net = IdealNetwork(100)
    raw = encode_message(Message(MessageType.FIND_NODE, closer_peers=_fake_flood(10_000)))
    net.override[closest_to(b"k", net.peers[:20], 1)[0]] = lambda m: raw  # asked first
    core = core_knowing(net.peers[:20], config=QUIET)
    d = Driver(core, net)
    d.feed(StartLookup("q", b"k"))
    res = d.run_until_finished("q")
    assert core.stats.malformed >= 1 and len(res.result.peers) == 20


def test_never_answering_network_ends_at_deadline() -> None:
    peers = [pid(i) for i in range(50)]
    cfg = KademliaConfig(refresh_interval=1e9, lookup_timeout=25.0, request_timeout=100.0)
    d = Driver(core_knowing(peers, config=cfg), lambda p, m: None)
    d.feed(GetValue("q", b"/v/x", quorum=2))
    res = d.run_until_finished("q")
    assert res.stats.timed_out and res.stats.duration == 25.0
    assert isinstance(res.result, ValueFound) and res.result.value is None and not res.result.quorum_met
    assert d.core.pending_count() == 0


def test_find_peer() -> None:
    net = IdealNetwork(300)
    target = net.peers[123]
    d = Driver(core_knowing(net.peers[:20], config=QUIET), net)
    d.feed(FindPeer("q", target))
    res = d.run_until_finished("q")
    assert res.result == PeerFound(Peer(target, (b"/sim",)))
    acts = d.feed(FindPeer("q2", net.peers[0]))  # in the table: no lookup
    assert d.finished["q2"].result.peer.id == net.peers[0] and not any(isinstance(a, SendRequest) for a in acts)


def test_too_many_queries_and_duplicate_ids() -> None:
    d = Driver(core_knowing([pid(i) for i in range(5)], config=KademliaConfig(max_queries=1)), lambda p, m: None)
    d.feed(StartLookup("a", b"x"))
    d.feed(StartLookup("b", b"y"))
    assert d.finished["b"].result == QueryError("too many queries")


# ------------------------------------------------------------------ values and providers


def test_get_value_quorum_best_value_and_correction() -> None:
    net = IdealNetwork(200)
    holders = closest_to(b"/v/k", net.peers, 6)
    for i, p in enumerate(holders):
        net.values[p] = {b"/v/k": b"%d:v" % (5 if i % 2 else 3)}  # half outdated
    net.values[holders[-1]] = {b"/v/k": b"junk"}  # invalid: ignored
    d = Driver(core_knowing(net.peers[:20], config=QUIET, validator=VALIDATOR), net)
    d.feed(GetValue("q", b"/v/k", quorum=4))
    res = d.run_until_finished("q")
    r = res.result
    assert isinstance(r, ValueFound) and r.value == b"5:v" and r.count >= 4 and r.quorum_met
    corrections = [a for a in d.sent if a.message.type is MessageType.PUT_VALUE]
    assert corrections and {a.peer for a in corrections} <= set(holders[::2])
    assert r.corrected == len(corrections)
    assert all(a.message.record.value == b"5:v" for a in corrections)


def test_get_value_local_copy_counts_and_quorum_one_is_local() -> None:
    core = core_knowing([pid(i) for i in range(5)], config=QUIET, validator=VALIDATOR)
    d = Driver(core, lambda p, m: None)
    d.feed(PutValue("p", b"/v/a", b"1:x", quorum=1))
    acts = d.feed(GetValue("g", b"/v/a", quorum=1))
    assert d.finished["g"].result.value == b"1:x" and not any(isinstance(a, SendRequest) for a in acts)


def test_put_value_quorum() -> None:
    net = IdealNetwork(200)
    closest = closest_to(b"/v/k", net.peers)
    for p in closest[:15]:
        net.override[p] = lambda m, p=p: FAIL if m.type is MessageType.PUT_VALUE else net.honest(p, m)
    d = Driver(core_knowing(net.peers[:20], config=QUIET, validator=VALIDATOR), net)
    d.feed(PutValue("ok", b"/v/k", b"1:x", quorum=5))
    r = d.run_until_finished("ok").result
    assert r == ValuePut(stored=5, quorum_met=True)
    d.feed(PutValue("short", b"/v/k", b"2:x", quorum=6))
    assert d.run_until_finished("short").result == ValuePut(stored=5, quorum_met=False)
    d.feed(PutValue("bad", b"/v/k", b"nope"))
    assert d.finished["bad"].result == QueryError("invalid record")
    d.feed(PutValue("old", b"/v/k", b"1:x"))
    assert d.finished["old"].result == QueryError("a better record is stored")


def test_provide_then_republish_when_due() -> None:
    net = IdealNetwork(100)
    cfg = KademliaConfig(refresh_interval=1e9, refresh_check_interval=1e9, cleanup_interval=1e9)
    d = Driver(core_knowing(net.peers[:20], config=cfg), net)
    d.feed(Provide("p", b"cid"))
    assert d.run_until_finished("p").result.announced == 20
    adds = lambda: [a for a in d.sent if a.message.type is MessageType.ADD_PROVIDER]  # noqa: E731
    assert len(adds()) == 20 and all(not a.expect_response for a in adds())
    assert adds()[0].message.provider_peers[0].id == d.core.local_peer
    d.run(21.9 * 3600)
    assert len(adds()) == 20
    d.run(22.1 * 3600)
    assert len(adds()) == 40  # republished by the core itself, 22 h later


def test_find_providers_stops_at_count() -> None:
    net = IdealNetwork(200)
    net.providers[b"cid"] = [Peer(pid(f"prov{i}"), (b"/p",)) for i in range(3)]
    d = Driver(core_knowing(net.peers[:20], config=QUIET), net)
    d.feed(FindProviders("q", b"cid", count=2))
    res = d.run_until_finished("q")
    assert isinstance(res.result, ProvidersFound) and len(res.result.providers) == 2
    assert res.stats.requests <= 3  # the first answer had them


def test_find_providers_reports_each_provider_once_as_it_learns_it() -> None:
    net = IdealNetwork(200)
    provs = [Peer(pid(f"prov{i}"), (b"/p%d" % i,)) for i in range(5)]
    net.providers[b"cid"] = provs[:3]
    net.override[net.peers[0]] = lambda m: None  # one silent peer: the lookup cannot end early
    d = Driver(core_knowing(net.peers[:20], config=QUIET), net)
    d.feed(FindProviders("q", b"cid", count=20))
    first = [a for a in d.actions if isinstance(a, ProvidersProgress)]
    assert first == []  # nothing held locally, nothing answered yet
    fin = d.run_until_finished("q")
    reports = [a for a in d.actions if isinstance(a, ProvidersProgress)]
    seen = [p for r in reports for p in r.providers]
    assert all(r.query_id == "q" for r in reports)
    assert seen == provs[:3]  # each once, in the order learned, with addresses
    assert list(fin.result.providers) == provs[:3]
    assert d.actions.index(reports[-1]) < d.actions.index(fin)  # progress always comes before the result


def test_find_providers_reports_local_providers_at_once() -> None:
    net = IdealNetwork(50)
    d = Driver(core_knowing(net.peers[:20], config=QUIET), net)
    held = Peer(pid("held"), (b"/h",))
    d.core.providers.add(b"cid", held.id, held.addrs, 0.0)
    acts = d.feed(FindProviders("q", b"cid", count=20))
    assert [a for a in acts if isinstance(a, ProvidersProgress)] == [ProvidersProgress("q", (held,))]


def test_cancel_query_finishes_it_now_and_cancels_its_requests() -> None:
    net = IdealNetwork(200)
    silent = set(net.peers[:20])
    for p in silent:
        net.override[p] = lambda m: None  # nobody answers: only the deadline would end it
    d = Driver(core_knowing(net.peers[:20], config=QUIET), net)
    d.feed(FindProviders("q", b"cid", count=20))
    in_flight = {a.request_id for a in d.sent}
    assert in_flight and "q" not in d.finished
    acts = d.feed(CancelQuery("q"))
    fin = d.finished["q"]
    assert isinstance(fin.result, ProvidersFound) and fin.result.providers == ()
    assert {a.request_id for a in acts if isinstance(a, CancelRequest)} == in_flight
    assert d.core.query_count() == 0 and d.core.pending_count() == 0
    assert d.core.stats.cancelled == 1
    assert not [a for a in d.feed(CancelQuery("q")) if isinstance(a, QueryFinished)]  # finished: ignored
    assert d.core.stats.cancelled == 1 and d.core.stats.timeouts == 0


def test_cancel_query_leaves_a_provide_to_write_its_records() -> None:
    net = IdealNetwork(100)
    d = Driver(core_knowing(net.peers[:20], config=QUIET), net)
    d.feed(Provide("p", b"cid"))
    d.feed(CancelQuery("p"))  # the caller gave up: the network still gets the record
    assert "p" not in d.finished and d.core.stats.cancelled == 0
    assert d.run_until_finished("p").result.announced == 20


def test_cancel_query_leaves_internal_queries_alone() -> None:
    net = IdealNetwork(100)
    for p in net.peers[:20]:
        net.override[p] = lambda m: None
    d = Driver(core_knowing(net.peers[:20], config=QUIET), net)
    d.feed(Bootstrap())
    running = d.core.query_count()
    assert running == 1
    d.feed(CancelQuery(("internal", 1)))  # an id only the core hands out
    assert d.core.query_count() == running and d.core.stats.cancelled == 0


# ------------------------------------------------------------------ table upkeep


def test_full_bucket_pings_before_evicting() -> None:
    cfg = KademliaConfig(k=2, max_candidates=20, refresh_interval=1e9)
    me = pid("me")
    same = same_bucket(me, 4)
    alive = {same[0]: False, same[1]: True}
    core = core_knowing(same[:2], config=cfg, me=me)
    d = Driver(core, lambda p, m: None, ping_ok=lambda p: alive.get(p, True))
    d.feed(PeerConnected(same[2], (b"/c",), True))
    assert [p.peer for p in d.pings] == [same[0]]  # the least recently seen
    assert same[2] not in core.table
    d.run(1.0)
    assert same[0] not in core.table and same[2] in core.table  # it failed: the newcomer took its slot
    d.feed(PeerConnected(same[3], (), True))
    assert d.pings[-1].peer == same[1]
    d.run(2.0)
    assert same[1] in core.table and same[3] not in core.table  # it answered: it stays


def test_liveness_checks_keep_to_the_budget() -> None:
    """Servers not in a full bucket keep connecting; the node sends at most
    ping_burst checks at once and ping_rate per second after, and counts the
    rest (their newcomers wait in the replacement cache)."""
    cfg = KademliaConfig(k=2, max_candidates=20, refresh_interval=1e9, ping_rate=0.1, ping_burst=2)
    me = pid("me")
    same = same_bucket(me, 8)
    core = core_knowing(same[:2], config=cfg, me=me)
    d = Driver(core, lambda p, m: None)
    for i, p in enumerate(same[2:6]):  # each check is answered before the next server connects
        d.run(1.0 + i)
        d.feed(PeerConnected(p, (), True))
    assert len(d.pings) == 2 and core.stats.pings_skipped == 2
    assert core.table.replacement_count() == 4 and {e.peer for e in core.table.peers()} == set(same[:2])
    d.run(15.0)  # 10 s buys one token
    d.feed(PeerConnected(same[6], (), True))
    d.feed(PeerConnected(same[7], (), True))  # the check of the first is under way: not asked, not counted
    assert len(d.pings) == 3 and core.stats.pings_skipped == 2


def _refresh_starts(d: Driver, until: float, step: float) -> list[tuple[float, int]]:
    """(check time, bucket) of each refresh lookup started, stepping the
    driver ``step`` s at a time up to ``until``; a lookup is its key's first request."""
    seen: set[bytes] = set()
    starts: list[tuple[float, int]] = []
    t = d.now
    while t < until:
        t += step
        d.run(t)
        for a in d.sent:
            if a.message.key not in seen:
                seen.add(a.message.key)
                starts.append((t, d.core.table.bucket_of(kad_key(a.message.key))))
    return starts


def test_refresh_looks_up_stale_buckets_a_few_per_check_each_due_about_an_interval_on() -> None:
    """A bucket no lookup touched for refresh_interval gets one; a check starts
    at most max_refreshes_per_check (the stalest first), and each bucket's next
    refresh falls due an interval on give or take refresh_jitter of it."""
    net = IdealNetwork(100)
    cfg = KademliaConfig(refresh_interval=600.0, refresh_check_interval=60.0)
    assert cfg.max_refreshes_per_check == 2 and cfg.refresh_jitter == 0.25
    core = core_knowing(net.peers[:40], config=cfg)
    d = Driver(core, net)
    d.feed(Tick())
    d.run(599.0)
    assert not d.sent  # every bucket counts as refreshed at the table's start
    d.now = 540.0  # (nothing due in between) steps from here land on the checks: 600, 660...
    starts = _refresh_starts(d, 4000.0, 60.0)
    assert all(a.message.type is MessageType.FIND_NODE for a in d.sent)
    per_check: dict[float, list[int]] = {}
    for t, b in starts:
        per_check.setdefault(t, []).append(b)
    assert max(len(v) for v in per_check.values()) == 2
    # All were born stale together at 600: the stalest-first order (ties by
    # bucket) takes them two by two from bucket 0.
    assert per_check[600.0] == [0, 1] and per_check[660.0] == [2, 3]
    by_bucket: dict[int, list[float]] = {}
    for t, b in starts:
        by_bucket.setdefault(b, []).append(t)
    gaps = [b - a for ts in by_bucket.values() for a, b in zip(ts, ts[1:])]
    assert len(by_bucket) > 3 and len(gaps) >= 2 * len(by_bucket)
    # Due 450-750 s after a lookup; seen at the next check, or one more if capped.
    assert 420.0 <= min(gaps) and max(gaps) <= 900.0
    assert len(set(gaps)) > 3  # spread, not one period for all


def test_refresh_without_jitter_or_cap_looks_up_every_stale_bucket_at_once() -> None:
    """The counterpart (and what the defaults replace): every stale bucket at
    the same check, each next due exactly an interval on."""
    net = IdealNetwork(100)
    cfg = KademliaConfig(refresh_interval=600.0, refresh_check_interval=60.0, refresh_jitter=0.0,
                         max_refreshes_per_check=64)
    d = Driver(core_knowing(net.peers[:40], config=cfg), net)
    d.feed(Tick())
    d.run(540.0)
    starts = _refresh_starts(d, 2000.0, 60.0)
    first = [b for t, b in starts if t == 600.0]
    assert len(first) > 3 and first == sorted(first)
    for b in first:  # due at 1200.x (the lookup's end), seen at the check after
        assert [t for t, x in starts if x == b] == [600.0, 1260.0, 1920.0]


def test_a_bootstrap_with_a_query_id_reports_its_self_lookup_and_refreshes_every_bucket() -> None:
    """What the node's join sends (DHT.self_lookup): the self-lookup answers
    like a StartLookup, and its end still looks up every bucket, even one
    whose due time a lookup just jittered into the future."""
    net = IdealNetwork(2000)
    cfg = KademliaConfig(refresh_interval=600.0, refresh_check_interval=1e9)
    d = Driver(core_knowing(net.peers[:3], config=cfg), net)
    d.core.table.mark_refreshed(bytes([d.core.table.local_key[0] ^ 0x80]) + bytes(31), 500.0)  # bucket 0, ahead
    d.feed(Bootstrap("join"))
    d.run(30.0)
    fin = d.finished["join"]
    assert isinstance(fin.result, ClosestPeers) and len(fin.result.peers) == 20
    asked = {d.core.table.bucket_of(kad_key(r.message.key)) for r in d.sent
             if r.message.type is MessageType.FIND_NODE and r.message.key != d.core.local_peer}
    assert 0 in asked and len(asked) >= 6
    # A duplicate ID is refused, and the query holding it is not taken for a join.
    d.feed(StartLookup("q", pid("x")))
    acts = d.feed(Bootstrap("q"))
    assert any(isinstance(a, QueryFinished) and isinstance(a.result, QueryError) for a in acts)
    before = len(d.sent)
    d.run(60.0)
    assert {kad_key(r.message.key) for r in d.sent[before:]} == {kad_key(pid("x"))}


def test_a_cancelled_bootstrap_asks_no_bucket_and_a_refused_one_leaves_the_running_one_be() -> None:
    net = IdealNetwork(2000)
    cfg = KademliaConfig(refresh_interval=600.0, refresh_check_interval=1e9, max_queries=2)

    def refreshes(d: Driver) -> set[bytes]:
        return {r.message.key for r in d.sent if r.message.key != d.core.local_peer}

    d = Driver(core_knowing(net.peers[:3], config=cfg), net)
    d.feed(Bootstrap("join"))
    d.feed(CancelQuery("join"))  # the node stopping: its caller gave up
    d.run(30.0)
    assert "join" in d.finished and not refreshes(d)
    # Two queries at most: a second join is refused while one runs, and the
    # first still asks the buckets when it ends (as many as there is room for).
    d = Driver(core_knowing(net.peers[:3], config=cfg), net)
    d.feed(Bootstrap("first"))
    d.feed(StartLookup("other", pid("x")))
    acts = d.feed(Bootstrap("second"))
    assert any(isinstance(a, QueryFinished) and a.query_id == "second" for a in acts)
    d.run(30.0)
    assert refreshes(d) - {pid("x")}


def test_refresh_config_is_checked() -> None:
    for bad in ({"refresh_jitter": -0.1}, {"refresh_jitter": 1.0}, {"max_refreshes_per_check": 0}):
        with pytest.raises(ValueError, match="refresh_jitter|max_refreshes_per_check"):
            KademliaConfig(**bad)  # type: ignore[arg-type]


def test_bootstrap_runs_a_self_lookup() -> None:
    net = IdealNetwork(50)
    d = Driver(core_knowing(net.peers[:5], config=QUIET), net)
    d.feed(Bootstrap())
    assert d.sent[0].message.key == d.core.local_peer
    d.run(5.0)
    assert len(d.core.table) >= 20  # it learned the network from the answers


def test_bootstrap_refreshes_every_bucket_once_its_self_lookup_ends() -> None:
    """The self-lookup learns only our neighbourhood; the join then looks up a
    key in every bucket down to one past the deepest filled (periodic refresh
    is off here, so these lookups can only come from the join)."""
    net = IdealNetwork(2000)
    cfg = KademliaConfig(refresh_interval=600.0, refresh_check_interval=1e9)  # no periodic check
    d = Driver(core_knowing(net.peers[:3], config=cfg), net)
    d.feed(Bootstrap())
    d.run(30.0)
    table = d.core.table
    buckets_asked = {table.bucket_of(kad_key(r.message.key)) for r in d.sent
                     if r.message.type is MessageType.FIND_NODE and r.message.key != d.core.local_peer}
    deepest = max(table.bucket_of(kad_key(p.peer)) for p in table.peers())
    assert deepest >= 5  # 2,000 peers: the self-lookup's answers reach deep buckets
    assert set(range(deepest + 2)) <= buckets_asked
    # and a bucket refreshed at join is not stale for a refresh interval,
    # less its jitter (150 s), less the 30 s since
    assert table.stale_buckets(d.now, 600.0 - 150.0 - 30.0, 15) == []
