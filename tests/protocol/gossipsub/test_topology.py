"""The small-world measures against graphs whose values are known by hand."""

from __future__ import annotations

import math

from agentp2p.simulation.topology import average_clustering, figures, local_clustering, undirected


def ring_lattice(n: int, k: int) -> dict[int, set[int]]:
    """Each node linked to its k nearest on each side."""
    return {v: {(v + d) % n for d in range(-k, k + 1) if d} for v in range(n)}


def test_known_values() -> None:
    triangle_with_tail = undirected({0: {1, 2}, 1: {2}, 2: {3}})  # edges given one way only
    assert local_clustering(triangle_with_tail, 0) == 1.0
    assert local_clustering(triangle_with_tail, 2) == 1 / 3
    assert local_clustering(triangle_with_tail, 3) == 0.0
    # A ring lattice with k = 2 per side: C = 3(k-1) / 2(2k-1) = 0.5.
    ring = ring_lattice(100, 2)
    assert math.isclose(average_clustering(ring), 0.5)
    f = figures(ring, sources=100)
    assert f.nodes == 100 and f.edges == 200 and f.mean_degree == 4.0 and f.reachable == 1.0
    assert f.max_path == 25 and f.degree_histogram == {4: 100}
    assert math.isclose(f.mean_path, sum(math.ceil(d / 2) for d in range(1, 51)) * 2 / 99 - 25 / 99)


def test_two_components_are_reported_as_such() -> None:
    f = figures({0: {1}, 1: {0}, 2: {3}, 3: {2}}, sources=4)
    assert f.reachable == 1 / 3 and f.mean_path == 1.0


def test_nearest_points_match_a_brute_force_search() -> None:
    import random

    from agentp2p.simulation.gossipsub import _nearest

    rng = random.Random(3)
    pos = [(rng.random(), rng.random()) for _ in range(400)]
    near = _nearest(pos, 6)
    for i in range(0, 400, 7):
        brute = sorted((j for j in range(400) if j != i),
                       key=lambda j: math.hypot(pos[j][0] - pos[i][0], pos[j][1] - pos[i][1]))[:6]
        assert near[i] == brute


def test_near_dials_raise_the_clustering_of_the_simulated_network() -> None:
    import pytest

    from agentp2p.simulation.gossipsub import GossipSimConfig, GossipSimulation

    def connections(**kw) -> float:  # type: ignore[no-untyped-def]
        sim = GossipSimulation(GossipSimConfig(n=300, seed=2, warmup=0.0, duration=0.0, rate=0.0, **kw))
        return figures({i: set(sim.adj[i]) for i in range(300)}, sources=50).clustering

    random_c, near_c = connections(), connections(geometry=True, near_dials=10)
    assert random_c < 0.15 and near_c > 2 * random_c
    with pytest.raises(ValueError, match="needs geometry"):
        GossipSimConfig(near_dials=3)
