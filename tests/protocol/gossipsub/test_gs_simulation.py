"""Many routers in one in-memory network (simnet.py), virtual time, fixed seeds:
everyone subscribed gets every message exactly once, meshes settle in bounds
and symmetric, and a forged message reaches nobody."""

from __future__ import annotations

import pytest

from agentp2p.protocol.gossipsub.codec import seqno_bytes
from agentp2p.protocol.gossipsub.events import Publish, RpcReceived, Subscribe
from agentp2p.protocol.gossipsub.params import GossipSubParams
from agentp2p.protocol.gossipsub.rpc import Message, Rpc
from agentp2p.protocol.gossipsub.score import PeerScore
from agentp2p.protocol.gossipsub.score_params import PeerScoreThresholds, default_score_params
from agentp2p.protocol.gossipsub.simnet import SimNet

T = "t"


def network(n: int = 30, *, seed: int = 7, degree: int = 3, protocols: tuple[str, ...] = ("/meshsub/1.2.0",),
            params: GossipSubParams | None = None, scored: bool = False, subscribers: int | None = None) -> SimNet:
    net = SimNet(seed=seed)
    peers = [b"node-%03d" % i for i in range(n)]
    for i, p in enumerate(peers):
        kw = {"scorer": PeerScore(default_score_params([T]), PeerScoreThresholds(), 0.0)} if scored else {}
        net.add(p, params=params, protocol=protocols[i % len(protocols)], **kw)
    net.connect_random(degree)
    for p in peers[: subscribers if subscribers is not None else n]:
        net.handle(p, Subscribe(T))
    net.run(5.0)
    return net


def publish_all(net: SimNet, publishers: list[bytes], gap: float = 0.3) -> None:
    for p in publishers:
        net.handle(p, Publish(T, p + b" says hi"))
        net.run(net.now + gap)
    net.run(net.now + 5.0)


def assert_meshes_healthy(net: SimNet, params: GossipSubParams) -> None:
    for p, core in net.cores.items():
        mesh = core.mesh(T)
        assert len(mesh) <= params.d_hi, p
        assert len(mesh) >= min(params.d_lo, len(core.peers(T))), p
        for q in mesh:  # links are symmetric once the GRAFT/PRUNE traffic settles
            assert p in net.cores[q].mesh(T), (p, q)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_subscriber_gets_every_message_once(seed: int) -> None:
    net = network(seed=seed)
    assert_meshes_healthy(net, GossipSubParams())
    peers = sorted(net.cores)
    publish_all(net, peers[::5])
    for p in peers:
        got = net.logs[p].delivered
        assert len(got) == 6 and len(set(got)) == 6, p
    assert_meshes_healthy(net, GossipSubParams())


def test_mixed_protocol_versions_and_mesh_only_forwarding() -> None:
    params = GossipSubParams(flood_publish=False)
    net = network(seed=4, params=params, protocols=("/meshsub/1.2.0", "/meshsub/1.1.0", "/meshsub/1.0.0"))
    publish_all(net, sorted(net.cores)[:3])
    assert all(len(set(log.delivered)) == 3 for log in net.logs.values())
    assert_meshes_healthy(net, params)


def test_publishers_outside_the_topic_use_fanout() -> None:
    params = GossipSubParams(flood_publish=False)
    net = network(seed=5, params=params, subscribers=20)
    outsiders = sorted(net.cores)[20:]
    publish_all(net, outsiders[:3])
    for p in sorted(net.cores)[:20]:
        assert len(set(net.logs[p].delivered)) == 3, p
    assert any(net.cores[p].fanout(T) for p in outsiders[:3])


def test_with_peer_scoring_everything_still_arrives() -> None:
    net = network(seed=6, scored=True)
    peers = sorted(net.cores)
    publish_all(net, peers[::3], gap=0.5)
    assert all(len(set(log.delivered)) == 10 for log in net.logs.values())
    assert all(c.score(q) >= 0 for c in net.cores.values() for q in c.mesh(T))


def test_forged_message_reaches_nobody() -> None:
    net = network(seed=8)
    peers = sorted(net.cores)
    liar, victim = peers[0], peers[1]
    forged = Message(T, b"forged", victim, seqno_bytes(1), b"\x01" * 32)
    for q in sorted(net.cores[liar].peers(T)):
        net.schedule(q, RpcReceived(liar, Rpc(publish=(forged,))), 0.01)
    net.run(net.now + 5.0)
    assert all(not log.delivered for log in net.logs.values())
    rejected = sum(c.stats.rejected.get("invalid_signature", 0) for c in net.cores.values())
    assert rejected == len(net.cores[liar].peers(T))


def test_simulation_is_deterministic() -> None:
    def run() -> tuple:
        net = network(seed=9)
        publish_all(net, sorted(net.cores)[:2])
        return tuple((p, tuple(sorted(c.mesh(T))), c.stats.duplicates) for p, c in sorted(net.cores.items()))

    assert run() == run()
