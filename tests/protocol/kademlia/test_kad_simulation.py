"""Many cores on virtual time (simnet): every node finds every provider record.

Run with ``-s`` to see the cost: hops and messages per lookup.
"""

from __future__ import annotations

import statistics

from agentp2p.protocol.kademlia import (
    FindProviders,
    GetValue,
    KademliaConfig,
    NamespacedValidator,
    Provide,
    PutValue,
    StartLookup,
)
from agentp2p.protocol.kademlia.simnet import SimNet

from .kadhelpers import SeqValidator, closest_to

CFG = KademliaConfig(refresh_interval=1e9, refresh_check_interval=1e9)


def _summary(name: str, finished: list) -> str:  # type: ignore[type-arg]
    hops = [f.stats.hops for f in finished]
    reqs = [f.stats.requests for f in finished]
    return (f"{name}: {len(finished)} lookups, hops mean {statistics.mean(hops):.2f} max {max(hops)}, "
            f"requests mean {statistics.mean(reqs):.2f} max {max(reqs)}")


def test_200_nodes_every_node_finds_every_provider() -> None:
    net = SimNet(seed=7, config=CFG)
    peers = net.bootstrap(200)
    sizes = [len(net.nodes[p].core.table) for p in peers]
    boot_requests = net.stats.requests
    keys = [b"cid-%d" % i for i in range(5)]
    providers = {k: peers[net.rng.randrange(len(peers))] for k in keys}
    for k, p in providers.items():
        net.input(p, Provide(("provide", k), k))
    net.run_queries(120.0)
    for k, p in providers.items():
        assert net.nodes[p].finished[("provide", k)].result.announced == 20
    before = net.stats.requests
    for p in peers:
        for k in keys:
            net.input(p, FindProviders(("find", k), k, count=1))
    net.run_queries(300.0)
    found = [net.nodes[p].finished[("find", k)] for p in peers for k in keys]
    misses = [(p, k) for p in peers for k in keys
              if [x.id for x in net.nodes[p].finished[("find", k)].result.providers] != [providers[k]]]
    assert not misses
    assert max(f.stats.hops for f in found) <= 6
    print(f"\n200 nodes: table size mean {statistics.mean(sizes):.1f} (min {min(sizes)}), "
          f"bootstrap {boot_requests} requests; "
          + _summary("find providers", found)
          + f"; {(net.stats.requests - before) / len(found):.2f} messages per lookup")


def test_200_nodes_lookups_find_true_closest_and_values_reach_quorum() -> None:
    net = SimNet(seed=3, config=CFG, validator=NamespacedValidator({"v": SeqValidator()}))
    peers = net.bootstrap(200)
    lookups = []
    for i, p in enumerate(peers[::10]):
        net.input(p, StartLookup(("l", i), b"target-%d" % i))
    net.run_queries(120.0)
    exact = 0
    for i, p in enumerate(peers[::10]):
        f = net.nodes[p].finished[("l", i)]
        lookups.append(f)
        truth = set(closest_to(b"target-%d" % i, [q for q in peers if q != p]))
        got = {x.id for x in f.result.peers}
        assert len(got & truth) >= 18  # Kademlia's guarantee is probabilistic; ours is near-exact here
        exact += got == truth
    writer, readers = peers[0], peers[1::20]
    net.input(writer, PutValue("put", b"/v/name", b"1:hello", quorum=10))
    net.run_queries(60.0)
    assert net.nodes[writer].finished["put"].result.quorum_met
    for i, r in enumerate(readers):
        net.input(r, GetValue(("get", i), b"/v/name", quorum=3))
    net.run_queries(60.0)
    gets = [net.nodes[r].finished[("get", i)] for i, r in enumerate(readers)]
    assert all(g.result.value == b"1:hello" and g.result.quorum_met for g in gets)
    print(f"\n{_summary('FIND_NODE', lookups)}, {exact}/{len(lookups)} exactly the true 20 closest; "
          + _summary("GET_VALUE quorum 3", gets))


def test_provider_records_survive_a_fifth_of_the_nodes_vanishing() -> None:
    net = SimNet(seed=11, config=KademliaConfig(refresh_interval=1e9, refresh_check_interval=1e9,
                                                request_timeout=2.0))
    peers = net.bootstrap(150)
    net.input(peers[0], Provide("p", b"cid"))
    net.run_queries(60.0)
    gone = set(peers[1::5])
    net.offline |= gone
    alive = [p for p in peers if p not in gone]
    for p in alive:
        net.input(p, FindProviders("f", b"cid", count=1))
    net.run_queries(300.0)
    found = [net.nodes[p].finished["f"] for p in alive]
    assert all(f.result.providers for f in found)
    print("\n" + _summary("150 nodes, 30 silently gone", found)
          + f", failures mean {statistics.mean(f.stats.failures for f in found):.2f}")
