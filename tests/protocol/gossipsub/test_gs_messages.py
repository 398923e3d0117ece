"""Message path: seen-cache dedup, StrictSign (one verification per unique
message, forgeries dropped and counted), validation verdicts, forwarding,
flood publish, fanout expiry, IDONTWANT both ways, graylisting."""

from __future__ import annotations

import random

from agentp2p.protocol.gossipsub.codec import seqno_bytes, signing_payload
from agentp2p.protocol.gossipsub.core import GossipSubCore
from agentp2p.protocol.gossipsub.events import (
    Deliver,
    PeerConnected,
    Publish,
    Published,
    RpcReceived,
    SendRpc,
    SignatureChecked,
    Subscribe,
    Tick,
    Validate,
    ValidationResult,
    Verdict,
    VerifySignature,
)
from agentp2p.protocol.gossipsub.params import GossipSubParams, SignPolicy
from agentp2p.protocol.gossipsub.rpc import Control, Graft, IDontWant, IWant, Message, Rpc, SubOpts
from agentp2p.protocol.gossipsub.scorer import Thresholds
from agentp2p.protocol.gossipsub.simnet import ScriptedScorer, sim_sign

ME = b"me"
T = "t"


def make(params: GossipSubParams | None = None, *, subscribe: bool = True, validate: bool = False,
         **kw: object) -> GossipSubCore:
    core = GossipSubCore(ME, rng=random.Random(1), now=0.0, params=params, sign=sim_sign(ME), **kw)  # type: ignore[arg-type]
    if subscribe:
        core.handle(0.0, Subscribe(T, validate=validate))
    return core


def join(core: GossipSubCore, peer: bytes, proto: str = "/meshsub/1.2.0") -> None:
    core.handle(0.0, PeerConnected(peer, proto, outbound=False))
    core.handle(0.0, RpcReceived(peer, Rpc(subscriptions=(SubOpts(True, T),))))


def signed(author: bytes, n: int, data: bytes = b"x") -> Message:
    m = Message(T, data, author, seqno_bytes(n))
    return Message(T, data, author, seqno_bytes(n), sim_sign(author)(signing_payload(m)))


def recv(core: GossipSubCore, peer: bytes, *msgs: Message, now: float = 0.0) -> list:
    return core.handle(now, RpcReceived(peer, Rpc(publish=msgs)))


def of(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def msgs_to(actions: list) -> dict[bytes, list[Message]]:
    out: dict[bytes, list[Message]] = {}
    for a in of(actions, SendRpc):
        if a.rpc.publish:
            out.setdefault(a.peer, []).extend(a.rpc.publish)
    return out


def meshed(core: GossipSubCore, n: int, proto: str = "/meshsub/1.2.0") -> list[bytes]:
    peers = [b"p%d" % i for i in range(n)]
    for p in peers:
        join(core, p, proto)
    core.handle(core.next_deadline(), Tick())
    return peers


def test_one_verification_per_unique_message_then_deliver_and_forward() -> None:
    scorer = ScriptedScorer()
    core = make(scorer=scorer)
    meshed(core, 4)
    m = signed(b"author", 1)
    out = recv(core, b"p0", m)
    (v,) = of(out, VerifySignature)
    assert v.payload == signing_payload(m)
    assert of(recv(core, b"p1", m), VerifySignature) == []  # duplicate while pending
    out = core.handle(0.0, SignatureChecked(v.msg_id, True))
    (d,) = of(out, Deliver)
    assert (d.topic, d.message, d.from_peer) == (T, m, b"p0")
    # Forwarded to the mesh, minus the two peers we got it from.
    assert set(msgs_to(out)) == core.mesh(T) - {b"p0", b"p1"}
    assert of(recv(core, b"p2", m), VerifySignature) == []
    assert core.stats.duplicates == 2 and core.stats.delivered == 1
    assert [c[1] for c in scorer.called("duplicate")] == [b"p1", b"p2"]
    assert scorer.called("deliver") == [("deliver", b"p0", v.msg_id)]


def test_forged_signature_dropped_counted_replay_not_reverified_genuine_accepted() -> None:
    scorer = ScriptedScorer()
    core = make(scorer=scorer)
    meshed(core, 3)
    genuine = signed(b"author", 7)
    forged = Message(T, b"evil", genuine.from_, genuine.seqno, b"\x00" * 32)
    (v,) = of(recv(core, b"p0", forged), VerifySignature)
    out = core.handle(0.0, SignatureChecked(v.msg_id, False))
    assert of(out, Deliver) == [] and msgs_to(out) == {}
    assert core.stats.rejected == {"invalid_signature": 1}
    assert ("reject", b"p0", v.msg_id, "invalid_signature") in scorer.calls
    # The same forgery again: rejected without a second verification.
    assert of(recv(core, b"p1", forged), VerifySignature) == []
    assert core.stats.rejected == {"invalid_signature": 2}
    # The genuine message with the same ID still gets through.
    (v2,) = of(recv(core, b"p2", genuine), VerifySignature)
    assert of(core.handle(0.0, SignatureChecked(v2.msg_id, True)), Deliver)


def test_missing_signature_and_self_origin_rejected_without_verification() -> None:
    core = make()
    meshed(core, 2)
    assert of(recv(core, b"p0", Message(T, b"x", b"a", seqno_bytes(1))), VerifySignature) == []
    assert of(recv(core, b"p0", signed(ME, 1)), VerifySignature) == []
    assert core.stats.rejected == {"missing_signature": 1, "self_origin": 1}


def test_messages_for_topics_we_are_not_in_are_dropped() -> None:
    core = make(subscribe=False)
    join(core, b"p")
    assert recv(core, b"p", signed(b"a", 1)) == []
    assert core.stats.not_subscribed == 1


def test_validation_verdicts() -> None:
    scorer = ScriptedScorer()
    core = make(validate=True, scorer=scorer)
    meshed(core, 3)

    def through_signature(m: Message) -> Validate:
        (v,) = of(recv(core, b"p0", m), VerifySignature)
        (val,) = of(core.handle(0.0, SignatureChecked(v.msg_id, True)), Validate)
        return val

    val = through_signature(signed(b"a", 1))
    assert of(core.handle(0.0, ValidationResult(val.msg_id, Verdict.REJECT)), Deliver) == []
    val2 = through_signature(signed(b"a", 2))
    assert of(core.handle(0.0, ValidationResult(val2.msg_id, Verdict.IGNORE)), Deliver) == []
    assert core.stats.rejected == {"invalid": 1, "ignored": 1}
    assert [c[3] for c in scorer.called("reject")] == ["invalid", "ignored"]
    val3 = through_signature(signed(b"a", 3))
    assert of(core.handle(0.0, ValidationResult(val3.msg_id, Verdict.ACCEPT)), Deliver)
    assert of(core.handle(0.0, ValidationResult(val3.msg_id, Verdict.ACCEPT)), Deliver) == []
    assert core.stats.unsolicited == 1


def test_verdicts_never_given_time_out() -> None:
    core = make(GossipSubParams(pending_timeout=5.0), validate=True)
    meshed(core, 1)
    recv(core, b"p0", signed(b"a", 1), now=0.5)
    for _ in range(8):
        core.handle(core.next_deadline(), Tick())
    assert core.sizes()["pending"] == 0 and core.stats.pending_timeout == 1


def test_flood_publish_reaches_every_topic_peer_above_publish_threshold() -> None:
    scorer = ScriptedScorer()
    core = make(scorer=scorer, thresholds=Thresholds(gossip=-10, publish=-20, graylist=-30))
    peers = meshed(core, 15)
    scorer.scores[b"p3"] = -25.0
    out = core.handle(core.next_deadline() - 0.5, Publish(T, b"hi"))
    assert set(msgs_to(out)) == set(peers) - {b"p3"}
    (pub,) = of(out, Published)
    assert pub.peers == 14
    assert of(out, Deliver)  # our own subscription gets it too


def test_without_flood_publish_only_mesh_gets_own_messages() -> None:
    core = make(GossipSubParams(flood_publish=False))
    meshed(core, 15)
    out = core.handle(core.next_deadline() - 0.5, Publish(T, b"hi"))
    assert set(msgs_to(out)) == core.mesh(T)


def test_fanout_for_unjoined_topic_expires_after_ttl() -> None:
    core = make(GossipSubParams(flood_publish=False, fanout_ttl=10.0), subscribe=False)
    for i in range(10):
        join(core, b"p%d" % i)
    out = core.handle(0.5, Publish(T, b"hi"))
    fanout = core.fanout(T)
    assert len(fanout) == 6 and set(msgs_to(out)) == fanout
    out = core.handle(5.0, Publish(T, b"again"))
    assert set(msgs_to(out)) == fanout  # the same fanout is reused while fresh
    while core.next_deadline() <= 15.0:
        core.handle(core.next_deadline(), Tick())
    assert core.fanout(T) == fanout  # 10 s since the last publish at 5 s: not yet
    core.handle(core.next_deadline(), Tick())
    assert core.fanout(T) == frozenset()


def test_idontwant_sent_to_v12_mesh_peers_for_large_messages_only() -> None:
    core = make(GossipSubParams(d=4, d_lo=3, d_hi=8))
    for i in range(2):
        join(core, b"new%d" % i)
        join(core, b"old%d" % i, "/meshsub/1.1.0")
    core.handle(core.next_deadline(), Tick())
    assert len(core.mesh(T)) == 4

    def dontwants(out: list) -> dict[bytes, tuple]:
        return {a.peer: a.rpc.control.idontwant for a in of(out, SendRpc) if a.rpc.control.idontwant}

    big = signed(b"a", 1, b"B" * 1000)
    (v,) = of(recv(core, b"new0", big), VerifySignature)
    out = core.handle(0.0, SignatureChecked(v.msg_id, True))
    assert dontwants(out) == {b"new1": (IDontWant((v.msg_id,)),)}  # not the sender, not v1.1
    (v,) = of(recv(core, b"new0", signed(b"a", 2, b"s" * 999)), VerifySignature)
    assert dontwants(core.handle(0.0, SignatureChecked(v.msg_id, True))) == {}


def test_received_idontwant_suppresses_forward_and_iwant_answer() -> None:
    core = make()
    peers = meshed(core, 8)
    m = signed(b"a", 1)
    msg_id = m.from_ + m.seqno  # type: ignore[operator]
    mesh = sorted(core.mesh(T))
    quiet = mesh[1]
    core.handle(0.0, RpcReceived(quiet, Rpc(control=Control(idontwant=(IDontWant((msg_id,)),)))))
    (v,) = of(recv(core, mesh[0], m), VerifySignature)
    out = core.handle(0.0, SignatureChecked(v.msg_id, True))
    assert quiet not in msgs_to(out) and set(msgs_to(out)) == set(mesh[2:])
    out = core.handle(0.0, RpcReceived(quiet, Rpc(control=Control(iwant=(IWant((msg_id,)),)))))
    assert msgs_to(out) == {}
    other = next(p for p in peers if p not in mesh)
    out = core.handle(0.0, RpcReceived(other, Rpc(control=Control(iwant=(IWant((msg_id,)),)))))
    assert msgs_to(out) == {other: [m]}


def test_graylisted_peer_is_ignored_and_malformed_rpc_counted() -> None:
    scorer = ScriptedScorer()
    core = make(scorer=scorer, thresholds=Thresholds(gossip=-10, publish=-20, graylist=-30))
    meshed(core, 2)
    scorer.scores[b"p0"] = -31.0
    assert recv(core, b"p0", signed(b"a", 1)) == []
    assert core.stats.graylisted == 1
    assert core.handle(0.0, RpcReceived(b"p1", b"\xff\xff\xff")) == []
    assert core.stats.malformed == 1
    assert core.handle(0.0, RpcReceived(b"stranger", b"")) == []
    assert core.stats.unknown_peer == 1


def test_strict_no_sign_rejects_authored_messages_and_needs_a_content_id() -> None:
    import hashlib

    import pytest

    no_sign = GossipSubParams(sign_policy=SignPolicy.STRICT_NO_SIGN)
    with pytest.raises(ValueError):
        GossipSubCore(ME, rng=random.Random(1), now=0.0, params=no_sign)
    content_id = lambda m: hashlib.sha256(m.data).digest()  # noqa: E731
    core = make(no_sign, msg_id_fn=content_id)
    meshed(core, 3)
    out = core.handle(0.5, Publish(T, b"anon"))
    sent = [m for ms in msgs_to(out).values() for m in ms]
    assert sent and all((m.from_, m.seqno, m.signature, m.key) == (None,) * 4 for m in sent)
    assert of(recv(core, b"p0", Message(T, b"a", b"author")), Deliver) == []
    assert of(recv(core, b"p0", Message(T, b"b", signature=b"s")), Deliver) == []
    assert core.stats.rejected == {"unexpected_auth_info": 1, "unexpected_signature": 1}
    out = recv(core, b"p0", Message(T, b"plain"))  # no signature to check: straight to delivery
    assert of(out, VerifySignature) == [] and of(out, Deliver)


def test_direct_peers_get_everything_never_mesh_and_graft_is_refused() -> None:
    scorer = ScriptedScorer()
    core = make(GossipSubParams(flood_publish=False), scorer=scorer,
                thresholds=Thresholds(gossip=-10, publish=-20, graylist=-30), direct_peers=[b"friend"])
    join(core, b"friend")
    meshed(core, 8)
    assert b"friend" not in core.mesh(T)
    out = core.handle(1.5, Publish(T, b"own"))
    assert b"friend" in msgs_to(out)
    (v,) = of(recv(core, b"p0", signed(b"a", 1), now=1.5), VerifySignature)
    assert b"friend" in msgs_to(core.handle(1.5, SignatureChecked(v.msg_id, True)))
    out = core.handle(1.5, RpcReceived(b"friend", Rpc(control=Control(graft=(Graft(T),)))))
    assert [(a.peer, p.peers) for a in of(out, SendRpc) for p in a.rpc.control.prune] == [(b"friend", ())]
    assert b"friend" not in core.mesh(T)
    scorer.scores[b"friend"] = -100.0  # never graylisted
    assert of(recv(core, b"friend", signed(b"a", 2), now=1.5), VerifySignature)
