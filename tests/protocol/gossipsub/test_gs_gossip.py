"""IHAVE/IWANT: emission to non-mesh peers, per-heartbeat caps on what we take,
retransmission caps on what we give, IWANT promises (P7), mcache windows."""

from __future__ import annotations

import random

from agentp2p.protocol.gossipsub.core import GossipSubCore
from agentp2p.protocol.gossipsub.events import (
    PeerConnected,
    PeerDisconnected,
    Publish,
    Published,
    RpcReceived,
    SendRpc,
    SignatureChecked,
    Subscribe,
    Tick,
    ValidationResult,
    Verdict,
    VerifySignature,
)
from agentp2p.protocol.gossipsub.codec import seqno_bytes, signing_payload
from agentp2p.protocol.gossipsub.params import GossipSubParams
from agentp2p.protocol.gossipsub.rpc import Control, IDontWant, IHave, IWant, Message, Rpc, SubOpts
from agentp2p.protocol.gossipsub.scorer import Thresholds
from agentp2p.protocol.gossipsub.simnet import ScriptedScorer, sim_sign

ME = b"me"
T = "t"


def make(params: GossipSubParams | None = None, **kw: object) -> GossipSubCore:
    core = GossipSubCore(ME, rng=random.Random(1), now=0.0, params=params, sign=sim_sign(ME), **kw)  # type: ignore[arg-type]
    core.handle(0.0, Subscribe(T))
    return core


def join(core: GossipSubCore, peer: bytes, now: float = 0.0) -> None:
    core.handle(now, PeerConnected(peer, "/meshsub/1.2.0", outbound=False))
    core.handle(now, RpcReceived(peer, Rpc(subscriptions=(SubOpts(True, T),))))


def ihave(core: GossipSubCore, peer: bytes, ids: list[bytes], now: float = 0.0, topic: str = T) -> list[bytes]:
    out = core.handle(now, RpcReceived(peer, Rpc(control=Control(ihave=(IHave(topic, tuple(ids)),)))))
    return [i for a in out if isinstance(a, SendRpc) and a.peer == peer for w in a.rpc.control.iwant for i in w.ids]


def iwant(core: GossipSubCore, peer: bytes, ids: list[bytes], now: float = 0.0) -> list[Message]:
    out = core.handle(now, RpcReceived(peer, Rpc(control=Control(iwant=(IWant(tuple(ids)),)))))
    return [m for a in out if isinstance(a, SendRpc) and a.peer == peer for m in a.rpc.publish]


def signed(author: bytes, n: int, data: bytes = b"x") -> Message:
    m = Message(T, data, author, seqno_bytes(n))
    return Message(T, data, author, seqno_bytes(n), sim_sign(author)(signing_payload(m)))


def heartbeat(core: GossipSubCore) -> list:
    return core.handle(core.next_deadline(), Tick())


def test_ihave_asks_for_unseen_ids_of_our_topics_only() -> None:
    core = make()
    join(core, b"g")
    pub = core.handle(0.0, Publish(T, b"mine"))
    mine = next(a.msg_id for a in pub if isinstance(a, Published))
    assert sorted(ihave(core, b"g", [b"a", b"b", mine])) == [b"a", b"b"]
    assert ihave(core, b"g", [b"c"], topic="not-ours") == []


def test_ihave_rpcs_per_heartbeat_capped() -> None:
    core = make(GossipSubParams(max_ihave_messages=3))
    join(core, b"g")
    for i in range(3):
        assert ihave(core, b"g", [b"id%d" % i]) == [b"id%d" % i]
    assert ihave(core, b"g", [b"late"]) == []
    assert core.stats.ihave_ignored == 1
    heartbeat(core)
    assert ihave(core, b"g", [b"late"], now=core.next_deadline() - 0.5) == [b"late"]


def test_ids_asked_per_heartbeat_capped() -> None:
    core = make(GossipSubParams(max_ihave_length=8))
    join(core, b"g")
    assert len(ihave(core, b"g", [b"a%d" % i for i in range(5)])) == 5
    assert len(ihave(core, b"g", [b"b%d" % i for i in range(5)])) == 3
    assert ihave(core, b"g", [b"c0"]) == []
    assert len(ihave(core, b"g", [b"z%d" % i for i in range(20)])) == 0


def test_broken_iwant_promise_is_penalised_kept_one_is_not() -> None:
    scorer = ScriptedScorer()
    core = make(scorer=scorer)
    join(core, b"liar")
    join(core, b"honest")
    assert ihave(core, b"liar", [b"bogus"], now=0.2) == [b"bogus"]
    asked = ihave(core, b"honest", [signed(b"auth", 1).from_ + seqno_bytes(1)], now=0.2)
    assert asked
    out = core.handle(0.5, RpcReceived(b"honest", Rpc(publish=(signed(b"auth", 1),))))
    (verify,) = [a for a in out if isinstance(a, VerifySignature)]
    core.handle(0.5, SignatureChecked(verify.msg_id, True))
    while core.next_deadline() < 3.2:
        heartbeat(core)
    assert scorer.penalties == {}
    heartbeat(core)  # the first one past 0.2 + iwant_followup (3 s)
    assert scorer.penalties == {b"liar": 1}
    assert core.stats.broken_promises == 1


def test_iwant_answered_at_most_gossip_retransmission_times() -> None:
    core = make()
    join(core, b"g")
    pub = core.handle(0.0, Publish(T, b"payload"))
    msg_id = next(a.msg_id for a in pub if isinstance(a, Published))
    answers = [iwant(core, b"g", [msg_id]) for _ in range(5)]
    assert [len(a) for a in answers] == [1, 1, 1, 0, 0]
    assert answers[0][0].data == b"payload"
    assert iwant(core, b"g", [b"unknown"]) == []


def test_iwant_answers_per_heartbeat_capped() -> None:
    core = make(GossipSubParams(max_iwant_replies=2))
    join(core, b"g")
    ids = [next(a.msg_id for a in core.handle(0.0, Publish(T, b"%d" % i)) if isinstance(a, Published))
           for i in range(4)]
    assert len(iwant(core, b"g", ids)) == 2
    assert core.stats.iwant_ignored == 2


def test_gossip_goes_to_non_mesh_peers_for_mcache_gossip_windows() -> None:
    # Published to the mesh only: a flood publish reaches every topic peer,
    # which then has it and is told nothing (below).
    params = GossipSubParams(d=2, d_lo=1, d_hi=3, d_out=0, d_score=0, d_lazy=3, flood_publish=False)
    core = make(params)
    for i in range(10):
        join(core, b"p%d" % i)
    heartbeat(core)
    mesh = core.mesh(T)
    pub = core.handle(core.next_deadline() - 0.5, Publish(T, b"news"))
    msg_id = next(a.msg_id for a in pub if isinstance(a, Published))
    for _ in range(params.mcache_gossip):
        out = heartbeat(core)
        told = {a.peer for a in out if isinstance(a, SendRpc) and a.rpc.control.ihave}
        assert len(told) >= params.d_lazy and not told & mesh
        assert all(h.ids == (msg_id,) for a in out if isinstance(a, SendRpc) for h in a.rpc.control.ihave)
    out = heartbeat(core)
    assert not [a for a in out if isinstance(a, SendRpc) and a.rpc.control.ihave]
    outsider = sorted(core.peers(T) - mesh)[0]
    assert len(iwant(core, outsider, [msg_id], now=core.next_deadline() - 0.5)) == 1  # still cached
    heartbeat(core)
    assert iwant(core, outsider, [msg_id], now=core.next_deadline() - 0.5) == []  # mcache_len windows gone


def test_no_gossip_to_or_from_peers_below_gossip_threshold() -> None:
    scorer = ScriptedScorer()
    # Not flooded to "low" (it scores above the publish threshold), nor
    # remembered as having it: only the gossip threshold keeps it out.
    core = make(GossipSubParams(flood_publish=False, max_gossip_holders=0), scorer=scorer,
                thresholds=Thresholds(gossip=-10, publish=-20, graylist=-30))  # fmt: skip
    join(core, b"low")
    scorer.scores[b"low"] = -15.0
    assert ihave(core, b"low", [b"x"]) == []
    core.handle(0.0, Publish(T, b"m"))
    out = heartbeat(core)
    assert not [a for a in out if isinstance(a, SendRpc) and a.peer == b"low" and a.rpc.control.ihave]


def test_iwant_is_served_only_to_peers_in_the_topic() -> None:
    """A peer whose SUBSCRIBE to "secret" never reached the core (our policy
    dropped it) guesses the next message ID of an author it sees on "public"
    (IDs are author + seqno, and seqnos count up across topics): nothing."""
    core = make()
    core.handle(0.0, Subscribe("secret"))
    core.handle(0.0, Subscribe("public"))
    core.handle(0.0, PeerConnected(b"g", "/meshsub/1.2.0", outbound=False))
    core.handle(0.0, RpcReceived(b"g", Rpc(subscriptions=(SubOpts(True, "public"),))))
    pub = core.handle(0.0, Publish("public", b"hello"))
    pid = next(a.msg_id for a in pub if isinstance(a, Published))
    core.handle(0.0, Publish("secret", b"TOP SECRET"))
    guess = pid[:-8] + seqno_bytes(int.from_bytes(pid[-8:], "big") + 1)
    assert iwant(core, b"g", [guess]) == []
    assert [m.data for m in iwant(core, b"g", [pid])] == [b"hello"]  # its own topic still served


def _receive(core: GossipSubCore, peer: bytes, msg: Message, now: float) -> bytes:
    """``peer`` sends ``msg``; verified and accepted. Returns its ID."""
    out = core.handle(now, RpcReceived(peer, Rpc(publish=(msg,))))
    (verify,) = [a for a in out if isinstance(a, VerifySignature)]
    core.handle(now, SignatureChecked(verify.msg_id, True))
    core.handle(now, ValidationResult(verify.msg_id, Verdict.ACCEPT))
    return verify.msg_id


def _told(out: list) -> dict[bytes, set[bytes]]:
    """Peer -> the IDs our IHAVEs offered it."""
    told: dict[bytes, set[bytes]] = {}
    for a in out:
        if isinstance(a, SendRpc):
            for h in a.rpc.control.ihave:
                told.setdefault(a.peer, set()).update(h.ids)
    return told


def _wide(**kw: object) -> GossipSubCore:
    """A mesh of 2 and 10 peers outside it, every one a gossip target (d_lazy 10)."""
    core = make(GossipSubParams(d=2, d_lo=1, d_hi=3, d_out=0, d_score=0, d_lazy=10, **kw))  # type: ignore[arg-type]
    for i in range(12):
        join(core, b"p%02d" % i)
    heartbeat(core)
    return core


def test_no_ihave_offers_a_peer_what_it_sent_advertised_or_fetched() -> None:
    """IHAVE is advisory: offering a peer an ID it is known to have can only
    waste a frame. At 100 nodes, each connected to all others, the frames
    were 95 % IHAVE (mcache.py)."""
    core = _wide()
    mesh = core.mesh(T)
    outside = sorted(core.peers(T) - mesh)
    sender, advertiser, fetcher, also = outside[:4]
    now = core.next_deadline() - 0.5
    m1 = _receive(core, sender, signed(b"auth", 1), now)
    assert ihave(core, advertiser, [m1], now=now) == []  # we have it: not asked for, and it has it too
    assert len(iwant(core, fetcher, [m1], now=now)) == 1
    core.handle(now, RpcReceived(also, Rpc(publish=(signed(b"auth", 1),))))  # a duplicate
    told = _told(heartbeat(core))
    assert not told.keys() & ({sender, advertiser, fetcher, also} | mesh)
    assert set(told) == set(outside) - {sender, advertiser, fetcher, also}
    assert all(ids == {m1} for ids in told.values())
    assert core.stats.ihave_skipped == 4
    # A second message: the holders of the first hear of it alone, the others
    # of both (offered again at each of the mcache_gossip heartbeats, as the
    # spec has it: an IHAVE may be lost or ignored).
    m2 = _receive(core, sorted(mesh)[0], signed(b"auth", 2), core.next_deadline() - 0.5)
    told = _told(heartbeat(core))
    assert set(told) == set(outside)
    assert all(told[p] == ({m2} if p in (sender, advertiser, fetcher, also) else {m1, m2}) for p in outside)


def test_gossip_targets_are_peers_that_need_something_and_a_returning_peer_is_told_again() -> None:
    core = make(GossipSubParams(d=2, d_lo=1, d_hi=3, d_out=0, d_score=0, d_lazy=4))
    for i in range(12):
        join(core, b"p%02d" % i)
    heartbeat(core)
    outside = sorted(core.peers(T) - core.mesh(T))
    now = core.next_deadline() - 0.5
    m = _receive(core, outside[0], signed(b"auth", 1), now)
    for p in outside[1:7]:
        ihave(core, p, [m], now=now)
    # d_lazy 4 of the 10 outside the mesh: the 3 without it, none of the 7 with it.
    assert set(_told(heartbeat(core))) == set(outside[7:])
    assert core.stats.ihave_skipped == 7
    # One that had it goes and comes back (a restart: its seen cache is empty).
    core.handle(core.next_deadline() - 0.5, PeerDisconnected(outside[1]))
    join(core, outside[1], now=core.next_deadline() - 0.5)
    assert set(_told(heartbeat(core))) == {outside[1], *outside[7:]}
    assert core.stats.ihave_skipped == 7 + 6


def test_duplicates_that_came_while_the_message_was_validated_count_as_having_it() -> None:
    core = _wide()
    outside = sorted(core.peers(T) - core.mesh(T))
    now = core.next_deadline() - 0.5
    msg = signed(b"auth", 1)
    out = core.handle(now, RpcReceived(outside[0], Rpc(publish=(msg,))))
    (verify,) = [a for a in out if isinstance(a, VerifySignature)]
    core.handle(now, RpcReceived(outside[1], Rpc(publish=(msg,))))  # while its signature is checked
    core.handle(now, SignatureChecked(verify.msg_id, True))
    core.handle(now, RpcReceived(outside[2], Rpc(publish=(msg,))))  # while it is validated
    core.handle(now, RpcReceived(outside[3], Rpc(publish=(msg,))))
    core.handle(now, PeerDisconnected(outside[3]))  # ... and gone before the verdict
    core.handle(now, ValidationResult(verify.msg_id, Verdict.ACCEPT))
    assert core.sizes()["mcache_holders"] == 3
    told = _told(heartbeat(core))
    assert set(told) == set(outside[4:])


def test_a_flood_published_message_is_never_advertised_and_idontwant_counts_as_having_it() -> None:
    core = _wide()
    now = core.next_deadline() - 0.5
    core.handle(now, Publish(T, b"mine"))  # to every topic peer (flood publish)
    assert _told(heartbeat(core)) == {}
    # IDONTWANT alone (nothing remembered of who sent what):
    other = GossipSubCore(ME, rng=random.Random(1), now=0.0, sign=sim_sign(ME),
                          params=GossipSubParams(d=2, d_lo=1, d_hi=3, d_out=0, d_score=0, d_lazy=10, flood_publish=False,
                                                 max_gossip_holders=0))  # fmt: skip
    other.handle(0.0, Subscribe(T))
    for i in range(12):
        join(other, b"p%02d" % i)
    heartbeat(other)
    outside = sorted(other.peers(T) - other.mesh(T))
    m = _receive(other, sorted(other.mesh(T))[0], signed(b"auth", 1), other.next_deadline() - 0.5)
    other.handle(other.next_deadline() - 0.5, RpcReceived(outside[0], Rpc(control=Control(idontwant=(IDontWant((m,)),)))))
    told = _told(heartbeat(other))
    assert outside[0] not in told and set(told) == set(outside[1:])


def test_what_peers_have_is_remembered_within_its_bound_and_forgotten_with_the_message() -> None:
    core = _wide(max_gossip_holders=1)
    outside = sorted(core.peers(T) - core.mesh(T))
    now = core.next_deadline() - 0.5
    m = _receive(core, outside[0], signed(b"auth", 1), now)
    ihave(core, outside[1], [m], now=now)  # past the bound: not remembered
    assert core.sizes()["mcache_holders"] == 1
    told = _told(heartbeat(core))
    assert outside[0] not in told and outside[1] in told  # only costs an IHAVE
    for _ in range(core.params.mcache_len):
        heartbeat(core)
    assert core.sizes()["mcache"] == 0 and core.sizes()["mcache_holders"] == 0
    # A message dropped early (the cache full) takes its holders with it.
    small = _wide(max_mcache_messages=2)
    outside = sorted(small.peers(T) - small.mesh(T))
    now = small.next_deadline() - 0.5
    for n in (1, 2):
        _receive(small, outside[n], signed(b"auth", n), now)
    assert small.sizes()["mcache_holders"] == 2
    _receive(small, outside[3], signed(b"auth", 3), now)
    assert small.sizes()["mcache"] == 2 and small.sizes()["mcache_holders"] == 2
    # 0: nothing remembered, every target told everything (the spec's pseudocode).
    plain = _wide(max_gossip_holders=0)
    outside = sorted(plain.peers(T) - plain.mesh(T))
    m = _receive(plain, outside[0], signed(b"auth", 1), plain.next_deadline() - 0.5)
    assert set(_told(heartbeat(plain))) == set(outside)
