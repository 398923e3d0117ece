"""The outbox: everything queued for a peer goes out, in order, in RPCs whose
encoded size stays under the limit; one RPC whenever it all fits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agentp2p.protocol.gossipsub.codec import encode_rpc
from agentp2p.protocol.gossipsub.outbox import Outbox
from agentp2p.protocol.gossipsub.rpc import Graft, IHave, Message, PeerInfo, Prune, SubOpts

_topics = st.sampled_from(["t", "agents", "x" * 40])
_ids = st.binary(min_size=1, max_size=60)
_msgs = st.builds(Message, topic=_topics, data=st.binary(max_size=50) | st.binary(min_size=1000, max_size=3000), from_=st.just(b"\x01" * 38),
                  seqno=st.just(b"\x00" * 8), signature=st.just(b"\x02" * 64))


def _flat(rpcs: list, control: bool) -> tuple[list, ...]:
    subs, msgs, ihave, iwant, graft, prune, idw = [], [], [], [], [], [], []
    for r in rpcs:
        subs += r.subscriptions
        msgs += r.publish
        ihave += r.control.ihave
        iwant += [i for w in r.control.iwant for i in w.ids]
        graft += r.control.graft
        prune += r.control.prune
        idw += [i for w in r.control.idontwant for i in w.ids]
    return subs, msgs, ihave, iwant, graft, prune, idw


@settings(max_examples=150, deadline=None)
@given(
    subs=st.lists(st.builds(SubOpts, subscribe=st.booleans(), topic=_topics), max_size=4),
    msgs=st.lists(_msgs, max_size=12),
    ihave=st.lists(st.builds(IHave, topic=_topics, ids=st.lists(_ids, max_size=30).map(tuple)), max_size=4),
    iwant=st.lists(_ids, max_size=40),
    graft=st.lists(st.builds(Graft, topic=_topics), max_size=3),
    prune=st.lists(st.builds(Prune, topic=_topics, peers=st.lists(
        st.builds(PeerInfo, peer_id=st.binary(min_size=1, max_size=40), signed_peer_record=st.binary(max_size=200)),
        max_size=5).map(tuple), backoff=st.none() | st.integers(0, 10_000)), max_size=3),
    idontwant=st.lists(_ids, max_size=20),
    control=st.booleans(),
    limit=st.sampled_from([4096, 16_384, 1 << 20]),
)
def test_flush_keeps_everything_in_order_under_the_limit(subs, msgs, ihave, iwant, graft, prune, idontwant,
                                                         control, limit) -> None:
    box = Outbox(limit)
    po = box.to(b"peer")
    po.subs += subs
    po.msgs += msgs
    po.ihave += ihave
    po.iwant += iwant
    po.graft += graft
    po.prune += prune
    po.idontwant += idontwant
    fits = po.size(control) <= limit - 64
    rpcs = [r for p, r in box.flush({b"peer": control}) if p == b"peer"]
    want = (subs, msgs) + ((ihave, iwant, graft, prune, idontwant) if control else ([], [], [], [], []))
    assert _flat(rpcs, control) == tuple(list(x) for x in want)
    if fits:
        assert len(rpcs) == (1 if any(want) else 0)  # nothing queued (or only control, stripped): nothing sent
    for r in rpcs:
        # Only an item too big on its own may exceed the limit; it then goes alone.
        assert len(encode_rpc(r)) <= limit or len(r.publish) + len(r.control.ihave) + len(r.control.prune) == 1
    assert box.flush({}) == []


def test_what_does_not_fit_is_split() -> None:
    box = Outbox(4096)
    po = box.to(b"peer")
    po.msgs += [Message("t", bytes([i]) * 1500) for i in range(5)]
    po.iwant += [b"id%d" % i for i in range(3)]
    rpcs = [r for _, r in box.flush({b"peer": True})]
    assert len(rpcs) == 3 and all(len(encode_rpc(r)) <= 4096 for r in rpcs)
    assert [m.data[0] for r in rpcs for m in r.publish] == list(range(5))
    assert rpcs[0].control.iwant[0].ids == (b"id0", b"id1", b"id2")  # control first


def test_a_peer_with_nothing_left_to_send_gets_no_rpc() -> None:
    box = Outbox(1 << 20)
    box.to(b"asked")  # addressed (an IWANT we did not answer), nothing queued
    box.to(b"flood").graft.append(Graft("t"))  # a floodsub peer: control is stripped
    box.to(b"mesh").graft.append(Graft("t"))
    assert [p for p, _ in box.flush({b"flood": False, b"mesh": True, b"asked": True})] == [b"mesh"]
