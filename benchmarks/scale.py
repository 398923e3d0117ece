"""Whole-network figures (issue #14): the topology agentp2p builds today, and the whole node simulated.

    .venv/bin/python benchmarks/scale.py topology [--nodes 1000,10000] [--variants random,xor-near16-d7-near5,...]
                                                  [--deliver S] [--warmup S] [--seed N] [--json]
    .venv/bin/python benchmarks/scale.py whole [--nodes 1000] [--join-rate R | --storm] [--swim on|off]
                                               [--loss P] [--no-conn-manager] [--connect-ahead K] [--seed N]
                                               [--degree D] [--degree-near K] [--publish-s S] [--settle S]
                                               [--crash-wait S] [--heal-wait S] [--heal-probe-every S]
                                               [--swim-start join|warm] [--crash-share F] [--newcomers N]
                                               [--partition-s S]
    .venv/bin/python benchmarks/scale.py merge [--nodes 500] [--connect-ahead K] [--seed N] [--swim-start join|warm]
    .venv/bin/python benchmarks/scale.py churn [--nodes 1000] [--churn 0.1] [--duration 600] [--rate 1] [--swim on|off] [--seed N]
    .venv/bin/python benchmarks/scale.py join [--nodes 2000] [--join-rate R | --storm] [--swim on|off]
                                              [--pressure-interval S] [--seed N]

Every subcommand sets the garbage collector's first threshold to
``--gc-young`` (100,000; CPython's is 700) and records it in the JSON of
``whole`` and ``churn``: the simulator's figures do not depend on it, its
wall time does.

``whole``: the whole-node simulator (agentp2p/simulation/whole_node.py: every
node's SWIM, Kademlia and gossipsub cores on one clock, coupled by their
connections) builds the network (bootstrap nodes, then ``--join-rate``
joins a second, or all in 60 s with ``--storm``), lets it settle, and then
measures in turn: idle traffic and load per node (``--idle`` seconds of it),
newcomers finding agents,
publishing, 1 % of the nodes crashing at once (``--crash-share``), and a
partition in two halves that heals after 30 s (``--partition-s``; 0: none,
the run ends after the crash). ``--swim-start warm`` starts SWIM on every
node only once the network is built, each view the whole network in one
shared roster (what fits SWIM at 10,000 nodes in memory). See docs/scale.md
for the model and the figures.

``join``: the build alone, each join split into the wait for a first
bootstrap connection and the DHT work up to the announced record (a join
storm: docs/scale.md, "Joining in a storm"). ``--pressure-interval 0`` runs
the connection manager as before 2026-12-04 (rounds every interval only).

``merge``: the same simulator with SWIM alone on stage: build, settle 60 s,
split in two random halves for 30 s, heal, and follow each second for 60 s
how many nodes' views still miss live members. Takes ``--nodes``,
``--connect-ahead``, ``--seed``, ``--join-rate``, ``--loss``,
``--probe-connected``, ``--roster-every`` and ``--swim-start``; SWIM is
always on and the connection manager always runs.

``churn``: the same simulator builds and settles the network, then replaces
``--churn`` of it per hour (crashes and fresh joins, each a Poisson process)
for ``--duration`` virtual seconds while random nodes publish (``--rate``, 1 msg/s) and
look agents up (one every 2 s); reports delivery to every node that had
joined before each message, lookups found, and how long arrivals took to join.

``topology``: runs the gossipsub simulator (agentp2p/simulation/gossipsub.py,
the node's own router core on virtual time) until its meshes have formed,
then measures two graphs with agentp2p/simulation/topology.py:

* the **connection graph** (who holds a connection to whom: every node
  dials ``dial`` random others, as bootstrap plus DHT lookups roughly do,
  or, in the ``xor-*`` variants, mostly its nearest in XOR space);
* the **mesh graph** of the topic (the peers each node exchanges full
  messages with: gossipsub's D = 6 mesh, chosen at random among
  connections, then kept by score; with ``-near K``, K of its slots kept
  for the XOR-nearest, the router's ``d_near``).

For each: nodes, edges, mean degree, the clustering coefficient (and what a
random graph of that size and degree has), the mean and longest path in
hops, and the degree and path-length histograms. The original design asks
for clustering > 0.5 with short paths; this shows where random choices
stand and what choosing near neighbours changes (docs/scale.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import commit  # noqa: E402
from agentp2p.simulation.gossipsub import GossipSimConfig, GossipSimulation
from agentp2p.simulation.topology import GraphFigures, figures


#: The collector's first threshold in a simulation: a 1,000-node build spent
#: 45 of its 179 s in collections with CPython's 700 (28 s in full ones, which
#: walk the whole simulated network), 5 of 149 s with this; the figures are
#: the same, as the simulator's clock is virtual.
GC_YOUNG = 100_000


def _row(name: str, f: GraphFigures) -> str:
    return (f"  {name:11s} {f.nodes:7,d} {f.edges:9,d} {f.mean_degree:7.1f} {f.clustering:8.3f} "
            f"{f.random_clustering:9.4f} {f.mean_path:7.2f} {f.max_path:5d} {f.reachable:7.1%}")


#: The networks compared: name -> (geometry, near metric, near_dials of the dials, dials, router's D, d_near).
VARIANTS = {
    "random": (False, "plane", 0, 12, 6, 0),  # today: independent per-link latency, random dials
    "plane": (True, "plane", 0, 12, 6, 0),  # nodes on a plane, latency from distance, still random dials
    "plane-near6": (True, "plane", 6, 12, 6, 0),  # half the dials to the nearest nodes, half random
    "plane-near10": (True, "plane", 10, 12, 6, 0),  # most dials near, two long links (Watts–Strogatz-like)
    # XOR space (the DHT's): a node's nearest by ID hash, as its Kademlia neighbourhood is
    "xor-near10": (False, "xor", 10, 12, 6, 0),
    "xor-near16": (False, "xor", 16, 18, 6, 0),
    "random-d8-near6": (False, "plane", 0, 12, 8, 6),  # random connections, near-preferring meshes
    "xor-near16-d6-near4": (False, "xor", 16, 18, 6, 4),  # ... and the router keeps d_near of D for the nearest
    "xor-near16-d7-near5": (False, "xor", 16, 18, 7, 5),
    "xor-near16-d8-near7": (False, "xor", 16, 18, 8, 7),
    "xor-near16-d7-near6": (False, "xor", 16, 18, 7, 6),
    "xor-near16-d8-near6": (False, "xor", 16, 18, 8, 6),
}


def topology(n: int, warmup: float, seed: int, variant: str = "random", deliver: float = 0.0) -> dict[str, Any]:
    """The graphs once the meshes formed; with ``deliver`` seconds, also a
    publishing window (2 msg/s) through the same network: delivery and latency."""
    geometry, metric, near, dial, d, d_near = VARIANTS[variant]
    t0 = time.perf_counter()
    base = GossipSimConfig()
    params = dataclasses.replace(base.params, d=d, d_lo=min(base.params.d_lo, d), d_near=d_near)
    cfg = GossipSimConfig(n=n, seed=seed, warmup=warmup, duration=deliver, rate=2.0 if deliver else 0.0,
                          geometry=geometry, near_dials=near, near_metric=metric, dial=dial, params=params)
    sim = GossipSimulation(cfg)
    sim.run_until(warmup)
    topic = sim.topics[0]
    conn = {i: set(sim.adj[i]) for i in range(n)}
    mesh = {}
    for i, core in enumerate(sim.cores):
        if core is not None:
            mesh[i] = {sim.index[p] for p in core.mesh(topic)}
    out: dict[str, Any] = {"nodes": n, "variant": variant, "warmup_s": warmup, "seed": seed,
                           "connections": figures(conn, seed=seed), "mesh": figures(mesh, seed=seed)}
    if deliver:
        sim.start_window()
        sim.run_until(warmup + cfg.duration + cfg.drain)
        summary = sim.summary()
        out["delivery"] = {k: summary[k] for k in ("messages", "ratio", "p50", "p99", "dup_per_delivery")}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def _ms(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x * 1000:,.0f} ms"


def _whole_config(n: int, join_rate: float, swim: bool, loss: float, seed: int, manager: bool,
                  connect_ahead: int | None, slow_after: float | str | None, degree: int, degree_near: int,
                  probe_connected: int | None = None, roster_every: int | None = None,
                  swim_start: str = "join", redial_upcoming: bool | None = None,
                  close_grace: bool | None = None) -> Any:
    """The whole-node simulator's configuration from the command line's options (``whole`` and ``churn``)."""
    from agentp2p.config import PubSubConfig
    from agentp2p.network.connection_manager import ConnectionsConfig
    from agentp2p.simulation.whole_node import WholeNodeConfig

    return WholeNodeConfig(n=n, seed=seed, join_rate=join_rate, swim=swim, loss=loss,
                           connections=ConnectionsConfig(enabled=manager), connect_ahead=connect_ahead,
                           probe_connected_min=probe_connected, roster_probe_every=roster_every,
                           redial_upcoming=redial_upcoming, close_grace=close_grace, swim_start=swim_start, dht_slow_after=slow_after,
                           pubsub=PubSubConfig(degree=degree, degree_near=degree_near))


def whole(n: int, join_rate: float, swim: bool, loss: float, seed: int, manager: bool,
          connect_ahead: int | None = None, slow_after: float | str | None = None, degree: int = 6,
          degree_near: int = 0, publish_s: float = 20.0, heal_wait: float = 60.0,
          heal_probe_every: int = 1, settle: float = 60.0, crash_wait: float = 90.0,
          probe_connected: int | None = None, roster_every: int | None = None,
          swim_start: str = "join", crash_share: float = 0.01, newcomers: int = 20,
          partition_s: float = 30.0, redial_upcoming: bool | None = None,
          close_grace: bool | None = None, idle_s: float = 30.0) -> dict[str, Any]:
    from agentp2p.simulation.whole_node import run_whole_node

    t0 = time.perf_counter()
    cfg = _whole_config(n, join_rate, swim, loss, seed, manager, connect_ahead, slow_after, degree, degree_near,
                        probe_connected, roster_every, swim_start, redial_upcoming, close_grace)
    out = run_whole_node(cfg, publish_s=publish_s, heal_wait=heal_wait, heal_probe_every=heal_probe_every,
                         settle=settle, crash_wait=crash_wait, crash_share=crash_share, newcomers=newcomers,
                         partition_s=partition_s, idle=idle_s,
                         log=lambda m: print(f"  [{time.perf_counter() - t0:7.1f} s] {m[:160]}", flush=True))
    b, idle, new, ps, cr, part, heal = (out[k] for k in ("build", "idle", "newcomer", "pubsub", "crash", "partition",
                                                          "heal"))
    print(f"\n  {n:,} nodes, seed {seed}, {join_rate:g} joins/s, SWIM {'on' if swim else 'off'}, loss {loss:.0%}, "
          f"connection manager {'on' if manager else 'off'}; {out['config']['latency']}")
    for name, f in out["settled"]["topology"].items():
        print(f"  {name} (settled, degree {degree}, degree_near {degree_near}): mean degree {f['mean_degree']:.1f}, clustering "
              f"{f['clustering']:.3f} (random {f['random_clustering']:.4f}), path {f['mean_path']:.2f} "
              f"(max {f['max_path']}), reachable {f['reachable']:.1%}")
    print(f"  join (connected to announced): P50 {_ms(b['join_p50'])}, P99 {_ms(b['join_p99'])}; "
          f"{b['joined']:,}/{b['nodes']:,} announced, {b['got_in']:,} got in")
    print(f"  idle per node: {idle['Bps_with_dials']:,.0f} B/s sent (SWIM {idle['swim_Bps']:,.0f}, "
          f"DHT {idle['kad_Bps']:,.0f}, gossipsub {idle['gossip_Bps']:,.0f}, new connections "
          f"{idle['dial_Bps']:,.0f}: {idle['dials_ps']:.2f} dials/s), {idle['events_ps']:.1f} core inputs/s, "
          f"connections P50 {idle['conns_p50']:.0f} / max {idle['conns_max']}")
    if idle.get("dials_by_ps"):
        print("  idle dials per node per second, by cause: "
              + ", ".join(f"{k} {v:.3f}" for k, v in sorted(idle["dials_by_ps"].items(), key=lambda kv: -kv[1])))
    if idle.get("swim_Bps_by"):
        print("  idle SWIM bytes per node per second, by what carried them: "
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(idle["swim_Bps_by"].items(), key=lambda kv: -kv[1])))
    if idle.get("swim_stats"):
        print("  idle SWIM events, network-wide: " + ", ".join(f"{k} {v:,}" for k, v in idle["swim_stats"].items()))
    whole_ = out["newcomer_whole"]
    print(f"  newcomers: {new['got_in']}/{new['newcomers']} got in; first agent (limit=1) {new['found']}/{new['asked']}, "
          f"P50 {_ms(new['p50'])}, P99 {_ms(new['p99'])} (first provider named, the measure before 2026-12-03: "
          f"P50 {_ms(new['first_named']['p50'])}, P99 {_ms(new['first_named']['p99'])}); "
          f"whole lookup {whole_['found']}/{whole_['asked']}, P50 {_ms(whole_['p50'])}, P99 {_ms(whole_['p99'])}")
    print(f"  pub/sub at {ps['rate']:g} msg/s: delivered {ps['ratio']:.2%}, P50 {_ms(ps['p50'])}, P99 {_ms(ps['p99'])}")
    if "all_seen_p50" in cr:
        print(f"  {cr['crashed']} crashed: seen failed by all {cr['all_seen']}/{cr['crashed']}, "
              f"P50 {cr['all_seen_p50']:.1f} s, P99 {cr['all_seen_p99']:.1f} s")
        if "pairs_held" in cr:
            print(f"    of the {cr['pairs_held']:,} observer and crash pairs whose observer held the crashed node: "
                  f"{cr['held_unseen']} unseen; all holders saw {cr['all_holders_saw']}/{cr['crashes_held']} held, "
                  f"P99 {cr['all_holders_p99']:.1f} s")
        if cr.get("missed_by"):
            print(f"    observers that missed a crash: {cr['missed_by']}")
        if cr.get("missed_crashes"):
            print(f"    with SWIM started after the warm start: {cr['missed_by_joined']} of those observers (of "
                  f"{cr['joined_observers']}), and {cr['missed_crashes_joined']} of the {cr['missed_crashes']} "
                  f"crashed nodes someone missed")
    for g in (0, 1) if part else ():
        d, f = part[f"pubsub_{g}"], part[f"find_{g}"]
        print(f"  partition, half {g}: delivered {d['ratio']:.2%}, found {f['found']}/{f['asked']} "
              f"(P50 {_ms(f['p50'])}, P99 {_ms(f['p99'])})")
    if heal:
        fa = heal["find_across"]
        print(f"  healed: SWIM views whole after {heal['swim_merged_s']} s, a publish reaches all after "
              f"{heal['pubsub_merged_s']} s, found across {fa['found']}/{fa['asked']} (P99 {_ms(fa['p99'])})")
    tot = out["totals"]
    print(f"  dials {tot['dials']:,}, refused {tot['refused']:,}, trimmed {tot['trimmed']:,}; "
          f"SWIM declared {tot['false_failures']:,} live nodes failed "
          f"({', '.join(f'{k} {v}' for k, v in out['false_failures_by_phase'].items() if v) or 'none'}), "
          f"and {tot['late_verdicts']:,} late verdicts of the partition (after the heal, on a suspicion begun in "
          f"the partition, before a frame from across)")
    print(f"  ({tot['virtual_s']:.0f} virtual s in {tot['wall_s']:.0f} s of wall time)")
    return out


def join(n: int, join_rate: float, swim: bool, seed: int, pressure_interval: float | None) -> dict[str, Any]:
    """The build alone (``whole``'s first phase): every node joins through the
    bootstrap nodes; each join split into the wait for a first bootstrap
    connection and the DHT work up to the announced record."""
    import dataclasses

    from agentp2p.simulation.whole_node import WholeNodeSimulation, build

    t0 = time.perf_counter()
    cfg = _whole_config(n, join_rate, swim, 0.0, seed, True, None, None, 6, 0)
    if pressure_interval is not None:
        cfg = dataclasses.replace(cfg, connections=dataclasses.replace(cfg.connections,
                                                                       pressure_interval=pressure_interval))
    sim = WholeNodeSimulation(cfg)
    b = build(sim)
    print(f"\n  {n:,} nodes joining at {join_rate:.0f} a second, seed {seed}, SWIM {'on' if swim else 'off'}, "
          f"pressure_interval {cfg.connections.pressure_interval:g} s: {b['joined']:,} announced; join P50 "
          f"{_ms(b['join_p50'])}, P99 {_ms(b['join_p99'])}, last {_ms(b['join_max'])}")
    print(f"  the wait for a first bootstrap connection P50 {_ms(b['boot_wait_p50'])}, P90 {_ms(b['boot_wait_p90'])}, "
          f"P99 {_ms(b['boot_wait_p99'])}; then to the announced record P50 {_ms(b['announce_p50'])}, "
          f"P99 {_ms(b['announce_p99'])}")
    print(f"  {b['refused']:,} dials refused, {b['pressure_rounds']:,} rounds on a refusal "
          f"({time.perf_counter() - t0:.0f} s of wall time)")
    return {"config": {"n": n, "join_rate": join_rate, "seed": seed, "swim": swim,
                       "pressure_interval": cfg.connections.pressure_interval}, "build": b,
            "wall_s": time.perf_counter() - t0}


def churn(n: int, join_rate: float, swim: bool, loss: float, seed: int, per_hour: float, duration: float,
          manager: bool = True, connect_ahead: int | None = None, slow_after: float | str | None = None,
          degree: int = 6, degree_near: int = 0, probe_connected: int | None = None, rate: float = 1.0,
          roster_every: int | None = None, swim_start: str = "join",
          redial_upcoming: bool | None = None, close_grace: bool | None = None) -> dict[str, Any]:
    from agentp2p.simulation.whole_node import run_churn

    t0 = time.perf_counter()
    cfg = _whole_config(n, join_rate, swim, loss, seed, manager, connect_ahead, slow_after, degree, degree_near,
                        probe_connected, roster_every, swim_start, redial_upcoming, close_grace)
    out = run_churn(cfg, churn_per_hour=per_hour, duration=duration, rate=rate,
                    log=lambda m: print(f"  [{time.perf_counter() - t0:7.1f} s] {m[:200]}", flush=True))
    c = out["churn"]
    print(f"\n  {n:,} nodes, seed {seed}, SWIM {'on' if swim else 'off'}, loss {loss:.0%}; "
          f"{per_hour:.0%} of the network replaced per hour for {duration:.0f} s: "
          f"{c['left']} crashed, {c['arrived']} joined ({c['arrivals_announced']} announced, "
          f"P50 {_ms(c['arrival_join_p50'])}, P99 {_ms(c['arrival_join_p99'])}; "
          f"{c['arrivals_waiting']} live ones still joining at the end)")
    print(f"  lookups (first live agent) {c['found']}/{c['lookups']} found, P50 {_ms(c['find_p50'])}, "
          f"P99 {_ms(c['find_p99'])} ({c['askers_crashed']} left out: the asker crashed first)")
    print(f"  pub/sub at {out['config']['rate']:g} msg/s: {c['messages']} messages, delivered {c['delivered']:.3%} "
          f"({c['fully_delivered']:.1%} to every node), P50 {_ms(c['deliver_p50'])}, P99 {_ms(c['deliver_p99'])}")
    if swim:
        print(f"  SWIM views at the end: live members held min {c['views_min']:.3f}, P50 {c['views_p50']:.3f}; "
              f"crashed ones still held max {c['dead_held_max']}, mean {c['dead_held_mean']:.2f}; "
              f"{c['false_failures']} live nodes declared failed")
    tot = out["totals"]
    print(f"  ({tot['virtual_s']:.0f} virtual s in {tot['wall_s']:.0f} s of wall time)")
    return out


def _slow_after(text: str) -> float | str:
    return text if text == "auto" else float(text)


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("a finite number above 0")
    return value


def _seconds_at_least_1(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("a whole number of seconds, 1 or more")
    return value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["topology", "whole", "merge", "churn", "join"])
    p.add_argument("--nodes", default="1000", help="comma-separated network sizes")
    p.add_argument("--warmup", type=float, default=30.0, help="virtual seconds for the meshes to form")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--variants", default="random", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--deliver", type=float, default=0.0, help="also publish for this many seconds (2 msg/s)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--join-rate", type=float, default=50.0, help="whole: nodes joining per second")
    p.add_argument("--storm", action="store_true", help="whole, churn, join: every node joins within 60 s")
    p.add_argument("--swim", choices=["on", "off"], default="on")
    p.add_argument("--swim-start", choices=["join", "warm"], default="join",
                   help="whole, merge, churn: SWIM from each node's start (join), or on every node once the "
                        "network is built, each view the whole network in one shared roster (warm: what fits "
                        "SWIM at 10,000 nodes in memory)")
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--connect-ahead", type=int, default=None,
                   help="whole, merge: SWIM's connect_ahead periods (default: the node's)")
    p.add_argument("--no-redial", action="store_true",
                   help="whole, churn, merge: SWIM does not ask again for a closed connection its next probes need "
                        "(redial_upcoming off: the node before 2026-12-05)")
    p.add_argument("--grace", action="store_true",
                   help="whole, churn, merge: a probe whose target closed its connection in order gets one more "
                        "period (SWIM's close_grace on; off by default)")
    p.add_argument("--probe-connected", type=int, default=None, metavar="MIN",
                   help="whole, churn, merge: SWIM probes only connected members while at least MIN are "
                        "(0: the whole roster; default: the node's, 8)")
    p.add_argument("--roster-every", type=int, default=None, metavar="N",
                   help="whole, churn, merge: ... and the whole roster's turn every N periods (0: never; "
                        "default: the node's, 8)")
    p.add_argument("--slow-after", type=_slow_after, default=None,
                   help='whole, churn: the DHT\'s slow_after in seconds, 0 = off, or "auto" (learned) (default: the node\'s, off)')
    p.add_argument("--no-conn-manager", action="store_true",
                   help="whole: the node before its connection manager (no idle connection is closed)")
    p.add_argument("--degree", type=int, default=6, help="whole: the pub/sub config's degree (D)")
    p.add_argument("--degree-near", type=int, default=0,
                   help="whole: the pub/sub config's degree_near (mesh slots for the XOR-nearest topic peers)")
    p.add_argument("--publish-s", type=float, default=20.0, help="whole: seconds of publishing (2 msg/s)")
    p.add_argument("--heal-wait", type=float, default=60.0, help="whole: seconds followed after the heal")
    p.add_argument("--heal-probe-every", type=_seconds_at_least_1, default=1, metavar="S",
                   help="whole: a publish every this many seconds after the heal (1; more is cheaper at 10,000)")
    p.add_argument("--settle", type=float, default=60.0, help="whole: virtual seconds between the build and the idle window")
    p.add_argument("--idle", type=_positive, default=30.0, metavar="S",
                   help="whole: virtual seconds of the idle window (its per-node rates and SWIM's counters)")
    p.add_argument("--crash-share", type=float, default=0.01, help="whole: share of the nodes crashed at once")
    p.add_argument("--newcomers", type=int, default=20, help="whole: newcomers in each of the two lookup groups")
    p.add_argument("--partition-s", type=float, default=30.0,
                   help="whole: seconds the network stays cut in two (0: no partition, the run ends after the crash)")
    p.add_argument("--crash-wait", type=float, default=90.0,
                   help="whole: virtual seconds followed after the crash (SWIM's detection; with SWIM off nothing is measured)")
    p.add_argument("--gc-young", type=int, default=GC_YOUNG, metavar="N",
                   help=f"the collector's first threshold ({GC_YOUNG:,}; CPython's is 700)")
    p.add_argument("--pressure-interval", type=float, default=None, metavar="S",
                   help="join: the connection manager's round on a refused connection, at most every S seconds "
                        "(0: rounds every interval only, the node before 2026-12-04; default: the node's)")
    p.add_argument("--churn", type=float, default=0.1, help="churn: share of the network replaced per hour")
    p.add_argument("--duration", type=float, default=600.0, help="churn: virtual seconds of churn")
    p.add_argument("--rate", type=_positive, default=1.0,
                   help="churn: messages published a second, network-wide (1; less is cheaper at 10,000: "
                        "a node with no message in its gossip window sends no IHAVE)")
    args = p.parse_args()
    code = commit()  # now: a commit or an edit made during a long run must not relabel it
    # SWIM switches for whole, churn and merge (None: the node's default)
    redial = False if args.no_redial else None
    grace = True if args.grace else None
    gc.set_threshold(args.gc_young, *gc.get_threshold()[1:])
    if args.what == "churn":
        for n in (int(x) for x in args.nodes.split(",")):
            rate = n / 60.0 if args.storm else args.join_rate
            r = churn(n, rate, args.swim == "on", args.loss, args.seed, args.churn, args.duration,
                      not args.no_conn_manager, args.connect_ahead, args.slow_after, args.degree, args.degree_near,
                      args.probe_connected, args.rate, args.roster_every, args.swim_start,
                      redial, grace)
            r["config"].update(gc_young=args.gc_young, commit=code)
            print(json.dumps(r, default=str))
        return
    if args.what == "join":
        for n in (int(x) for x in args.nodes.split(",")):
            rate = n / 60.0 if args.storm else args.join_rate
            r = join(n, rate, args.swim == "on", args.seed, args.pressure_interval)
            r["config"].update(gc_young=args.gc_young, commit=code)
            print(json.dumps(r, default=str))
        return
    if args.what == "merge":
        from agentp2p.simulation.whole_node import WholeNodeConfig, run_partition_merge

        for n in (int(x) for x in args.nodes.split(",")):
            out = run_partition_merge(WholeNodeConfig(n=n, seed=args.seed, join_rate=args.join_rate,
                                                      loss=args.loss, connect_ahead=args.connect_ahead,
                                                      probe_connected_min=args.probe_connected,
                                                      roster_probe_every=args.roster_every,
                                                      redial_upcoming=redial, close_grace=grace,
                                                      swim_start=args.swim_start))
            for row in out["curve"][::3] + out["curve"][-1:]:
                print(f"  +{row['t']:3.0f} s: views min {row['min']:.3f}, P50 {row['p50']:.3f}, "
                      f"{row['nodes_behind']} nodes behind")
            print(f"  {n:,} nodes, connect_ahead {out['config']['connect_ahead']}, "
                  f"probe_connected_min {out['config']['probe_connected_min']}, roster_probe_every "
                  f"{out['config']['roster_probe_every']}: every view whole "
                  f"{out['merged_s']} s after the heal, {out['behind_at_end']} nodes behind at +60 s; "
                  f"{out['declared_failed_after_heal']:,} live nodes declared failed after it: "
                  f"{out['false_failures_after_heal']:,} false failures and "
                  f"{out['late_verdicts_after_heal']:,} late verdicts of the partition "
                  f"({out['wall_s']:.0f} s of wall time)")
            out["config"]["commit"] = code
            print(json.dumps(out))
        return
    if args.what == "whole":
        for n in (int(x) for x in args.nodes.split(",")):
            rate = n / 60.0 if args.storm else args.join_rate
            r = whole(n, rate, args.swim == "on", args.loss, args.seed, not args.no_conn_manager,
                      args.connect_ahead, args.slow_after, args.degree, args.degree_near,
                      args.publish_s, args.heal_wait, args.heal_probe_every, args.settle, args.crash_wait,
                      args.probe_connected, args.roster_every, args.swim_start, args.crash_share,
                      args.newcomers, args.partition_s, redial, grace, args.idle)
            r["config"].update(gc_young=args.gc_young, commit=code)
            print(json.dumps(r, default=str))
        return
    results = [topology(int(n), args.warmup, args.seed, v, args.deliver)
               for n in args.nodes.split(",") for v in args.variants.split(",")]
    if not args.json:
        print("  graph         nodes     edges  degree  cluster.  random C    path   max  reach")
        for r in results:
            print(f"  [{r['variant']}]")
            print(_row("connections", r["connections"]))
            print(_row("mesh", r["mesh"]))
            if "delivery" in r:
                d = r["delivery"]
                print(f"  delivery {d['ratio']:.1%} of {d['messages']} messages, latency P50 {d['p50'] * 1000:.0f} ms "
                      f"/ P99 {d['p99'] * 1000:.0f} ms, {d['dup_per_delivery']:.2f} duplicates per delivery")
            print(f"  (n = {r['nodes']:,}: {r['wall_s']} s of wall time)")
    for r in results:
        print(json.dumps({k: (v.as_dict() if isinstance(v, GraphFigures) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
