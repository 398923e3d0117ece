"""Mesh maintenance: degree bounds after every heartbeat, D_score/D_out survivor
selection, GRAFT admission, opportunistic grafting, negative-score pruning."""

from __future__ import annotations

import random

import pytest

from agentp2p.protocol.gossipsub.core import GossipSubCore
from agentp2p.protocol.gossipsub.events import (
    PeerConnected,
    PeerDisconnected,
    RpcReceived,
    SendRpc,
    Subscribe,
    Tick,
)
from agentp2p.protocol.gossipsub.mesh import nearest, survivors, xor_key
from agentp2p.protocol.gossipsub.params import GossipSubParams
from agentp2p.protocol.gossipsub.rpc import Control, Graft, Prune, Rpc, SubOpts
from agentp2p.protocol.gossipsub.scorer import Thresholds
from agentp2p.protocol.gossipsub.simnet import ScriptedScorer, sim_sign

ME = b"me"
T = "t"


def make(params: GossipSubParams | None = None, **kw: object) -> GossipSubCore:
    return GossipSubCore(ME, rng=random.Random(1), now=0.0, params=params, sign=sim_sign(ME), **kw)  # type: ignore[arg-type]


def join(core: GossipSubCore, peer: bytes, *, outbound: bool = False, now: float = 0.0) -> None:
    core.handle(now, PeerConnected(peer, "/meshsub/1.2.0", outbound))
    core.handle(now, RpcReceived(peer, Rpc(subscriptions=(SubOpts(True, T),))))


def heartbeat(core: GossipSubCore) -> list:
    return core.handle(core.next_deadline(), Tick())


def control_to(actions: list, peer: bytes) -> list[Control]:
    return [a.rpc.control for a in actions if isinstance(a, SendRpc) and a.peer == peer]


def test_subscribe_grafts_d_peers_and_heartbeat_keeps_bounds() -> None:
    core = make()
    for i in range(20):
        join(core, b"p%02d" % i)
    out = core.handle(0.0, Subscribe(T))
    assert len(core.mesh(T)) == 6
    for p in core.mesh(T):
        assert any(c.graft == (Graft(T),) for c in control_to(out, p))
    heartbeat(core)
    assert 5 <= len(core.mesh(T)) <= 12


@pytest.mark.parametrize("seed", range(12))
def test_mesh_degree_in_bounds_after_every_heartbeat_under_churn(seed: int) -> None:
    """Random connects, disconnects, GRAFTs and PRUNEs between heartbeats; after
    each heartbeat D_lo <= |mesh| <= D_hi whenever enough peers are available."""
    rng = random.Random(seed)
    p = GossipSubParams()
    core = make(p)
    core.handle(0.0, Subscribe(T))
    connected: set[bytes] = set()
    now = 0.0
    for step in range(120):
        now = core.next_deadline() - 0.01  # churn just before the heartbeat
        for _ in range(rng.randint(0, 6)):
            op = rng.random()
            peer = b"p%03d" % rng.randrange(60)
            if op < 0.4 and peer not in connected:
                join(core, peer, outbound=rng.random() < 0.3, now=now)
                connected.add(peer)
            elif op < 0.55 and peer in connected:
                core.handle(now, PeerDisconnected(peer))
                connected.discard(peer)
            elif op < 0.85 and peer in connected:
                core.handle(now, RpcReceived(peer, Rpc(control=Control(graft=(Graft(T),)))))
            elif peer in connected:
                core.handle(now, RpcReceived(peer, Rpc(control=Control(prune=(Prune(T, (), 5),)))))
        core.handle(core.next_deadline(), Tick())
        mesh = core.mesh(T)
        assert len(mesh) <= p.d_hi
        assert mesh <= connected
        available = len(mesh) + sum(1 for x in connected - mesh if not core.in_backoff(T, x))
        assert len(mesh) >= min(p.d_lo, available), (step, len(mesh), available)


def test_oversubscribed_mesh_keeps_best_scores_and_outbound_quota() -> None:
    scorer = ScriptedScorer()
    core = make(scorer=scorer)
    core.handle(0.0, Subscribe(T))
    peers = [b"p%02d" % i for i in range(16)]
    for i, peer in enumerate(peers):
        join(core, peer, outbound=i >= 14)  # only p14, p15 are outbound
        scorer.scores[peer] = float(i < 4) * (10 + i)  # p00..p03 score best
    for peer in peers:  # everyone grafts (outbound peers are accepted past D_hi)
        core.handle(0.0, RpcReceived(peer, Rpc(control=Control(graft=(Graft(T),)))))
    before = core.mesh(T)
    assert len(before) > 12
    out = heartbeat(core)
    mesh = core.mesh(T)
    assert len(mesh) == 6
    assert set(peers[:4]) <= mesh  # D_score = 4 best kept
    assert {b"p14", b"p15"} <= mesh  # D_out = 2 outbound kept
    for peer in before - mesh:
        prunes = [p for c in control_to(out, peer) for p in c.prune]
        assert prunes and prunes[0].backoff == 60
        assert core.in_backoff(T, peer)


def test_survivors_fill_outbound_quota_from_pruned() -> None:
    mesh = [b"%02d" % i for i in range(13)]
    keep = survivors(mesh, d=6, d_score=4, d_out=2, score=lambda p: -int(p), outbound=lambda p: p >= b"11",
                     rng=random.Random(3))
    assert len(keep) == 6
    assert {b"00", b"01", b"02", b"03"} <= set(keep)
    assert sum(p >= b"11" for p in keep) == 2


def by_distance(peers: list[bytes]) -> list[bytes]:
    """Brute force: peers by XOR distance of SHA-256 hashes from ME."""
    import hashlib

    def h(p: bytes) -> int:
        return int.from_bytes(hashlib.sha256(p).digest(), "big")

    return sorted(peers, key=lambda p: h(p) ^ h(ME))


def test_nearest_is_xor_distance_of_the_hashes() -> None:
    peers = [b"p%02d" % i for i in range(40)]
    assert nearest(peers, 5, ME) == by_distance(peers)[:5]
    assert nearest(peers, 0, ME) == []
    assert xor_key(b"x") == xor_key(b"x") != xor_key(b"y")


def test_d_near_mesh_holds_the_nearest_and_moves_towards_a_nearer_newcomer() -> None:
    """With d_near the mesh starts with the nearest topic peers and fills the
    rest at random; a peer that connects later and is nearer than those is
    grafted at the next heartbeat, and the mesh is trimmed back to D."""
    core = make(GossipSubParams(d_near=3))
    peers = [b"p%02d" % i for i in range(40)]
    order = by_distance(peers)
    late = order[0]  # the nearest of all connects last
    for peer in peers:
        if peer != late:
            join(core, peer)
    core.handle(0.0, Subscribe(T))
    assert len(core.mesh(T)) == 6
    assert set(order[1:4]) <= core.mesh(T)  # the 3 nearest connected
    join(core, late)
    heartbeat(core)  # grafted; not counted until it has had a heartbeat to answer (a refusal would prune it)
    assert set(order[:3]) <= core.mesh(T) and len(core.mesh(T)) == 7
    heartbeat(core)  # then one of our own far picks makes room
    assert set(order[:3]) <= core.mesh(T) and len(core.mesh(T)) == 6


def test_d_near_far_members_give_way_to_near_ones_but_long_links_stay() -> None:
    """A mesh filled before the nearest connected: once they do, it grafts
    them and prunes back down to D, keeping D - d_near others as long links
    (the outbound quota first), and then stays as it is."""
    core = make(GossipSubParams(d_near=4))  # D = 6: 4 nearest + 2 others
    peers = [b"p%02d" % i for i in range(40)]
    order = by_distance(peers)
    nearest, rest = order[:4], order[4:]
    dialed = set(rest[-3:])  # the only outbound peers, and far ones
    for peer in rest:
        join(core, peer, outbound=peer in dialed)
    core.handle(0.0, Subscribe(T))
    for peer in nearest:
        join(core, peer)
    heartbeat(core)  # the nearest are grafted (and given a heartbeat to answer) ...
    assert set(nearest) <= core.mesh(T)
    heartbeat(core)  # ... then our other picks make room
    mesh = core.mesh(T)
    assert set(nearest) <= mesh and len(mesh) == 6
    assert mesh - set(nearest) <= dialed  # D_out = 2: the two long links are outbound ones
    for _ in range(5):  # stable: nothing more to swap
        out = heartbeat(core)
        assert core.mesh(T) == mesh
        assert not [p for peer in peers for c in control_to(out, peer) for p in c.prune]


def test_d_near_trims_only_what_it_grafted_itself() -> None:
    """Peers that grafted us keep their place (the spec's D..D_hi slack: a
    newcomer, or a peer that counts us among its nearest when we do not count
    it among ours); only our own far picks give way to near peers."""
    core = make(GossipSubParams(d_near=2))
    peers = [b"p%02d" % i for i in range(30)]
    order = by_distance(peers)
    newcomer = order[0]  # nearer than any peer there at the first heartbeat
    for peer in peers:
        if peer != newcomer:
            join(core, peer)
    core.handle(0.0, Subscribe(T))
    heartbeat(core)
    assert len(core.mesh(T)) == 6 and set(order[1:3]) <= core.mesh(T)
    far = [p for p in reversed(order) if p not in core.mesh(T)][:3]
    for peer in far:  # three far peers graft us: accepted, as the spec has it
        core.handle(0.0, RpcReceived(peer, Rpc(control=Control(graft=(Graft(T),)))))
    assert set(far) <= core.mesh(T)
    mine_before = core.mesh(T) - set(far)
    join(core, newcomer)
    heartbeat(core)  # the newcomer is among the 2 nearest: grafted, and one of our own far picks makes room
    mesh = core.mesh(T)
    assert newcomer in mesh and set(far) <= mesh
    assert len(mine_before - mesh) == 1 and core.stats.near_trimmed == 1
    for _ in range(5):  # then it stays
        out = heartbeat(core)
        assert core.mesh(T) == mesh
        assert not [p for peer in peers for c in control_to(out, peer) for p in c.prune]


def test_d_near_mesh_below_d_lo_fills_with_long_links_too() -> None:
    """Near grafts alone can lift a mesh past D_lo with no member outside the
    near set; it still gets D - d_near long links (an all-near mesh can split)."""
    from agentp2p.protocol.gossipsub.events import PeerDisconnected

    core = make(GossipSubParams(d=8, d_near=6))  # D_lo 5
    peers = [b"p%02d" % i for i in range(40)]
    order = by_distance(peers)
    for peer in peers:
        join(core, peer)
    core.handle(0.0, Subscribe(T))
    mesh = core.mesh(T)
    assert set(order[:6]) <= mesh and len(mesh) == 8
    for peer in sorted(mesh - set(order[:2])):  # 4 near and both long links go
        core.handle(0.0, PeerDisconnected(peer))
    heartbeat(core)  # 2 left, below D_lo: the 4 next nearest come, and 2 long links
    mesh = core.mesh(T)
    near = set(order[:2]) | set(by_distance([p for p in peers if p in mesh or p not in order[:8]])[:6])
    assert len(mesh) == 8 and len(mesh - near) == 2


def test_d_near_a_pick_that_reconnects_and_grafts_us_is_theirs() -> None:
    """A peer we grafted that drops, comes back and grafts us within one
    heartbeat chose us: it is not ours to trim."""
    from agentp2p.protocol.gossipsub.events import PeerDisconnected

    core = make(GossipSubParams(d_near=2))
    peers = [b"p%02d" % i for i in range(30)]
    order = by_distance(peers)
    newcomer = order[0]
    for peer in peers:
        if peer != newcomer:
            join(core, peer)
    core.handle(0.0, Subscribe(T))
    heartbeat(core)
    far = sorted(core.mesh(T) - set(order[:3]))
    now = core.next_deadline() - 0.5
    for x in far:  # every far pick of ours drops, comes back and grafts us
        core.handle(now, PeerDisconnected(x))
        join(core, x, now=now)
        core.handle(now, RpcReceived(x, Rpc(control=Control(graft=(Graft(T),)))))
    join(core, newcomer, now=now)
    heartbeat(core)  # the newcomer is near: grafted; only our own far picks may make room, and none is left
    assert newcomer in core.mesh(T) and set(far) <= core.mesh(T)
    assert core.stats.near_trimmed == 0


def test_d_near_a_near_peer_that_refuses_costs_no_long_link() -> None:
    """Our nearest peer is popular (at its D_hi) and refuses every GRAFT: each
    time its backoff runs out we graft it again, but none of our long links
    is pruned to make room for a GRAFT that was not answered yet."""
    core = make(GossipSubParams(d_near=2))
    peers = [b"p%02d" % i for i in range(30)]
    hub = by_distance(peers)[0]
    for peer in peers:
        join(core, peer)
    out = core.handle(0.0, Subscribe(T))
    ours_pruned = refusals = 0
    for _ in range(200):  # 200 s: three backoffs of the hub
        if any(c.graft for c in control_to(out, hub)):
            refusals += 1
            core.handle(core.next_deadline() - 0.5, RpcReceived(hub, Rpc(control=Control(prune=(Prune(T, (), 60),)))))
        out = heartbeat(core)
        ours_pruned += sum(len(c.prune) for peer in peers for c in control_to(out, peer))
    assert refusals >= 3 and ours_pruned == 0 and len(core.mesh(T)) >= 6


def test_d_near_skips_peers_backing_off_and_negative_scores() -> None:
    scorer = ScriptedScorer()
    core = make(GossipSubParams(d_near=2), scorer=scorer)
    peers = [b"p%02d" % i for i in range(30)]
    for peer in peers:
        join(core, peer)
    order = by_distance(peers)
    scorer.scores[order[0]] = -1.0  # the nearest misbehaves
    core.handle(0.0, Subscribe(T))
    assert order[1] in core.mesh(T) and order[0] not in core.mesh(T)
    core.handle(0.0, RpcReceived(order[1], Rpc(control=Control(prune=(Prune(T, (), 60),)))))  # the 2nd prunes us
    for _ in range(3):
        heartbeat(core)
    mesh = core.mesh(T)
    assert order[0] not in mesh and order[1] not in mesh
    assert set(order[2:4]) <= mesh


def test_survivors_keep_near_peers_after_the_best_scores() -> None:
    mesh = [b"%02d" % i for i in range(13)]
    near = {b"09", b"10"}
    for seed in range(5):
        keep = survivors(mesh, d=6, d_score=4, d_out=0, score=lambda p: -int(p), outbound=lambda p: False,
                         rng=random.Random(seed), near=near)
        assert set(keep) == {b"00", b"01", b"02", b"03", b"09", b"10"}
    # The best scores still come first: near peers fill what d_score leaves.
    keep = survivors(mesh, d=4, d_score=4, d_out=0, score=lambda p: -int(p), outbound=lambda p: False,
                     rng=random.Random(0), near=near)
    assert set(keep) == {b"00", b"01", b"02", b"03"}


def test_d_near_leaves_a_long_link() -> None:
    GossipSubParams(d_near=5)
    with pytest.raises(ValueError, match="d_near"):
        GossipSubParams(d_near=6)


def test_d_near_keeps_the_outbound_quota_beside_its_near_slots() -> None:
    """D 6 with 5 near slots leaves one long link, but the outbound quota (2)
    still holds: the trim keeps outbound picks past D - d_near instead of
    grafting and pruning one at every heartbeat (an earlier version did)."""
    core = make(GossipSubParams(d_near=5))
    peers = [b"p%02d" % i for i in range(40)]
    order = by_distance(peers)
    dialed = set(order[-6:])  # the only outbound peers are far ones
    for peer in peers:
        join(core, peer, outbound=peer in dialed)
    core.handle(0.0, Subscribe(T))
    grafts = prunes = 0
    for _ in range(30):
        out = heartbeat(core)
        mesh = core.mesh(T)
        assert sum(1 for p in mesh if p in dialed) >= 2 and len(mesh) >= 6
        grafts += sum(len(c.graft) for peer in peers for c in control_to(out, peer))
        prunes += sum(len(c.prune) for peer in peers for c in control_to(out, peer))
    assert set(order[:5]) <= mesh
    assert prunes <= 1 and grafts <= 2


def test_inbound_graft_refused_at_d_hi_outbound_accepted() -> None:
    core = make(GossipSubParams(d=2, d_lo=1, d_hi=3, d_out=0, d_score=1))
    core.handle(0.0, Subscribe(T))
    for i in range(3):
        join(core, b"in%d" % i)
        core.handle(0.0, RpcReceived(b"in%d" % i, Rpc(control=Control(graft=(Graft(T),)))))
    assert len(core.mesh(T)) == 3
    join(core, b"late")
    out = core.handle(0.0, RpcReceived(b"late", Rpc(control=Control(graft=(Graft(T),)))))
    assert b"late" not in core.mesh(T)
    assert [p.topic for c in control_to(out, b"late") for p in c.prune] == [T]
    join(core, b"mine", outbound=True)
    core.handle(0.0, RpcReceived(b"mine", Rpc(control=Control(graft=(Graft(T),)))))
    assert b"mine" in core.mesh(T)


def test_graft_for_unknown_topic_is_ignored_silently() -> None:
    core = make()
    join(core, b"x")
    out = core.handle(0.0, RpcReceived(b"x", Rpc(control=Control(graft=(Graft("other"),)))))
    assert control_to(out, b"x") == []


def test_negative_score_peers_are_pruned_without_px_and_not_regrafted() -> None:
    scorer = ScriptedScorer()
    core = make(GossipSubParams(do_px=True), scorer=scorer)
    for i in range(8):
        join(core, b"p%d" % i)
    core.handle(0.0, Subscribe(T))
    bad = sorted(core.mesh(T))[0]
    scorer.scores[bad] = -1.0
    out = heartbeat(core)
    assert bad not in core.mesh(T)
    (prune,) = [p for c in control_to(out, bad) for p in c.prune]
    assert prune.peers == ()
    assert ("prune", bad, T) in scorer.calls


def test_d_out_quota_grafts_outbound_peers() -> None:
    core = make()
    for i in range(8):
        join(core, b"in%d" % i)
    core.handle(0.0, Subscribe(T))
    join(core, b"out0", outbound=True)
    join(core, b"out1", outbound=True)
    heartbeat(core)
    assert {b"out0", b"out1"} <= core.mesh(T)


def test_opportunistic_graft_adds_better_peers_when_median_is_low() -> None:
    scorer = ScriptedScorer()
    params = GossipSubParams(opportunistic_graft_ticks=1, d_hi=20)
    core = make(params, scorer=scorer, thresholds=Thresholds(opportunistic_graft=1.0))
    for i in range(6):
        join(core, b"m%d" % i)
    core.handle(0.0, Subscribe(T))
    assert len(core.mesh(T)) == 6
    for i in range(3):
        join(core, b"good%d" % i)
        scorer.scores[b"good%d" % i] = 5.0
    heartbeat(core)
    assert len(core.mesh(T) & {b"good0", b"good1", b"good2"}) == 2  # opportunistic_graft_peers
