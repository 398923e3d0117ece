"""Every table the router keeps is bounded, and no RPC content makes it raise."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentp2p.protocol.gossipsub.codec import encode_rpc, seqno_bytes
from agentp2p.protocol.gossipsub.core import GossipSubCore
from agentp2p.protocol.gossipsub.events import (
    PeerConnected,
    Publish,
    RpcReceived,
    SignatureChecked,
    Subscribe,
    Tick,
    VerifySignature,
)
from agentp2p.protocol.gossipsub.params import GossipSubParams
from agentp2p.protocol.gossipsub.rpc import (
    Control,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Message,
    PeerInfo,
    Prune,
    Rpc,
    SubOpts,
)
from agentp2p.protocol.gossipsub.score import PeerScore
from agentp2p.protocol.gossipsub.score_params import PeerScoreThresholds, default_score_params
from agentp2p.protocol.gossipsub.simnet import sim_sign

ME = b"me"
T = "t"
SMALL = GossipSubParams(max_peers=5, max_topics_per_peer=3, max_known_topics=4, max_seen=10, max_mcache_messages=4,
                        max_pending=3, max_promises=2, max_idontwant_ids=3, max_idontwant_total=5, max_backoffs=3,
                        max_bad_signatures=2, max_topics=2)


def make(params: GossipSubParams = SMALL) -> GossipSubCore:
    core = GossipSubCore(ME, rng=random.Random(1), now=0.0, params=params, sign=sim_sign(ME))
    core.handle(0.0, Subscribe(T))
    return core


def connect(core: GossipSubCore, peer: bytes) -> None:
    core.handle(0.0, PeerConnected(peer, "/meshsub/1.2.0", outbound=False))


def test_peer_and_topic_tables_are_bounded() -> None:
    core = make()
    for i in range(8):
        connect(core, b"p%d" % i)
    assert core.sizes()["peers"] == 5 and core.stats.peers_refused == 3
    subs = tuple(SubOpts(True, "topic%d" % i) for i in range(10))
    core.handle(0.0, RpcReceived(b"p0", Rpc(subscriptions=subs)))
    assert core.stats.subscriptions_refused == 7  # 3 topics per peer
    core.handle(0.0, RpcReceived(b"p1", Rpc(subscriptions=subs[5:])))
    assert core.stats.subscriptions_refused == 7 + 4  # 4 distinct topics overall
    assert core.peers("topic5") == {b"p1"} and core.peers("topic6") == frozenset()


def test_message_tables_are_bounded() -> None:
    core = make()
    connect(core, b"p")
    verifies = []
    for n in range(20):
        m = Message(T, b"x", b"author", seqno_bytes(n), b"sig")
        verifies += [a for a in core.handle(0.0, RpcReceived(b"p", Rpc(publish=(m,)))) if isinstance(a, VerifySignature)]
    assert len(verifies) == 3 and core.stats.pending_full == 17  # max_pending
    for v in verifies:
        core.handle(0.0, SignatureChecked(v.msg_id, False))
    for n in range(20):
        core.handle(0.0, Publish(T, b"%d" % n))
    sizes = core.sizes()
    assert sizes["seen"] <= 10 and sizes["mcache"] <= 4 and sizes["bad_signatures"] <= 2
    core.handle(0.0, RpcReceived(b"p", Rpc(control=Control(idontwant=(IDontWant(tuple(b"%d" % i for i in range(9))),)))))
    assert core.sizes()["idontwant"] == 3
    for i in range(5):
        core.handle(0.0, RpcReceived(b"p", Rpc(control=Control(ihave=(IHave(T, (b"h%d" % i,)),)))))
    assert core.sizes()["promises"] <= 2


def test_backoff_table_is_bounded() -> None:
    core = make()
    for i in range(5):
        connect(core, b"p%d" % i)
        core.handle(0.0, RpcReceived(b"p%d" % i, Rpc(control=Control(prune=(Prune(T, (), 30),)))))
    assert core.sizes()["backoff"] == 3


def test_own_topics_are_bounded() -> None:
    core = make()
    core.handle(0.0, Subscribe("second"))
    try:
        core.handle(0.0, Subscribe("third"))
    except ValueError:
        pass
    else:
        raise AssertionError("max_topics not enforced")
    assert sorted(core.subscriptions()) == ["second", T]


topics = st.sampled_from([T, "other", ""])
ids = st.lists(st.sampled_from([b"", b"a", b"b", b"author\x00\x00\x00\x00\x00\x00\x00\x01"]), max_size=4).map(tuple)
peers = st.sampled_from([b"p0", b"p1", b"p9", ME, b""])
messages = st.builds(Message, topic=topics, data=st.binary(max_size=8),
                     from_=st.one_of(st.none(), peers), seqno=st.one_of(st.none(), st.binary(max_size=9)),
                     signature=st.one_of(st.none(), st.binary(max_size=4)), key=st.none())
controls = st.builds(
    Control,
    ihave=st.lists(st.builds(IHave, topic=topics, ids=ids), max_size=3).map(tuple),
    iwant=st.lists(st.builds(IWant, ids=ids), max_size=3).map(tuple),
    graft=st.lists(st.builds(Graft, topic=topics), max_size=3).map(tuple),
    prune=st.lists(st.builds(Prune, topic=topics, peers=st.lists(st.builds(PeerInfo, peer_id=peers), max_size=3)
                             .map(tuple), backoff=st.one_of(st.none(), st.integers(0, 2**64 - 1))), max_size=3).map(tuple),
    idontwant=st.lists(st.builds(IDontWant, ids=ids), max_size=2).map(tuple),
)
rpcs = st.builds(Rpc, subscriptions=st.lists(st.builds(SubOpts, subscribe=st.booleans(), topic=topics), max_size=3)
                 .map(tuple), publish=st.lists(messages, max_size=3).map(tuple), control=controls)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([b"p0", b"p1"]), rpcs, st.booleans()), max_size=12))
def test_core_never_raises_on_any_rpc(script: list[tuple[bytes, Rpc, bool]]) -> None:
    # The real PeerScore raises on a reject reason it does not know: this also
    # checks that every reason the router uses is one of score.REJECT_REASONS.
    scorer = PeerScore(default_score_params([T]), PeerScoreThresholds(), 0.0)
    core = GossipSubCore(ME, rng=random.Random(0), now=0.0, sign=sim_sign(ME), scorer=scorer)
    core.handle(0.0, Subscribe(T))
    for p in (b"p0", b"p1"):
        connect(core, p)
    now = 0.0
    for peer, rpc, as_bytes in script:
        now += 0.4
        out = core.handle(now, RpcReceived(peer, encode_rpc(rpc) if as_bytes else rpc))
        for a in out:
            if isinstance(a, VerifySignature):
                core.handle(now, SignatureChecked(a.msg_id, a.message.signature == b"ok"))
    core.handle(now + 100, Tick())
