"""PRUNE backoff (both directions), GRAFT-during-backoff penalties, unsubscribe
backoff, and peer exchange (offered only to v1.1+, accepted only above accept_px)."""

from __future__ import annotations

import random

from agentp2p.protocol.gossipsub.core import GossipSubCore
from agentp2p.protocol.gossipsub.events import (
    PeerConnected,
    PeerExchange,
    RpcReceived,
    SendRpc,
    Subscribe,
    Tick,
    Unsubscribe,
)
from agentp2p.protocol.gossipsub.params import GossipSubParams
from agentp2p.protocol.gossipsub.rpc import Control, Graft, PeerInfo, Prune, Rpc, SubOpts
from agentp2p.protocol.gossipsub.scorer import Thresholds
from agentp2p.protocol.gossipsub.simnet import ScriptedScorer, sim_sign

ME = b"me"
T = "t"


def make(params: GossipSubParams | None = None, **kw: object) -> GossipSubCore:
    return GossipSubCore(ME, rng=random.Random(1), now=0.0, params=params, sign=sim_sign(ME), **kw)  # type: ignore[arg-type]


def join(core: GossipSubCore, peer: bytes, proto: str = "/meshsub/1.2.0", now: float = 0.0,
         outbound: bool = False) -> None:
    core.handle(now, PeerConnected(peer, proto, outbound=outbound))
    core.handle(now, RpcReceived(peer, Rpc(subscriptions=(SubOpts(True, T),))))


def grafts_to(actions: list, peer: bytes) -> list[Graft]:
    return [g for a in actions if isinstance(a, SendRpc) and a.peer == peer for g in a.rpc.control.graft]


def prunes_to(actions: list, peer: bytes) -> list[Prune]:
    return [p for a in actions if isinstance(a, SendRpc) and a.peer == peer for p in a.rpc.control.prune]


def run(core: GossipSubCore, until: float) -> list:
    out: list = []
    while core.next_deadline() <= until:
        out += core.handle(core.next_deadline(), Tick())
    return out


def graft(core: GossipSubCore, peer: bytes, now: float) -> list:
    return core.handle(now, RpcReceived(peer, Rpc(control=Control(graft=(Graft(T),)))))


def test_no_regraft_before_received_prune_backoff_ends() -> None:
    core = make()
    join(core, b"only")
    core.handle(0.0, Subscribe(T))
    assert core.mesh(T) == {b"only"}
    core.handle(0.5, RpcReceived(b"only", Rpc(control=Control(prune=(Prune(T, (), 5),)))))
    assert core.mesh(T) == frozenset()
    # The mesh is below D_lo every heartbeat, but the only candidate is backing off:
    # 5 s of backoff plus two heartbeats of slack (the other side clears late).
    assert grafts_to(run(core, 7.4), b"only") == []
    assert grafts_to(run(core, 8.5), b"only") == [Graft(T)]


def test_prune_without_backoff_field_uses_the_default() -> None:
    core = make(GossipSubParams(prune_backoff=20.0))
    join(core, b"only", proto="/meshsub/1.0.0")
    core.handle(0.0, Subscribe(T))
    core.handle(0.5, RpcReceived(b"only", Rpc(control=Control(prune=(Prune(T),)))))
    assert grafts_to(run(core, 20.0), b"only") == []
    assert grafts_to(run(core, 24.0), b"only") == [Graft(T)]


def test_graft_during_our_backoff_is_refused_and_penalised() -> None:
    scorer = ScriptedScorer()
    core = make(scorer=scorer)
    join(core, b"x")
    core.handle(0.0, Subscribe(T))
    core.handle(0.5, Unsubscribe(T))
    core.handle(0.6, Subscribe(T))  # rejoin; x is in our (10 s unsubscribe) backoff
    assert b"x" not in core.mesh(T)
    out = graft(core, b"x", 1.0)
    assert b"x" not in core.mesh(T)
    assert [p.topic for p in prunes_to(out, b"x")] == [T]
    assert scorer.penalties == {b"x": 1}
    # The refusal refreshed the backoff to a full prune_backoff (60 s, until 61 s);
    # a GRAFT within graft_flood_threshold (10 s) of that PRUNE costs double.
    graft(core, b"x", 2.0)
    assert scorer.penalties == {b"x": 3}
    assert core.stats.backoff_violations == 2
    graft(core, b"x", 40.0)  # past the flood window: single penalty, backoff until 100 s
    assert b"x" not in core.mesh(T) and scorer.penalties[b"x"] == 4
    graft(core, b"x", 100.5)
    assert b"x" in core.mesh(T) and scorer.penalties[b"x"] == 4


def test_unsubscribe_prunes_mesh_with_unsubscribe_backoff() -> None:
    core = make()
    join(core, b"v11", proto="/meshsub/1.1.0")
    join(core, b"v10", proto="/meshsub/1.0.0")
    core.handle(0.0, Subscribe(T))
    out = core.handle(1.0, Unsubscribe(T))
    assert prunes_to(out, b"v11") == [Prune(T, (), 10)]
    assert prunes_to(out, b"v10") == [Prune(T)]  # v1.0 cannot parse backoff/PX
    assert core.in_backoff(T, b"v11")
    core.handle(1.0, Subscribe(T))
    assert core.mesh(T) == frozenset()


def test_px_offered_on_prune_only_to_v11_peers_and_only_nonnegative_peers() -> None:
    scorer = ScriptedScorer()
    params = GossipSubParams(d=1, d_lo=1, d_hi=2, d_out=0, d_score=0, do_px=True)
    core = make(params, scorer=scorer)
    core.handle(0.0, Subscribe(T))
    for name in (b"a", b"b", b"c", b"bad"):
        join(core, name, outbound=True)  # outbound: GRAFTs accepted past D_hi
    scorer.scores[b"bad"] = -5.0
    join(core, b"old", proto="/meshsub/1.0.0", outbound=True)
    for name in (b"a", b"b", b"c", b"old"):
        graft(core, name, 0.0)
    assert len(core.mesh(T)) == 4
    out = core.handle(core.next_deadline(), Tick())
    pruned = {a.peer: p for a in out if isinstance(a, SendRpc) for p in a.rpc.control.prune}
    assert len(pruned) == 3
    for peer, prune in pruned.items():
        if peer == b"old":
            assert prune == Prune(T)
        else:
            offered = {i.peer_id for i in prune.peers}
            assert offered and peer not in offered and b"bad" not in offered


def test_px_accepted_only_above_accept_px_threshold() -> None:
    scorer = ScriptedScorer()
    core = make(scorer=scorer, thresholds=Thresholds(accept_px=100.0))
    join(core, b"boot")
    join(core, b"rando")
    core.handle(0.0, Subscribe(T))
    offer = (PeerInfo(b"new1", b"record"), PeerInfo(b"rando"), PeerInfo(ME))
    out = core.handle(0.5, RpcReceived(b"rando", Rpc(control=Control(prune=(Prune(T, offer, 60),)))))
    assert not [a for a in out if isinstance(a, PeerExchange)]
    assert core.stats.px_ignored == 1
    scorer.scores[b"boot"] = 500.0
    out = core.handle(0.5, RpcReceived(b"boot", Rpc(control=Control(prune=(Prune(T, offer, 60),)))))
    (px,) = [a for a in out if isinstance(a, PeerExchange)]
    assert px.peers == (PeerInfo(b"new1", b"record"),)  # connected peers and ourselves dropped
