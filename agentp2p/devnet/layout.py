"""Where the devnet's nodes live and whom each one bootstraps from.

Pure functions, so the placement and the join pattern can be tested
without processes.

* **Placement.** Node indices are split into contiguous blocks, one per
  worker process, sizes differing by at most one: with 100 nodes in 2
  workers, worker 0 holds 0-49 and worker 1 holds 50-99. Contiguous blocks
  make ``pause`` (a whole worker) easy to predict.
* **Bootstraps.** The first ``seeds`` nodes are the network's bootstrap
  nodes, as a few well-known nodes are in a real deployment: node 0 starts
  alone, the other seeds join it, and every later node bootstraps from up
  to ``k`` seeds picked at random, so the joins spread over the seeds
  instead of all landing on node 0. (``--seeds N`` makes every node a seed:
  nodes then join random nodes already up.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["blocks", "worker_of", "choose_bootstraps", "capability_of"]


def blocks(n_nodes: int, n_workers: int) -> list[range]:
    """Node indices per worker: contiguous, sizes differing by at most one."""
    if n_nodes < 1 or n_workers < 1:
        raise ValueError("need at least one node and one worker")
    n_workers = min(n_workers, n_nodes)
    base, extra = divmod(n_nodes, n_workers)
    out: list[range] = []
    start = 0
    for w in range(n_workers):
        size = base + (1 if w < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def worker_of(index: int, layout: Sequence[range]) -> int:
    for w, block in enumerate(layout):
        if index in block:
            return w
    raise ValueError(f"node {index} is in no worker")


def choose_bootstraps(up: Sequence[int], k: int, rng: random.Random) -> list[int]:
    """Up to ``k`` distinct nodes among ``up`` (the seeds running now), at random."""
    pool = list(dict.fromkeys(up))
    return rng.sample(pool, min(k, len(pool)))


def capability_of(index: int, n_caps: int) -> str:
    """The one capability node ``index`` offers: ``cap-00`` .. round-robin."""
    return f"cap-{index % n_caps:02d}"
