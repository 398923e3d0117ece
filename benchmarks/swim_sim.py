"""SWIM failure-detection benchmark on the deterministic simulator.

Runs the real sans-IO core (agentp2p.protocol.swim) for N members on virtual
time and prints, per cluster size:

* crash detection: time from crash to the first suspicion, the first "failed"
  and until every member has marked the victim failed (P50/P99 over crashes),
  in seconds and protocol periods;
* false positives per member per hour at 0/1/5/10 % message loss;
* messages and bytes sent per member per second (and the push/pull share);
* convergence after a partition heals: time from the heal until every member
  sees every other alive, and the traffic it costs.

Usage:  python benchmarks/swim_sim.py                      # 1,000 and 10,000 members
        python benchmarks/swim_sim.py --members 1000 --seed 7
        python benchmarks/swim_sim.py --quick               # shorter runs
        python benchmarks/swim_sim.py --scenario partition --members 100 --members 1000
        python benchmarks/swim_sim.py --scenario partition --members 1000 --push-pull off   # gossip only
        python benchmarks/swim_sim.py --scenario stalls      # the devnet's merge on starved event loops
"""

from __future__ import annotations

import argparse
import time

from agentp2p.devnet.layout import blocks
from agentp2p.protocol.swim import State, SwimConfig
from agentp2p.simulation.network import NetworkModel
from agentp2p.simulation.stalls import StallModel
from agentp2p.simulation.swim import SwimSimulation
from agentp2p.simulation.swim_metrics import Observer, percentile


def make(n: int, seed: int, cfg: SwimConfig, loss: float = 0.0) -> tuple[SwimSimulation, Observer]:
    obs = Observer()
    sim = SwimSimulation(n, seed=seed, config=cfg, network=NetworkModel(loss=loss), on_event=obs)
    obs.sim = sim
    return sim, obs


def detection(n: int, seed: int, cfg: SwimConfig, crashes: int) -> dict:
    sim, obs = make(n, seed, cfg)
    victims = sim.rng.sample(range(n), crashes)
    t0, gap = 5.0, 2.0
    for k, v in enumerate(victims):
        at = t0 + k * gap

        def do(v=v, at=at) -> None:
            sim.crash(v)
            obs.crash(v, at)

        sim.at(at, do)
    end = t0 + crashes * gap + cfg.suspicion_max(n) + 15 * cfg.probe_interval
    sim.run_until(end)
    cs = list(obs.crashes.values())
    first_s = [c.first_suspect - c.at for c in cs if c.first_suspect is not None]
    first_f = [c.first_failed - c.at for c in cs if c.first_failed is not None]
    all_f = [c.all_failed - c.at for c in cs if c.all_failed is not None]
    return {
        "crashes": len(cs),
        "undetected": sum(1 for c in cs if c.all_failed is None),
        "first_suspect": first_s,
        "first_failed": first_f,
        "all_failed": all_f,
        "false_failed": obs.false_failed,
    }


def steady(n: int, seed: int, cfg: SwimConfig, loss: float, duration: float) -> dict:
    sim, obs = make(n, seed, cfg, loss)
    warm = 5.0
    sim.run_until(warm)
    m0, b0 = sim.traffic.messages, sim.traffic.bytes
    pp0 = sim.traffic.bytes_by_kind.get("PushPull", 0)
    d0 = sum(c.stats.declared_dead for c in sim.cores)
    s0 = sum(c.stats.suspected for c in sim.cores)
    sim.run_until(warm + duration)
    hours = n * duration / 3600
    declared = sum(c.stats.declared_dead for c in sim.cores) - d0
    return {
        "loss": loss,
        "member_hours": hours,
        "declared_dead": declared,
        "fp_per_member_hour": declared / hours,
        "suspect_per_member_hour": (sum(c.stats.suspected for c in sim.cores) - s0) / hours,
        "msgs": (sim.traffic.messages - m0) / n / duration,
        "bytes": (sim.traffic.bytes - b0) / n / duration,
        "pp_bytes": (sim.traffic.bytes_by_kind.get("PushPull", 0) - pp0) / n / duration,
        "push_pulls": sum(c.stats.push_pulls for c in sim.cores),
    }


def partition(n: int, seed: int, cfg: SwimConfig, fraction: float, duration: float, limit: float) -> dict:
    """Cut ``fraction`` of the members off for ``duration`` s (each side
    declares the other dead), heal, and measure until every member sees every
    other alive again (exact time: the observer's last bad view cleared), or
    ``limit`` s after the heal. Traffic in 1-s windows from the heal."""
    sim, obs = make(n, seed, cfg)
    cut = max(1, round(n * fraction))
    minority = {i: 1 for i in range(cut)}
    start, heal = 5.0, 5.0 + duration
    sim.at(start, lambda: sim.network.groups.update(minority))
    sim.at(heal, lambda: sim.network.groups.clear())
    sim.run_until(heal)
    bad_at_heal = obs.bad_views
    tr = sim.traffic
    b0, pp0 = tr.bytes, tr.bytes_by_kind.get("PushPull", 0)
    stats0 = {f: sum(getattr(c.stats, f) for c in sim.cores) for f in ("push_pulls", "push_pull_busy")}
    peak = peak_pp = 0.0
    t = heal
    wall = time.perf_counter()
    while t < heal + limit and obs.bad_views:
        b1, p1 = tr.bytes, tr.bytes_by_kind.get("PushPull", 0)
        t += 1.0
        sim.run_until(t)
        peak = max(peak, (tr.bytes - b1) / n)
        peak_pp = max(peak_pp, (tr.bytes_by_kind.get("PushPull", 0) - p1) / n)
        if time.perf_counter() - wall > 60:
            print(f"  ... {t - heal:.0f} s after heal: {obs.bad_views} non-alive views", flush=True)
            wall = time.perf_counter()
    converged = obs.bad_views == 0
    span = max(1e-9, t - heal)
    checked = None
    if converged and n <= 2000:  # the observer counts events; check the views themselves too
        checked = all(
            (m := core.member(p)) is not None and m.state is State.ALIVE
            for core in sim.cores for p in sim.ids if p != core.local_id
        )
    return {
        "side": cut,
        "duration": duration,
        "bad_at_heal": bad_at_heal,
        "converged": converged,
        "checked": checked,
        "time": (obs.last_bad_zero - heal) if converged else float("inf"),
        "bad_left": obs.bad_views,
        "bytes": (tr.bytes - b0) / n / span,
        "pp_bytes": (tr.bytes_by_kind.get("PushPull", 0) - pp0) / n / span,
        "peak": peak,
        "peak_pp": peak_pp,
        "span": span,
        "push_pulls": sum(c.stats.push_pulls for c in sim.cores) - stats0["push_pulls"],
        "busy": sum(c.stats.push_pull_busy for c in sim.cores) - stats0["push_pull_busy"],
    }


#: The suspicion counters the stalls scenario sums over the members.
STALL_COUNTERS = ("suspected", "suspected_nacked", "suspected_lost", "suspected_unhelped", "suspected_again",
                  "spared_silent", "declared_dead", "refutations")


def stalled_merge(n: int, seed: int, cfg: SwimConfig, procs: int, stall: float, run: float, window: float) -> dict:
    """The devnet's partition and heal (50 nodes in 2 worker processes), with
    each process's event loop stalling (``StallModel``: Exp(``stall``) s
    stopped, Exp(``run``) s running) from the heal for ``window`` s, as a
    CPU-starved worker's does in the merge storm. The members are in
    contiguous blocks per process, and the cut is between the first half
    and the rest, as in the devnet (with 2 workers: between them), for
    20 s. The merge is done when every view is whole for good: the last
    time the observer's non-alive views went to zero, ``window`` + 30 s
    after the heal at the latest (inf if they never did)."""
    obs = Observer()
    heal = 25.0
    process_of = [w for w, block in enumerate(blocks(n, procs)) for _ in block]
    stalls = StallModel(procs=procs, stall_mean=stall, run_mean=run, start=heal, end=heal + window, seed=seed,
                        process_of=process_of) if stall > 0 and window > 0 else None
    sim = SwimSimulation(n, seed=seed, config=cfg, on_event=obs, stalls=stalls)
    obs.sim = sim
    sim.at(5.0, lambda: sim.network.groups.update({i: 1 for i in range(n // 2)}))
    sim.at(heal, lambda: sim.network.groups.clear())
    sim.run_until(heal)
    before = {f: sum(getattr(c.stats, f) for c in sim.cores) for f in STALL_COUNTERS}
    sim.run_until(heal + window + 30.0)
    return {
        "merged": obs.last_bad_zero - heal if obs.bad_views == 0 else float("inf"),
        **{f: sum(getattr(c.stats, f) for c in sim.cores) - before[f] for f in STALL_COUNTERS},
    }


def print_stalls(n: int, seeds: int, cfg: SwimConfig) -> None:
    print(f"{n} members in 2 processes (a block each), cut between them for 20 s; loops stall from the heal for the window; "
          f"{seeds} seeds each")
    print("  stall / run mean   window   merged after the heal (sorted, s)          suspected (nacked)   "
          "declared dead   refutations")
    for stall, run, window in ((0.0, 1.0, 0.0), (0.5, 1.0, 10.0), (1.0, 1.0, 10.0), (1.0, 1.0, 20.0),
                               (1.5, 1.5, 20.0), (2.0, 1.0, 20.0)):
        rows = [stalled_merge(n, seed, cfg, 2, stall, run, window) for seed in range(1, seeds + 1)]
        merged = " ".join(f"{r['merged']:.1f}" for r in sorted(rows, key=lambda r: r["merged"]))
        tot = {f: sum(r[f] for r in rows) for f in STALL_COUNTERS}
        print(f"  {stall:4.1f} / {run:3.1f} s     {window:4.0f} s   {merged:42s} {tot['suspected']:5d} "
              f"({tot['suspected_nacked']:5d})   {tot['declared_dead']:10d}   {tot['refutations']:10d}", flush=True)


def print_partition(p: dict, limit: float) -> None:
    print(f"partition: {p['side']} members cut off for {p['duration']:.0f} s "
          f"({p['bad_at_heal']} non-alive views at heal) -> "
          + (f"converged {p['time']:.1f} s after heal" if p["converged"]
             else f"NOT converged within {limit:.0f} s ({p['bad_left']} non-alive views left)")
          + ("" if p["checked"] is None
             else f" (every view checked: {'all alive' if p['checked'] else 'NOT all alive'})"))
    print(f"  traffic from heal over {p['span']:.0f} s: {p['bytes'] / 1000:.1f} kB/member/s "
          f"(push/pull {p['pp_bytes'] / 1000:.1f}); busiest second {p['peak'] / 1000:.1f} kB/member "
          f"(push/pull {p['peak_pp'] / 1000:.1f}); {p['push_pulls']} push/pulls started, {p['busy']} refused busy",
          flush=True)


def fmt(values: list[float], period: float) -> str:
    if not values:
        return "n/a"
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return f"{p50:6.2f} s / {p99:6.2f} s  ({p50 / period:5.2f} / {p99 / period:5.2f} T)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, action="append", help="cluster size (repeatable)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="shorter simulated durations")
    ap.add_argument("--scenario", choices=("all", "partition", "steady", "stalls"), default="all",
                    help="partition: only the partition-heal measurement; steady: only the steady-state rows; "
                         "stalls: a 50-member merge on stalling event loops (--members sets N)")
    ap.add_argument("--seeds", type=int, default=8, help="seeds per row of the stalls scenario")
    ap.add_argument("--push-pull", choices=("on", "off"), default="on",
                    help="off: no push/pull anti-entropy (push_pull_interval = 0), gossip and reconnect pings only")
    ns = ap.parse_args()
    cfg = SwimConfig() if ns.push_pull == "on" else SwimConfig(push_pull_interval=0.0)
    if ns.scenario == "stalls":
        for n in ns.members or [50]:
            print_stalls(n, ns.seeds, cfg)
        return
    sizes = ns.members or [1000, 10000]
    print(f"SwimConfig: period {cfg.probe_interval}s, probe timeout {cfg.probe_timeout}s, k={cfg.indirect_checks}, "
          f"suspicion mult {cfg.suspicion_mult} (max x{cfg.suspicion_max_timeout_mult}), "
          f"retransmit mult {cfg.retransmit_mult}, awareness max {cfg.awareness_max_multiplier}; "
          f"push/pull {ns.push_pull} (interval {cfg.push_pull_interval:.0f} s scaled, "
          f"burst {cfg.push_pull_burst_interval} s)"
          f"; seed {ns.seed}")
    print("Network: latency 2 ms + Exp(3 ms), independent message loss\n")
    for n in sizes:
        if ns.scenario == "partition":
            wall = time.perf_counter()
            frac, dur, limit = (0.01, 20.0, 120.0) if n >= 5000 else (0.1, 20.0, 240.0)
            print(f"== N = {n}", flush=True)
            print_partition(partition(n, ns.seed, cfg, frac, dur, limit), limit)
            print(f"(wall time for N={n}: {time.perf_counter() - wall:.0f} s)\n", flush=True)
            continue
        big = n >= 5000
        crashes = 10 if big else 20
        fp_duration = (20.0 if big else 60.0) if ns.quick else (40.0 if big else 300.0)
        wall = time.perf_counter()
        T = cfg.probe_interval
        print(f"== N = {n}  (suspicion timeout min {cfg.suspicion_min(n):.0f} s, max {cfg.suspicion_max(n):.0f} s)")
        if ns.scenario == "all":
            det = detection(n, ns.seed, cfg, crashes)
            print(f"crash detection, P50 / P99 over {det['crashes']} crashes "
                  f"({det['undetected']} not seen by all):")
            print(f"  first suspicion      {fmt(det['first_suspect'], T)}")
            print(f"  first 'failed'       {fmt(det['first_failed'], T)}")
            print(f"  all members 'failed' {fmt(det['all_failed'], T)}")
        print(f"steady state over {fp_duration:.0f} s simulated:")
        print("  loss   false 'dead' /member/h   suspicions started /member/h   msgs /member/s   bytes /member/s"
              "   of which push/pull")
        for loss in (0.0, 0.01, 0.05, 0.10):
            r = steady(n, ns.seed, cfg, loss, fp_duration)
            print(f"  {loss:4.0%}   {r['fp_per_member_hour']:10.4f} ({r['declared_dead']:3d} total)"
                  f"   {r['suspect_per_member_hour']:14.2f}   {r['msgs']:14.2f}   {r['bytes']:14.0f}"
                  f"   {r['pp_bytes']:8.1f}", flush=True)
        if ns.scenario == "all":
            frac, dur, limit = (0.01, 20.0, 120.0) if big else (0.1, 20.0, 240.0)
            print_partition(partition(n, ns.seed, cfg, frac, dur, limit=limit), limit)
        print(f"(wall time for N={n}: {time.perf_counter() - wall:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
