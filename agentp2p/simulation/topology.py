"""Small-world measures of a graph: clustering, path lengths, degrees (issue #14).

Pure functions over an undirected graph given as ``{node: set(neighbours)}``
(or any mapping to iterables). The original design asks for a small-world
network: a clustering coefficient above 0.5 with short paths. For reference,
a random graph of n nodes and mean degree k has clustering about k / n and
paths of about ln n / ln k hops; a ring lattice has clustering 0.5-0.75 and
paths of about n / 2k; Watts and Strogatz's rewired lattice keeps the first's
clustering with the second's short paths.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GraphFigures", "average_clustering", "figures", "local_clustering", "path_lengths", "undirected"]

Graph = Mapping[int, Iterable[int]]


def undirected(graph: Graph) -> dict[int, set[int]]:
    """Every edge both ways (a mesh link known by one side only still counts)."""
    out: dict[int, set[int]] = {v: set() for v in graph}
    for v, ns in graph.items():
        for u in ns:
            if u == v:
                continue
            out[v].add(u)
            out.setdefault(u, set()).add(v)
    return out


def local_clustering(g: Mapping[int, set[int]], v: int) -> float:
    """Share of the pairs of ``v``'s neighbours that are neighbours themselves (0 below degree 2)."""
    ns = g[v]
    k = len(ns)
    if k < 2:
        return 0.0
    links = sum(len(g[u] & ns) for u in ns) / 2
    return links / (k * (k - 1) / 2)


def average_clustering(g: Mapping[int, set[int]]) -> float:
    """Watts–Strogatz's C: the mean local clustering over every node."""
    return sum(local_clustering(g, v) for v in g) / len(g) if g else 0.0


def path_lengths(g: Mapping[int, set[int]], sources: Iterable[int]) -> Counter[int]:
    """Hop counts from each source to every node it reaches (BFS); unreachable pairs are left out."""
    hist: Counter[int] = Counter()
    for s in sources:
        seen = {s: 0}
        queue = deque([s])
        while queue:
            v = queue.popleft()
            d = seen[v] + 1
            for u in g[v]:
                if u not in seen:
                    seen[u] = d
                    hist[d] += 1
                    queue.append(u)
    return hist


@dataclass(frozen=True)
class GraphFigures:
    nodes: int
    edges: int
    mean_degree: float
    clustering: float
    #: mean hops between two nodes (over the pairs from ``sources``), and the longest seen
    mean_path: float
    max_path: int
    #: share of (source, node) pairs connected at all
    reachable: float
    degree_histogram: dict[int, int]
    path_histogram: dict[int, int]

    @property
    def random_clustering(self) -> float:
        """What a random graph of the same size and mean degree would have."""
        return self.mean_degree / max(1, self.nodes - 1)

    def as_dict(self, digits: int | None = None) -> dict[str, Any]:
        """Every figure, ``random_clustering`` included (for JSON reports);
        the fractional ones rounded to ``digits`` if given."""
        def r(x: float) -> float:
            return x if digits is None else round(x, digits)

        return {"nodes": self.nodes, "edges": self.edges, "mean_degree": r(self.mean_degree),
                "clustering": r(self.clustering), "random_clustering": r(self.random_clustering),
                "mean_path": r(self.mean_path), "max_path": self.max_path, "reachable": r(self.reachable),
                "degree_histogram": dict(self.degree_histogram), "path_histogram": dict(self.path_histogram)}


def figures(graph: Graph, *, sources: int = 200, seed: int = 1) -> GraphFigures:
    """The measures of ``graph``; path lengths from ``sources`` random nodes (all if fewer)."""
    g = undirected(graph)
    n = len(g)
    degrees = Counter(len(ns) for ns in g.values())
    edges = sum(len(ns) for ns in g.values()) // 2
    nodes = sorted(g)
    picked = nodes if len(nodes) <= sources else random.Random(seed).sample(nodes, sources)
    hist = path_lengths(g, picked)
    pairs = sum(hist.values())
    return GraphFigures(
        nodes=n,
        edges=edges,
        mean_degree=2 * edges / n if n else 0.0,
        clustering=average_clustering(g),
        mean_path=sum(d * c for d, c in hist.items()) / pairs if pairs else 0.0,
        max_path=max(hist) if hist else 0,
        reachable=pairs / (len(picked) * (n - 1)) if n > 1 and picked else 0.0,
        degree_histogram=dict(sorted(degrees.items())),
        path_histogram=dict(sorted(hist.items())),
    )
