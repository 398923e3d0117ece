"""The devnet's live summary: what the workers report, folded into one line.

Pure: the controller gathers the workers' ``stats`` replies and its own
bookkeeping (killed, paused, the last discovery probe) and hands them here;
:func:`summarize` returns a :class:`Summary` that prints as a line of text
or as a JSON object.

* **SWIM** — the members as the *observer* sees them (node 0, or the first
  running node if node 0 is killed or paused): alive / suspect / dead /
  left, and ``unknown``, running nodes it has no entry for.
* **Mesh** — min / avg / max of each running node's gossipsub mesh on the
  devnet topic (D = 6 by default, kept within [4, 12]).
* **records** — shown while some running nodes have not yet published their
  capability record (they cannot be found until they have).
* **msgs/s** — messages delivered on the devnet topic, summed over the nodes,
  per second since the previous summary.
* **find** — the last discovery probe: a random node's ``find_agents`` of a
  random capability, agents found / live offering agents, and its time.
* **SWIM counters** (``stats`` only, in its JSON) — each running node's SWIM
  counters summed: the suspicions, refutations and spared probes behind a
  slow merge, which the views alone do not show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Summary", "ProbeResult", "RateMeter", "summarize", "swim_counts", "converged"]

SWIM_STATES = ("alive", "suspect", "dead", "left")
#: Per-node counters that are levels or times, not counts: left out of the sum.
PER_NODE_ONLY = frozenset({"awareness", "records_published_after_ms"})


@dataclass(frozen=True)
class ProbeResult:
    """One discovery probe (or ``find`` command)."""

    node: int
    capability: str
    seconds: float
    found: int
    expected: int
    error: str | None = None


@dataclass
class Summary:
    t: float
    nodes: int
    running: int
    paused: int
    killed: int
    failed: int
    observer: int | None
    swim: dict[str, int] = field(default_factory=dict)
    mesh: tuple[int, float, int] | None = None
    #: Running nodes whose record is published (the rest cannot be found yet).
    published: int = 0
    msgs_per_s: float | None = None
    probe: ProbeResult | None = None
    #: Workers that did not answer in time (busy, or gone).
    silent_workers: list[int] = field(default_factory=list)
    #: SWIM's counters (and the node's new connections) per running node,
    #: by index (the ``stats`` command only): how many suspicions,
    #: refutations, spared probes... so far; per node, so that a window's
    #: growth can be taken over the nodes running at both of its ends.
    swim_counters_by_node: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def swim_counters(self) -> dict[str, int]:
        """The same, summed over the running nodes (a Lifeguard score or a
        record's time to publish is per node only: their sum says nothing)."""
        total: dict[str, int] = {}
        for node in self.swim_counters_by_node.values():
            for k, v in node.items():
                if k not in PER_NODE_ONLY:
                    total[k] = total.get(k, 0) + v
        return total

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["t"] = round(self.t, 1)
        d["mesh"] = None if self.mesh is None else {"min": self.mesh[0], "avg": round(self.mesh[1], 2),
                                                    "max": self.mesh[2]}  # fmt: skip
        if self.msgs_per_s is not None:
            d["msgs_per_s"] = round(self.msgs_per_s, 1)
        if d["swim_counters_by_node"]:
            d["swim_counters"] = self.swim_counters
        else:
            del d["swim_counters_by_node"]  # asked for by ``stats`` only
        return d

    def text(self) -> str:
        parts = [f"[{self.t:6.1f}s] nodes {self.running}/{self.nodes} running"]
        extra = [f"{n} {what}" for n, what in ((self.paused, "paused"), (self.killed, "killed"),
                                               (self.failed, "failed")) if n]  # fmt: skip
        if extra:
            parts[0] += f" ({', '.join(extra)})"
        if self.observer is None:
            parts.append("swim: no observer")
        elif not self.swim:
            parts.append(f"swim@{self.observer}: no answer")
        else:
            s = self.swim
            unknown = f" unknown {s['unknown']}" if s.get("unknown") else ""
            left = f" left {s['left']}" if s.get("left") else ""
            parts.append(f"swim@{self.observer} alive {s.get('alive', 0)} suspect {s.get('suspect', 0)} "
                         f"dead {s.get('dead', 0)}{left}{unknown}")  # fmt: skip
        if self.mesh is not None:
            lo, avg, hi = self.mesh
            parts.append(f"mesh {lo}/{avg:.1f}/{hi}")
        if self.published < self.running:
            parts.append(f"records {self.published}/{self.running}")
        if self.msgs_per_s is not None:
            parts.append(f"msgs/s {self.msgs_per_s:.1f}")
        if self.probe is not None:
            p = self.probe
            if p.error:
                parts.append(f"find {p.capability}@{p.node}: {p.error}")
            else:
                parts.append(f"find {p.capability}@{p.node} {p.found}/{p.expected} in {p.seconds:.2f}s")
        if self.silent_workers:
            parts.append("no answer from worker " + ",".join(map(str, self.silent_workers)))
        return " | ".join(parts)


class RateMeter:
    """Deliveries per second from per-node cumulative counters (nodes that
    vanish or reappear between two readings do not distort the rate)."""

    def __init__(self) -> None:
        self._last: dict[int, int] = {}
        self._at: float | None = None

    def update(self, now: float, counters: Mapping[int, int]) -> float | None:
        rate = None
        if self._at is not None and now > self._at:
            delta = sum(max(0, c - self._last[i]) for i, c in counters.items() if i in self._last)
            rate = delta / (now - self._at)
        self._last = dict(counters)
        self._at = now
        return rate


def swim_counts(states: Iterable[str], unknown: int = 0) -> dict[str, int]:
    counts = dict.fromkeys(SWIM_STATES, 0)
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    counts["unknown"] = unknown
    return counts


def converged(view: Mapping[int, str], expected_alive: Iterable[int]) -> bool:
    """Does the observer's view (node index -> SWIM state, observer excluded)
    hold exactly ``expected_alive`` alive, and nothing else alive?"""
    alive = {i for i, s in view.items() if s == "alive"}
    return alive == set(expected_alive)


def summarize(
    *,
    t: float,
    nodes: int,
    node_stats: Iterable[Mapping[str, Any]],
    paused: set[int],
    observer: int | None,
    view: Mapping[int, str] | None,
    running_expected: Iterable[int],
    msgs_per_s: float | None,
    probe: ProbeResult | None,
    silent_workers: list[int],
) -> Summary:
    """Fold the workers' per-node stats into a :class:`Summary`.

    ``view`` is the observer's SWIM view by node index; ``running_expected``
    the running nodes other than the observer (to count those it does not know).
    """
    stats = list(node_stats)
    running = [s for s in stats if s.get("running") and s["index"] not in paused]
    killed = sum(1 for s in stats if s.get("killed"))
    failed = sum(1 for s in stats if s.get("error") and not s.get("killed"))
    meshes = [int(s["mesh"]) for s in running if "mesh" in s]
    mesh = (min(meshes), sum(meshes) / len(meshes), max(meshes)) if meshes else None
    published = sum(1 for s in running if s.get("published"))
    by_node = {int(s["index"]): {k: int(v) for k, v in s["swim_counters"].items()}
               for s in running if "swim_counters" in s}  # fmt: skip
    swim: dict[str, int] = {}
    if view is not None:
        unknown = len(set(running_expected) - set(view))
        swim = swim_counts(view.values(), unknown)
    return Summary(
        t=t, nodes=nodes, running=len(running), paused=len(paused), killed=killed, failed=failed,
        observer=observer, swim=swim, mesh=mesh, published=published, msgs_per_s=msgs_per_s, probe=probe,
        silent_workers=silent_workers, swim_counters_by_node=by_node,
    )  # fmt: skip
