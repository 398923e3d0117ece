"""Issue #10 finding 5: one hostile peer must not be able to poison membership.

Core rules on virtual time (admission of strangers, candidate bounds,
incarnation rules, signed self-updates, awareness untouched by candidates),
plus the adapter's pure helpers (persistence, rate limit, log throttle).
Signature tests use real Ed25519 identities; the rest use the simulator's
stand-in signatures (swimhelpers.make_core).
"""

from __future__ import annotations

import os
import random
import stat

import pytest

from agentp2p.network.identity import Identity
from agentp2p.pb import swim_pb2
from agentp2p.protocol.swim import (
    Ack,
    ConnectionOpened,
    MemberUpdate,
    Message,
    Ping,
    Received,
    RosterBase,
    State,
    SwimConfig,
    SwimCore,
    WireError,
    decode,
    encode,
)
from agentp2p.protocol.swim.admission import CandidateSet
from agentp2p.protocol.swim.crypto import ed25519_signer, ed25519_verify
from agentp2p.protocol.swim.persist import (
    incarnation_path,
    load_incarnation,
    restart_incarnation,
    save_incarnation,
)
from agentp2p.protocol.swim.ratelimit import PeerRateLimiter
from agentp2p.protocol.swim.signature import signed_update, signing_bytes
from agentp2p.simulation.swim import sim_signer
from tests.protocol.swim.swimhelpers import deliver, events, make_core, next_tick, pid, run_until, sends

ADDR = b"\x04\x7f\x00\x00\x01\x06\x0f\xa1"


def fakes(n: int, tag: str = "fake") -> list[bytes]:
    return [pid(f"{tag}{i:04d}") for i in range(n)]


def flood(core: SwimCore, t: float, liar: bytes, peers: list[bytes]) -> None:
    """``liar`` sends frames of 32 alive updates each about ``peers``."""
    for i in range(0, len(peers), 32):
        ups = tuple(MemberUpdate(p, State.ALIVE, 0, (ADDR,)) for p in peers[i : i + 32])
        deliver(core, t, liar, Message(i, 0, Ping(core.local_id), ups))


def acking(core: SwimCore, until: float, responders: set[bytes]) -> list:  # type: ignore[type-arg]
    """Run ``core`` until ``until``; pings to ``responders`` are acked at once."""
    out = []
    while (dl := core.next_deadline()) is not None and dl <= until:
        acts = run_until(core, dl)
        out += acts
        for p in sends(acts, Ping):
            if p.to in responders:
                out += deliver(core, dl, p.to, Message(p.message.seq, 0, Ack()))
    return out


# ------------------------------------------------------------ admission


def test_gossiped_strangers_are_candidates_not_members() -> None:
    a = make_core("a", ["b", "c", "liar"])
    flood(a, 0.1, pid("liar"), fakes(500))
    assert {m.peer_id for m in a.members()} == {pid("b"), pid("c"), pid("liar")}
    assert a.alive_count() == 3
    # one gossiper holds at most its share of the candidate set
    assert a.candidates() == a.config.max_candidates_per_gossiper
    assert a.admission_stats()["refused"] == 500 - a.config.max_candidates_per_gossiper
    # candidates are not gossiped onward
    acts = acking(a, 20.0, {pid("b"), pid("c"), pid("liar")})
    relayed = {u.peer_id for s in sends(acts) for u in s.message.updates}
    assert relayed.isdisjoint(fakes(500))


def test_candidate_that_answers_our_ping_is_admitted_and_then_gossiped() -> None:
    a = make_core("a", ["b"])
    x = pid("x")
    deliver(a, 0.1, pid("b"), Message(1, 0, Ack(), (MemberUpdate(x, State.ALIVE, 3, (ADDR,)),)))
    assert a.member(x) is None and a.is_candidate(x)
    t, acts = next_tick(a)
    (ping,) = sends(acts, Ping, to=x)
    assert ping.addrs == (ADDR,)
    acts = deliver(a, t + 0.01, x, Message(ping.message.seq, 3, Ack()))
    assert events(acts) == [("joined", x)]
    assert a.member(x).addrs == (ADDR,) and not a.is_candidate(x)
    _, acts = next_tick(a)
    assert any(u.peer_id == x and u.state is State.ALIVE for s in sends(acts) for u in s.message.updates)


def test_peer_talking_to_us_directly_is_admitted_at_once() -> None:
    a = make_core("a", ["b"])
    acts = deliver(a, 0.1, pid("z"), Message(1, 4, Ping(a.local_id)))
    assert ("joined", pid("z")) in events(acts) and a.member(pid("z")).incarnation == 4


def test_candidate_set_is_bounded_random_eviction_and_per_gossiper_cap() -> None:
    cfg = SwimConfig(max_candidates=64, max_candidates_per_gossiper=8)
    gossipers = [f"g{i}" for i in range(20)]
    a = make_core("a", gossipers, config=cfg)
    for g in gossipers:
        flood(a, 0.1, pid(g), fakes(30, tag=g))
    st = a.admission_stats()
    assert a.candidates() == 64
    # every gossiper got at most its 8 slots at a time; a full set made room at random
    assert st["evicted"] >= 20 * 8 - 64
    assert st["refused"] + st["evicted"] + 64 == 20 * 30
    # no member was created by any of it
    assert a.alive_count() == 20


def test_candidate_set_unit_bounds() -> None:
    c = CandidateSet(random.Random(3), max_size=4, per_gossiper=2, attempts=2, backoff=10.0)
    assert c.propose(b"p1", (), b"g1", 0.0) and c.propose(b"p2", (), b"g1", 0.0)
    assert not c.propose(b"p3", (), b"g1", 0.0)  # g1 is at its cap
    for i in range(3, 9):
        assert c.propose(b"p%d" % i, (), b"g%d" % i, 0.0)
    assert len(c) == 4 and c.evicted == 4
    # each candidate is pinged `attempts` times, then backs off
    picked = [p for _ in range(8) for p, _ in c.pick(4, 1.0)]
    assert len(c) == 0 and c.expired == 4
    assert all(picked.count(p) == 2 for p in set(picked))
    assert not c.propose(picked[0], (), b"gx", 5.0)  # backing off
    assert c.propose(picked[0], (), b"gx", 11.5)  # backoff over


def test_a_backing_off_candidate_is_tried_again_once_enough_distinct_gossipers_vouch_for_it() -> None:
    """A newcomer whose answers were lost (its connections refused in a join
    storm) backs off at each member that pinged it, and without this the
    gossip about it was over before the back-off ended: the member never
    heard of it again (simulated, 1,000 nodes). One liar repeating itself
    still cannot end a back-off."""
    c = CandidateSet(random.Random(1), max_size=8, per_gossiper=4, attempts=1, backoff=60.0, vouchers=3)
    assert c.propose(b"x", (b"/a",), b"g1", 0.0)
    assert c.pick(1, 1.0) == [(b"x", (b"/a",))] and len(c) == 0  # no answer: backs off
    for _ in range(5):
        assert not c.propose(b"x", (), b"g1", 2.0)  # the same gossiper, again and again
    assert not c.propose(b"x", (), b"g2", 3.0)  # two distinct
    assert c.knows(b"x", 3.0) and c.vouched == 0
    assert c.propose(b"x", (b"/b",), b"g3", 4.0)  # the third: pinged again at once
    assert b"x" in c and c.vouched == 1 and c.addrs(b"x") == (b"/b",)
    # Backing off again, it takes three new vouchers (the old ones were spent).
    assert c.pick(1, 5.0) == [(b"x", (b"/b",))]
    assert not c.propose(b"x", (), b"g3", 6.0) and not c.propose(b"x", (), b"g2", 6.0)
    assert c.propose(b"x", (), b"g4", 6.0) and c.vouched == 2
    # Off (0): only the back-off's end lets it in.
    off = CandidateSet(random.Random(1), max_size=8, per_gossiper=4, attempts=1, backoff=60.0)
    off.propose(b"x", (), b"g1", 0.0)
    off.pick(1, 1.0)
    assert not any(off.propose(b"x", (), b"g%d" % i, 2.0) for i in range(10))
    assert off.propose(b"x", (), b"g1", 61.5)


def test_a_gossiper_at_its_cap_vouches_for_nothing() -> None:
    """Else a vouch could end a back-off without the peer being proposed,
    and then any single identity could bring it back."""
    c = CandidateSet(random.Random(1), max_size=8, per_gossiper=1, attempts=1, backoff=60.0, vouchers=3)
    c.propose(b"x", (), b"g1", 0.0)
    c.pick(1, 1.0)
    assert c.propose(b"y", (), b"g3", 1.0)  # g3 is at its cap now
    assert not c.propose(b"x", (), b"g1", 2.0) and not c.propose(b"x", (), b"g2", 2.0)
    assert not c.propose(b"x", (), b"g3", 2.0)  # at its cap: no third voucher
    assert c.vouched == 0 and c.knows(b"x", 2.0)
    assert c.propose(b"x", (), b"g4", 2.0) and c.vouched == 1  # a third that may propose


def test_vouchers_are_forgotten_with_the_back_off() -> None:
    c = CandidateSet(random.Random(1), max_size=1, per_gossiper=4, attempts=1, backoff=60.0, vouchers=3)
    c.propose(b"x", (), b"g1", 0.0)
    c.pick(1, 1.0)
    c.propose(b"x", (), b"g1", 2.0)
    c.propose(b"x", (), b"g2", 2.0)
    assert c._vouched == {b"x": {b"g1", b"g2"}}
    c.forgive()
    assert c._vouched == {}
    c.propose(b"x", (), b"g1", 3.0)
    c.pick(1, 4.0)
    c.propose(b"x", (), b"g2", 5.0)
    c.admitted(b"x")  # it answered the last ping after all
    assert c._vouched == {} and not c.knows(b"x", 5.0)
    # The back-off memory is bounded (4 x max_size) and its vouchers go with it.
    for i in range(10):
        p = b"p%d" % i
        c.propose(p, (), b"g1", 6.0)
        c.pick(1, 6.0)
        c.propose(p, (), b"g2", 6.0)
    assert len(c._failed) <= 4 and set(c._vouched) <= set(c._failed)


@pytest.mark.parametrize("vouchers", [3, 0])
def test_the_core_retries_a_backed_off_stranger_once_three_members_vouch(vouchers: int) -> None:
    a = make_core("a", ["b", "c", "d"], config=SwimConfig(gossip_interval=0, candidate_vouchers=vouchers))
    x = pid("x")
    t = _stranger_backs_off(a, 0.1, x)  # b proposed it twice, the second time while it backed off
    deliver(a, t, pid("c"), Message(3, 0, Ack(), (MemberUpdate(x, State.ALIVE, 0, (ADDR,)),)))
    assert not a.is_candidate(x)  # two vouchers
    deliver(a, t, pid("d"), Message(4, 0, Ack(), (MemberUpdate(x, State.ALIVE, 0, (ADDR,)),)))
    assert a.is_candidate(x) is bool(vouchers)
    assert a.admission_stats()["vouched"] == (1 if vouchers else 0)


def test_one_voucher_is_refused_as_it_would_end_every_back_off() -> None:
    with pytest.raises(ValueError, match="candidate_vouchers"):
        SwimConfig(candidate_vouchers=1)
    SwimConfig(candidate_vouchers=0)
    SwimConfig(candidate_vouchers=2)


def test_a_candidate_that_answers_its_last_ping_keeps_no_back_off() -> None:
    c = CandidateSet(random.Random(1), max_size=8, per_gossiper=4, attempts=1, backoff=60.0, vouchers=3)
    c.propose(b"x", (), b"g1", 0.0)
    c.pick(1, 1.0)  # its last attempt: it backs off while the ping is out
    assert c.knows(b"x", 1.5)
    c.admitted(b"x")  # ... and it answers
    assert not c.knows(b"x", 1.5)


def test_silent_candidates_never_raise_awareness_or_cause_suspicion() -> None:
    a = make_core("a", ["b", "c", "d", "liar"])
    members = {pid("b"), pid("c"), pid("d"), pid("liar")}
    t = 0.0
    all_fakes: list[bytes] = []
    acts = []
    for round_ in range(30):  # the liar keeps proposing fresh fakes; members ack
        batch = fakes(32, tag=f"r{round_}-")
        all_fakes += batch
        flood(a, t, pid("liar"), batch)
        t += 1.0
        acts += acking(a, t, members)
    pinged = {s.to for s in sends(acts, Ping)} & set(all_fakes)
    assert pinged, "candidates must be pinged (else the test proves nothing)"
    assert a.awareness.score == 0
    assert not [e for e in events(acts) if e[0] in ("suspect", "failed")]
    assert a.stats.suspected == 0
    gossip = [u for s in sends(acts) for u in s.message.updates if u.peer_id in set(all_fakes)]
    assert gossip == []
    assert all(a.member(f) is None for f in all_fakes)


# ------------------------------------------------------------ incarnation rules


def test_accusation_above_the_known_incarnation_is_ignored() -> None:
    a = make_core("a", ["b", "liar"])
    for state in (State.SUSPECT, State.DEAD):
        acts = deliver(a, 0.1, pid("liar"), Message(1, 0, Ack(), (MemberUpdate(pid("b"), state, 1000),)))
        assert events(acts) == []
    assert a.member(pid("b")).state is State.ALIVE and a.member(pid("b")).incarnation == 0
    assert a.stats.ahead == 2


def test_repeated_lies_about_a_live_member_never_make_it_dead() -> None:
    cfg = SwimConfig()
    a = make_core("a", ["b", "c", "liar"], config=cfg)
    b = make_core("b", ["a", "c", "liar"], config=cfg)
    t = 0.0
    states = []
    for _ in range(200):  # 20 s: the liar lies 10x/s, b talks to a every 0.5 s
        t += 0.1
        inc = a.member(pid("b")).incarnation
        lies = (
            MemberUpdate(pid("b"), State.DEAD, inc + 1000),
            MemberUpdate(pid("b"), State.DEAD, inc),
            MemberUpdate(pid("b"), State.LEFT, inc),
            MemberUpdate(pid("b"), State.ALIVE, inc + 7),
        )
        deliver(a, t, pid("liar"), Message(1, 0, Ack(), lies))
        if round(t * 10) % 5 == 0:
            for s in sends(deliver(a, t, pid("b"), Message(2, b.incarnation, Ping(pid("a"))))):
                if s.to == pid("b"):
                    for r in sends(b.handle(t, Received(pid("a"), s.message))):
                        if r.to == pid("a"):
                            deliver(a, t, pid("b"), r.message)
        run_until(b, t)
        states.append(a.member(pid("b")).state)
    assert State.DEAD not in states and State.LEFT not in states
    assert states[-1] in (State.ALIVE, State.SUSPECT)
    assert a.stats.unsigned > 0 and a.stats.ahead > 0


def test_unsigned_rumour_cannot_raise_an_incarnation_but_the_members_signature_can() -> None:
    xs = Identity.from_seed(b"x" * 32)
    a = real_core(Identity.from_seed(b"a" * 32), [xs, Identity.from_seed(b"b" * 32)])
    x, b = xs.peer_id.to_bytes(), Identity.from_seed(b"b" * 32).peer_id.to_bytes()
    deliver(a, 0.1, b, Message(1, 0, Ack(), (MemberUpdate(x, State.ALIVE, 5, (ADDR,)),)))
    assert a.member(x).incarnation == 0 and a.stats.unsigned == 1
    # x's signed refutation, relayed by b, is believed — even a big jump — and relayed as signed
    signed = signed_update(ed25519_signer(xs.private_key), x, State.ALIVE, 5000, (ADDR,))
    deliver(a, 0.2, b, Message(2, 0, Ack(), (signed,)))
    assert a.member(x).incarnation == 5000
    t, acts = next_tick(a)
    relayed = [u for s in sends(acts) for u in s.message.updates if u.peer_id == x]
    assert relayed and relayed[0].signature == signed.signature


def test_unsigned_claim_of_the_member_itself_may_only_jump_so_far() -> None:
    a = make_core("a", ["x"])
    jump = a.config.max_incarnation_jump
    deliver(a, 0.1, pid("x"), Message(1, jump + 1, Ping(a.local_id)))
    assert a.member(pid("x")).incarnation == 0 and a.stats.implausible == 1
    deliver(a, 0.2, pid("x"), Message(2, jump, Ping(a.local_id)))
    assert a.member(pid("x")).incarnation == jump


def test_third_party_dead_only_starts_our_suspicion() -> None:
    cfg = SwimConfig()
    a = make_core("a", ["b", "x", "liar"], config=cfg)
    acts = deliver(a, 0.1, pid("liar"), Message(1, 0, Ack(), (MemberUpdate(pid("x"), State.DEAD, 0),)))
    assert events(acts) == [("suspect", pid("x"))]
    # x refutes before our timer (a lone accuser: the Lifeguard maximum) runs out
    acts = acking(a, 0.1 + cfg.suspicion_max(4) - 0.5, {pid("b"), pid("x"), pid("liar")})
    assert ("failed", pid("x")) not in events(acts)
    acts = deliver(a, 0.1 + cfg.suspicion_max(4) - 0.4, pid("x"), Message(2, 1, Ping(a.local_id)))
    assert ("recovered", pid("x")) in events(acts)


def test_invented_origins_do_not_shorten_a_suspicion() -> None:
    cfg = SwimConfig()
    a = make_core("a", ["b", "x", "liar"], config=cfg)
    ups = tuple(MemberUpdate(pid("x"), State.SUSPECT, 0, (), pid(f"ghost{i}")) for i in range(5))
    deliver(a, 0.0, pid("liar"), Message(1, 0, Ack(), ups))
    # all five "origins" are the one liar: no confirmation, the full maximum applies
    acts = acking(a, cfg.suspicion_max(4) - 0.1, {pid("b"), pid("x"), pid("liar")})
    assert ("failed", pid("x")) not in events(acts)
    assert ("failed", pid("x")) in events(acking(a, cfg.suspicion_max(4) + 0.1, {pid("b"), pid("x"), pid("liar")}))


def test_refutations_raise_awareness_at_most_once_per_period() -> None:
    x = make_core("x", ["a", "liar"])
    for i in range(50):
        lie = MemberUpdate(pid("x"), State.SUSPECT, x.incarnation)
        deliver(x, 0.001 * i, pid("liar"), Message(i, 0, Ack(), (lie,)))
    assert x.stats.refutations == 50
    assert x.awareness.score == 1


# ------------------------------------------------------------ signatures


def real_core(me: Identity, others: list[Identity], config: SwimConfig | None = None) -> SwimCore:
    base = RosterBase((o.peer_id.to_bytes(), (ADDR,)) for o in others)
    return SwimCore(me.peer_id.to_bytes(), (ADDR,), rng=random.Random(1), now=0.0, config=config, base=base,
                    sign=ed25519_signer(me.private_key), verify=ed25519_verify)


def test_left_must_be_the_leavers_own_word() -> None:
    ids = {n: Identity.from_seed(n.encode() * 32) for n in "abxl"}
    a = real_core(ids["a"], [ids["b"], ids["x"], ids["l"]])
    x, liar = ids["x"].peer_id.to_bytes(), ids["l"].peer_id.to_bytes()
    forgeries = [
        MemberUpdate(x, State.LEFT, 0),  # unsigned
        MemberUpdate(x, State.LEFT, 0, (), b"", os.urandom(64)),  # garbage signature
        signed_update(ed25519_signer(ids["l"].private_key), x, State.LEFT, 0),  # signed by the liar
        # x's genuine signature, but over something else (its alive)
        MemberUpdate(x, State.LEFT, 0, (), b"",
                     signed_update(ed25519_signer(ids["x"].private_key), x, State.ALIVE, 0).signature),
    ]
    for i, f in enumerate(forgeries):
        assert events(deliver(a, 0.1 * (i + 1), liar, Message(i, 0, Ack(), (f,)))) == []
    assert a.member(x).state is State.ALIVE
    assert a.stats.unsigned == 4 and a.stats.forged == 3
    # x's own signed "left", relayed by b, is believed
    real = signed_update(ed25519_signer(ids["x"].private_key), x, State.LEFT, 0)
    acts = deliver(a, 1.0, ids["b"].peer_id.to_bytes(), Message(9, 0, Ack(), (real,)))
    assert ("left", x) in events(acts)


def test_a_refutation_carries_the_members_signature_and_spreads() -> None:
    ids = {n: Identity.from_seed(n.encode() * 32) for n in "abx"}
    a = real_core(ids["a"], [ids["b"], ids["x"]])
    xc = real_core(ids["x"], [ids["a"], ids["b"]])
    a_id, b_id, x_id = (ids[n].peer_id.to_bytes() for n in "abx")
    deliver(xc, 0.1, b_id, Message(1, 0, Ack(), (MemberUpdate(x_id, State.SUSPECT, 0, (), b_id),)))
    assert xc.incarnation == 1
    _, acts = next_tick(xc)
    refutation = next(u for s in sends(acts) for u in s.message.updates if u.peer_id == x_id)
    assert refutation.state is State.ALIVE and refutation.incarnation == 1 and len(refutation.signature) == 64
    # a hears of the suspicion, then the refutation relayed by b (not from x)
    deliver(a, 0.2, b_id, Message(2, 0, Ack(), (MemberUpdate(x_id, State.SUSPECT, 0, (), b_id),)))
    acts = deliver(a, 0.3, b_id, Message(3, 0, Ack(), (refutation,)))
    assert ("recovered", x_id) in events(acts)


def test_forged_refutation_is_rejected() -> None:
    ids = {n: Identity.from_seed(n.encode() * 32) for n in "abx"}
    a = real_core(ids["a"], [ids["b"], ids["x"]])
    b_id, x_id = ids["b"].peer_id.to_bytes(), ids["x"].peer_id.to_bytes()
    deliver(a, 0.1, b_id, Message(1, 0, Ack(), (MemberUpdate(x_id, State.SUSPECT, 0, (), b_id),)))
    genuine = signed_update(ed25519_signer(ids["x"].private_key), x_id, State.ALIVE, 1, (ADDR,))
    tampered = MemberUpdate(x_id, State.ALIVE, 1, (b"\x04\x0a\x00\x00\x01\x06\x0f\xa1",), b"", genuine.signature)
    assert events(deliver(a, 0.2, b_id, Message(2, 0, Ack(), (tampered,)))) == []
    assert a.member(x_id).state is State.SUSPECT and a.stats.forged == 1


def test_each_signed_update_is_verified_once_and_per_frame_budget() -> None:
    calls = []

    def verify(peer: bytes, data: bytes, sig: bytes) -> bool:
        calls.append(peer)
        return False

    cfg = SwimConfig(max_verifications_per_frame=3)
    others = [f"m{i}" for i in range(10)]
    base = RosterBase((pid(o), (ADDR,)) for o in others)
    a = SwimCore(pid("a"), rng=random.Random(1), now=0.0, config=cfg, base=base, verify=verify)
    bogus = tuple(MemberUpdate(pid(o), State.ALIVE, 1, (), b"", bytes(64)) for o in others)
    deliver(a, 0.1, pid("m0"), Message(1, 0, Ack(), bogus[1:]))
    assert len(calls) == 3 and a.stats.unverified == 6
    for i in range(20):  # the same forgeries again: answered from the cache
        deliver(a, 0.2, pid("m0"), Message(2 + i, 0, Ack(), bogus[1:4]))
    assert len(calls) == 3


def test_signing_bytes_are_domain_separated_and_unambiguous() -> None:
    base = signing_bytes(b"peer", 1, State.ALIVE, (b"ab", b"c"))
    assert base.startswith(b"agentp2p/swim/1.0.0 self-update\x00")
    assert base != signing_bytes(b"peer", 1, State.ALIVE, (b"a", b"bc"))
    assert base != signing_bytes(b"peer", 1, State.LEFT, (b"ab", b"c"))
    assert base != signing_bytes(b"peer", 2, State.ALIVE, (b"ab", b"c"))


def test_wire_carries_signatures_and_rejects_bad_lengths() -> None:
    u = MemberUpdate(b"p", State.ALIVE, 1, (ADDR,), b"", bytes(range(64)))
    assert decode(encode(Message(1, 0, Ack(), (u,)))).updates == (u,)
    pb = swim_pb2.SwimMessage(seq=1)
    pb.ack.SetInParent()
    pb.updates.add(peer_id=b"p", state=1, signature=b"x" * 63)
    with pytest.raises(WireError):
        decode(pb.SerializeToString())


# ------------------------------------------------------------ adapter helpers


def test_incarnation_file_round_trip_mode_and_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = incarnation_path(tmp_path / "identity.key")
    assert path.name == "identity.key.swim-incarnation"
    assert load_incarnation(path) is None and restart_incarnation(None) == 0
    save_incarnation(path, 41)
    assert load_incarnation(path) == 41 and restart_incarnation(41) == 42
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    save_incarnation(path, 42)  # replaced, no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    path.write_text("garbage")
    assert load_incarnation(path) is None


def test_rate_limiter_is_a_token_bucket_per_peer() -> None:
    lim = PeerRateLimiter(rate=10.0, burst=5)
    assert sum(lim.allow(b"p", 0.0) for _ in range(100)) == 5
    assert lim.allow(b"q", 0.0)  # other peers are not affected
    assert sum(lim.allow(b"p", 1.0) for _ in range(100)) == 5  # refilled, capped at the burst
    assert sum(lim.allow(b"p", 1.25) for _ in range(100)) == 2


# ------------------------------------------------------------ checking rumours we cannot believe


def test_unbelievable_newer_alive_makes_us_ask_the_member_itself() -> None:
    a = make_core("a", ["b", "x"])
    x = pid("x")
    a.handle(0.05, ConnectionOpened(x))  # a check goes only where we hold a connection
    deliver(a, 0.1, pid("b"), Message(1, 0, Ack(), (MemberUpdate(x, State.SUSPECT, 0, (), pid("b")),)))
    # b learned x's refutation first-hand and relays it unsigned: not believed, but checked
    acts = deliver(a, 0.2, pid("b"), Message(2, 0, Ack(), (MemberUpdate(x, State.ALIVE, 1),)))
    (ping,) = sends(acts, Ping, to=x)
    assert a.member(x).state is State.SUSPECT and a.stats.checks == 1
    # Advisory: only over a connection already open (a check never dials),
    # labelled so that its dials would be counted apart.
    assert (ping.dial, ping.why) == (False, "check")
    acts = deliver(a, 0.25, x, Message(ping.message.seq, 1, Ack()))
    assert ("recovered", x) in events(acts)


def test_checks_are_bounded_per_member_and_per_period() -> None:
    others = [f"m{i:02d}" for i in range(20)]
    a = make_core("a", [*others, "liar"])
    for o in others:
        a.handle(0.001, ConnectionOpened(pid(o)))
    pinged = []
    for _ in range(5):
        ups = tuple(MemberUpdate(pid(o), State.DEAD, 50) for o in others)
        pinged += sends(deliver(a, 0.01, pid("liar"), Message(1, 0, Ack(), ups[:16])), Ping)
        pinged += sends(deliver(a, 0.01, pid("liar"), Message(2, 0, Ack(), ups[16:])), Ping)
    assert len(pinged) == a.config.max_checks_per_period
    assert len({p.to for p in pinged}) == len(pinged)
    assert all(a.member(pid(o)).state is State.ALIVE for o in others)


def test_a_check_of_a_member_we_hold_no_connection_to_is_not_sent_and_spends_no_budget() -> None:
    """After a heal, most members a rumour accuses are across the old cut,
    with no connection yet: their checks would be dropped (a check never
    dials), so they must not use up the period's budget for the members we
    can ask."""
    far = [f"f{i:02d}" for i in range(12)]
    near = ["n0", "n1"]
    a = make_core("a", [*far, *near, "liar"])
    for o in near:
        a.handle(0.001, ConnectionOpened(pid(o)))
    ups = tuple(MemberUpdate(pid(o), State.DEAD, 50) for o in [*far, *near])
    pinged = sends(deliver(a, 0.01, pid("liar"), Message(1, 0, Ack(), ups)), Ping)
    assert {p.to for p in pinged} == {pid(o) for o in near}
    assert (a.stats.checks, a.stats.checks_unconnected) == (2, 12)
    # A core never told of connections (SWIM's own simulator delivers every
    # frame) checks as before: within the budget, whoever is accused.
    b = make_core("a", [*far, *near, "liar"])
    pinged = sends(deliver(b, 0.01, pid("liar"), Message(1, 0, Ack(), ups)), Ping)
    assert len(pinged) == b.config.max_checks_per_period and b.stats.checks_unconnected == 0


def test_after_refuting_every_frame_carries_our_signed_alive_for_a_while() -> None:
    x = make_core("x", ["a", "b", "c"])
    deliver(x, 0.1, pid("a"), Message(1, 0, Ack(), (MemberUpdate(pid("x"), State.SUSPECT, 0, (), pid("a")),)))
    assert x.incarnation == 1
    carried, t = [], 0.1
    for _ in range(x.config.retransmit_limit(4) + 6):
        t, acts = next_tick(x)
        for s in sends(acts):
            carried.append(any(u.peer_id == pid("x") and u.incarnation == 1 and u.signature
                               for u in s.message.updates))
            if isinstance(s.message.body, Ping):
                deliver(x, t, s.to, Message(s.message.seq, 0, Ack()))
    # whoever hears incarnation 1 first-hand in that window can relay it believably
    n = x.config.retransmit_limit(4)
    assert all(carried[:n]) and not all(carried)


def _stranger_backs_off(a: SwimCore, t: float, x: bytes) -> float:
    """b vouches for stranger ``x``, which never answers our pings (beyond a
    partition): ``x`` leaves the candidate set and a new proposal is refused."""
    deliver(a, t, pid("b"), Message(1, 0, Ack(), (MemberUpdate(x, State.ALIVE, 0, (ADDR,)),)))
    assert a.is_candidate(x)
    while a.is_candidate(x):
        t, _ = next_tick(a)
    deliver(a, t, pid("b"), Message(2, 0, Ack(), (MemberUpdate(x, State.ALIVE, 0, (ADDR,)),)))
    assert not a.is_candidate(x), "a stranger that never answered is held off"
    return t


def test_a_member_back_from_the_dead_lifts_candidate_backoffs_at_most_every_sixth_of_the_backoff() -> None:
    # The whole-node simulation (500 nodes) kept views apart 30 s after a partition
    # healed: strangers across it had failed our candidate pings, and stayed held off.
    a = make_core("a", ["b", "c", "d"], config=SwimConfig(gossip_interval=0, candidate_backoff=60.0))
    d = pid("d")
    deliver(a, 0.05, d, Message(1, 0, Ack(), (MemberUpdate(d, State.LEFT, 0),)))
    assert a.member(d).state is State.LEFT
    t = _stranger_backs_off(a, 0.1, pid("x"))
    # d is back, in its own word: a partition healed (or d restarted); x may answer now
    deliver(a, t + 0.1, d, Message(3, 1, Ack(), (MemberUpdate(d, State.ALIVE, 1),)))
    assert a.member(d).state is State.ALIVE
    assert a.admission_stats()["forgiven"] == 1
    deliver(a, t + 0.2, pid("b"), Message(4, 0, Ack(), (MemberUpdate(pid("x"), State.ALIVE, 0, (ADDR,)),)))
    assert a.is_candidate(pid("x"))
    # ... but not again within a sixth of the back-off (10 s), however often members come back
    t = _stranger_backs_off(a, t + 0.3, pid("y"))
    assert t < 0.1 + 10
    deliver(a, t + 0.1, d, Message(5, 1, Ack(), (MemberUpdate(d, State.LEFT, 1),)))
    deliver(a, t + 0.2, d, Message(6, 2, Ack(), (MemberUpdate(d, State.ALIVE, 2),)))
    assert a.member(d).state is State.ALIVE
    deliver(a, t + 0.3, pid("b"), Message(7, 0, Ack(), (MemberUpdate(pid("y"), State.ALIVE, 0, (ADDR,)),)))
    assert not a.is_candidate(pid("y")), "back-offs lifted twice within 10 s"
    assert a.admission_stats()["forgiven"] == 1
    # Someone else relaying d's signed word is not d coming back: nothing is lifted.
    t = 20.0
    deliver(a, t, d, Message(8, 2, Ack(), (MemberUpdate(d, State.LEFT, 2),)))
    relayed = signed_update(sim_signer(d), d, State.ALIVE, 3)
    deliver(a, t + 0.1, pid("b"), Message(9, 0, Ack(), (relayed,)))
    assert a.member(d).state is State.ALIVE and a.admission_stats()["forgiven"] == 1
    # Once the 10 s have passed, d's own comeback lifts them again (y's among them).
    deliver(a, t + 0.2, d, Message(10, 3, Ack(), (MemberUpdate(d, State.LEFT, 3),)))
    deliver(a, t + 0.3, d, Message(11, 4, Ack(), (MemberUpdate(d, State.ALIVE, 4),)))
    assert a.admission_stats()["forgiven"] > 1
    deliver(a, t + 0.4, pid("b"), Message(12, 0, Ack(), (MemberUpdate(pid("y"), State.ALIVE, 0, (ADDR,)),)))
    assert a.is_candidate(pid("y"))
