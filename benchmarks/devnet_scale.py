"""A real network's figures on this machine (issue #14), from ``agentp2p devnet``.

Starts ``agentp2p devnet --nodes N --procs P`` (full nodes on 127.0.0.1:
SWIM, Kademlia, gossipsub, records, messaging), drives it through its
commands and reports, for one N:

* **join**: every node up (running and connected to a bootstrap), every
  record published, every node's SWIM view whole (``wait views``: each
  node holds every other alive and none suspect); and from the nodes
  themselves how long each record took to be out after its node started,
  with the publish rounds whose parts failed, by why (a late record is
  rounds whose queries timed out, retried after a back-off);
* **idle** over ``--idle`` seconds, ``--settle`` seconds after it joined: CPU per node (% of one core,
  the workers' user + system time), memory per node (the workers' RSS over
  N), bandwidth per node (bytes sent on the loopback interface over N:
  TCP/IP headers and acknowledgements included, and any other loopback
  traffic on the machine);
* **discovery**: ``--finds`` ``find_agents`` from random nodes for random
  capabilities (P50 / P99 and agents found of those offering it);
* **pub/sub**: ``--publishes`` messages from random nodes, each timed until
  every node has it: by the last node's own stamp (``last_delivery``: the
  message's slowest delivery), and as the devnet's poll of the workers
  confirmed it (the top-level quantiles; every 0.1 s, plus the workers'
  answers: up to ~0.6 s more at 100 nodes on 2 cores); beside them each
  node's own delivery time and how long the publisher's ``publish`` held it,
  and the workers' CPU over the window (which runs 3 s past the last
  delivery, for the last message's gossip), per message above their idle
  rate: every node's share of a message runs on this machine's cores, so
  it says how many messages a second the machine can carry at this N;
* **failure**: ``--kill-share`` of the nodes crashed at once (stopped
  without SWIM's goodbye, their connections closed: what their process's
  death does to peers), or with ``--kill-worker`` the last worker process
  SIGKILLed (its nodes die at once), timed until every running node's view has declared
  them failed (per node: its first match, P50 / P99; all: the last);
* **partition**: the running nodes cut in two halves for ``--partition-s``
  seconds: how long until each side declares the other failed, a publish
  and a find within each half, then the heal and how long until every view
  is whole again (the merge).

With ``--contend K``, K processes that only burn CPU run beside the devnet
from start to end, at the same priority: the figures of a machine shared
with other work. (Why: at 50 nodes on 2 cores, with one of them the
partition's merge took 41-82 s in 5 of 6 runs instead of ~2 s:
docs/scale.md, "The merge tail".)

A step that fails (a timeout, a missed delivery) is recorded and the run goes
on; the report says where it stopped working. Benchmarks never assert.

    .venv/bin/python benchmarks/devnet_scale.py --nodes 50 --procs 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import commit, emit, machine, percentile  # noqa: E402
from profiling import PySpy  # noqa: E402

from agentp2p.devnet.pool import process_cpu_s  # noqa: E402
from agentp2p.testing import DevnetProcess, cli_env  # noqa: E402


def lo_tx_bytes() -> int:
    """Bytes sent on the loopback interface since boot (/proc/net/dev)."""
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[8])
    raise RuntimeError("no loopback interface in /proc/net/dev")


def _q(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50": round(percentile(xs, 50), 3), "p99": round(percentile(xs, 99), 3),
            "max": round(max(xs), 3) if xs else float("nan")}  # fmt: skip


Counters = tuple[dict[str, dict[str, int]], bool]


def _by_node(stats: dict[str, Any]) -> Counters:
    """Each running node's counters from a ``stats`` result (SWIM's, and its
    connections', DHT's, records' and pub/sub's: the devnet keeps them all
    under "swim_counters"), and whether
    every worker answered (a busy one's nodes are missing from the read)."""
    summary = stats.get("summary", {})
    gone = {w["index"] for w in stats.get("workers", []) if w.get("state") == "gone"}  # a SIGKILLed one: no loss
    whole = bool(stats.get("ok")) and not set(summary.get("silent_workers", [])) - gone
    return dict(summary.get("swim_counters_by_node", {})), whole


def _counters(devnet: Any) -> Counters:
    """SWIM's counters now, per node (suspicions, refutations...)."""
    return _by_node(devnet.command("stats", 60))


#: Levels among the counters (a read, not a running total): no window's growth.
_GAUGES = frozenset({"members_without_addrs", "awareness"})
#: A time per node, read once (the join's records line): in no window.
_TIMES = frozenset({"records_published_after_ms"})


def _records(by_node: dict[str, dict[str, int]]) -> dict[str, Any]:
    """How long each node's record took to be out from its start (seconds),
    and its publish rounds summed: the failed ones and what failed in them
    (a slow record is rounds that failed and waited to be retried)."""
    after = [n["records_published_after_ms"] / 1000 for n in by_node.values() if "records_published_after_ms" in n]
    out: dict[str, Any] = {"published_after": _q(after)}
    for node in by_node.values():
        for k, v in node.items():
            if k.startswith(("records_round", "records_failed_")):
                out[k] = out.get(k, 0) + v
    return out


def _delta(before: Counters, after: Counters) -> dict[str, Any]:
    """What each counter added between two reads, summed over the nodes
    present in both (a killed node's are not a drop), unchanged ones left
    out: what SWIM, the node's connections, its DHT and its pub/sub did in
    a window (a failure, split or merge being seen; the publishes).
    ``partial``: a worker did not answer one of the reads."""
    (b, b_whole), (a, a_whole) = before, after
    out: dict[str, Any] = {}
    levels: dict[str, list[int]] = {}
    for node in sorted(a.keys() & b.keys()):
        for k, v in a[node].items():
            if k in _TIMES:
                continue
            if k in _GAUGES:
                levels.setdefault(k, []).append(v)
                continue
            out[k] = out.get(k, 0) + v - b[node].get(k, 0)
    out = {k: v for k, v in sorted(out.items()) if v}
    for k, vs in sorted(levels.items()):
        # A level at the window's end: how many nodes had any, and the most.
        out[f"{k} at the end: nodes above 0, most"] = [sum(1 for v in vs if v > 0), max(vs)]
    if not (b_whole and a_whole):
        out["partial"] = True
    return out


def _workers(stats: dict[str, Any]) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) summed over the workers in a ``stats`` result."""
    ws = stats.get("workers", [])
    return sum(float(w.get("cpu_s", 0.0)) for w in ws), sum(float(w.get("rss_mb", 0.0)) for w in ws)


#: A contender: a process that only burns CPU (--contend). It asks the kernel
#: for SIGKILL when its parent dies (Linux), and leaves at once if the parent
#: died before it asked, so a benchmark killed outright leaves none burning.
_BURN = ("import ctypes, os, signal, sys\n"
         "try:\n    ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)\nexcept Exception:\n    pass\n"
         "if os.getppid() != int(sys.argv[1]):\n    sys.exit(0)\n"
         "while True:\n    pass\n")


def _start_contenders(k: int, into: list[subprocess.Popen[bytes]]) -> None:
    """Start ``k`` CPU-bound processes at our priority, each appended to
    ``into`` at once (so whatever started is killed by :func:`_stop`)."""
    for _ in range(k):
        into.append(subprocess.Popen([sys.executable, "-c", _BURN, str(os.getpid())], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip


def _stop(procs: list[subprocess.Popen[bytes]]) -> float:
    """Kill every contender first, then add up their CPU seconds (read from
    the zombies) and reap them."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
    cpu = sum(process_cpu_s(p.pid) for p in procs)
    for p in procs:
        p.wait()
    return cpu


#: Seconds the pub/sub window runs on after its last delivery: the router's
#: gossip offers an ID at each of 3 heartbeats (1 s apart), and the last
#: message's duplicates and IWANTs come in that time.
_GOSSIP_TAIL_S = 3.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    n, rng = args.nodes, random.Random(args.seed)
    caps = min(10, n)
    out: dict[str, Any] = {"benchmark": "devnet_scale", "nodes": n, "procs": args.procs, "seed": args.seed,
                           "join_rate": args.join_rate, "seeds": args.seeds, "contend": args.contend,
                           "commit": commit(), "failed_steps": []}  # fmt: skip
    home = Path(tempfile.mkdtemp(prefix="devnet-scale-"))  # the workers' logs: kept when a run stops early
    settings = {k: v for k, v in os.environ.items() if k.startswith("AGENTP2P_")}  # they reach every node
    devnet = DevnetProcess(home, nodes=n, procs=args.procs, env=cli_env(home, settings),
                           flags=["--seed", str(args.seed), "--interval", "0", "--probe-every", "0", "--rate", "0",
                                  "--caps", str(caps), "--join-rate", str(args.join_rate),
                                  "--seeds", str(args.seeds)])  # fmt: skip

    def step(name: str, line: str, timeout: float) -> dict[str, Any]:
        r = devnet.command(line, timeout)
        if not r.get("ok"):
            out["failed_steps"].append({"step": name, "command": line, "result": r})
            print(f"  [{name}] failed: {json.dumps(r)[:400]}", file=sys.stderr, flush=True)
        else:
            print(f"  [{name}] {line}: ok", file=sys.stderr, flush=True)
        return r

    contenders: list[subprocess.Popen[bytes]] = []
    spy: PySpy | None = None
    t_contend = time.monotonic()
    try:
        _start_contenders(args.contend, contenders)
        devnet.launch()  # (not start(): on a timeout it would stop the devnet at once, not through finish())
        devnet.wait_ready(args.timeout)  # up, and the meshes ready (or an info event saying which are not)
        workers = devnet.event("workers")["workers"]
        ready = next((e for e in devnet.events() if e["event"] == "ready"), {})
        out["join"] = {"up_s": devnet.event("up").get("seconds"), "ready_s": ready.get("seconds")}
        r = step("records", f"wait records {args.timeout:g}", args.timeout + 60)
        out["join"]["records_s"] = r.get("seconds")
        out["join"]["records"] = _records(_counters(devnet)[0])
        r = step("views", f"wait views {args.timeout:g}", args.timeout + 60)
        out["join"]["views"] = {k: r.get(k) for k in ("ok", "seconds", "first_match", "mismatched")}

        if args.settle > 0:  # a network just formed still works (tables, identify, connections)
            devnet.command(f"sleep {args.settle:g}", args.settle + 60)
        pids = {f"worker{k}": int(w["pid"]) for k, w in enumerate(workers)}
        if args.profile:
            spy = PySpy(args.profile, "idle")
            spy.start(pids)
        s0, lo0, t0 = devnet.command("stats", 60), lo_tx_bytes(), time.monotonic()
        devnet.command(f"sleep {args.idle:g}", args.idle + 60)
        s1, lo1, t1 = devnet.command("stats", 60), lo_tx_bytes(), time.monotonic()
        if spy is not None:
            out["profile"] = {"idle": spy.stop()}
        (c0, _), (c1, rss) = _workers(s0), _workers(s1)
        span = t1 - t0
        out["idle"] = {"seconds": round(span, 1), "cpu_pct_per_node": round(100 * (c1 - c0) / span / n, 3),
                       "rss_mb_per_node": round(rss / n, 1), "lo_Bps_per_node": round((lo1 - lo0) / span / n),
                       "load": s1.get("load"), "swim": s1.get("summary", {}).get("swim"),
                       "swim_counters": _delta(_by_node(s0), _by_node(s1))}  # fmt: skip

        finds: list[float] = []
        matched = expected = 0
        for _ in range(args.finds):
            i, cap = rng.randrange(n), f"cap-{rng.randrange(caps):02d}"
            r = step("find", f"find {i} {cap}", 120)
            if r.get("ok"):
                finds.append(float(r["seconds"]))
                matched += int(r.get("matched", 0))
                expected += int(r.get("expected", 0))
        out["discovery"] = {**_q(finds), "found": matched, "offering": expected}

        if args.profile:
            spy = PySpy(args.profile, "pubsub")
            spy.start(pids)
        s_pub0, t_pub0 = devnet.command("stats", 60), time.monotonic()
        pubs: list[float] = []
        node_p50: list[float] = []  # each publish's own P50 / P99 over the nodes, as they stamped it
        node_p99: list[float] = []
        last_stamps: list[float] = []  # each publish's slowest delivery, as the last node stamped it
        held: list[float] = []  # how long each publisher's node.publish held the message
        delivered = reach = 0
        for k in range(args.publishes):
            r = step("publish", f"publish {rng.randrange(n)} m{k}", 60)
            pubs.append(float(r.get("seconds", float("nan"))))
            delivered += int(r.get("delivered", 0))
            reach += int(r.get("expected", 0))
            lat = r.get("latency") or {}
            if "p50" in lat:
                node_p50.append(float(lat["p50"]))
                node_p99.append(float(lat["p99"]))
            if "max" in lat and not r.get("missing"):  # a node that never had it has no stamp
                last_stamps.append(float(lat["max"]))
            if lat.get("publish_s") is not None:
                held.append(float(lat["publish_s"]))
        # The last message's duplicates and gossip come after its last
        # delivery, for a few heartbeats: in the window too.
        devnet.command(f"sleep {_GOSSIP_TAIL_S:g}", _GOSSIP_TAIL_S + 60)
        s_pub1, t_pub1 = devnet.command("stats", 60), time.monotonic()
        if spy is not None:
            out.setdefault("profile", {})["pubsub"] = spy.stop()
        # The whole network's CPU for its messages (less the idle rate over
        # the window's wall time; the devnet's polls are in it): on one
        # machine every node's share of a message runs on the same cores,
        # so this says how many messages a second the machine can carry at
        # this N, not how soon one reaches the last node (much of its cost,
        # duplicates and gossip, comes after its last delivery).
        (pc0, _), (pc1, _) = _workers(s_pub0), _workers(s_pub1)
        pub_span = t_pub1 - t_pub0
        idle_cpu = out["idle"]["cpu_pct_per_node"] / 100 * n * pub_span
        n0, n1 = _by_node(s_pub0), _by_node(s_pub1)
        out["pubsub"] = {**_q([p for p in pubs if p == p]), "delivered": delivered, "expected": reach,
                         "node_latency": {"p50_of_p50": round(percentile(node_p50, 50), 3) if node_p50 else None,
                                          "p99_of_p99": round(percentile(node_p99, 99), 3) if node_p99 else None},
                         "last_delivery": _q(last_stamps) if last_stamps else None,
                         "publish_held": _q(held) if held else None,
                         "messages": args.publishes, "window_s": round(pub_span, 3),
                         "workers_cpu_s": round(pc1 - pc0, 3),
                         # Unclamped: below 0 when the idle rate's estimate is off by more than the work.
                         "cpu_s_per_message": round((pc1 - pc0 - idle_cpu) / max(1, args.publishes), 3),
                         # The nodes' counters summed over the nodes in both reads (``counted``;
                         # pub/sub's ``pubsub_`` ones among them; idle control frames not taken off).
                         "counted": len(n0[0].keys() & n1[0].keys()),
                         "swim_counters": _delta(n0, n1)}  # fmt: skip

        c_before = _counters(devnet)  # per node: the killed ones drop out of the window's sum
        if args.kill_worker:
            # The last worker's process dies at once: its sockets close, no goodbye.
            last = workers[-1]
            victims = list(range(int(last["nodes"][0]), int(last["nodes"][1]) + 1))
            k = len(victims)
            t_kill = time.monotonic()
            os.kill(int(last["pid"]), signal.SIGKILL)
            # `wait views` holds each view against the workers the devnet knows
            # are running: wait until it has seen this one go.
            while not any(w.get("state") == "gone" for w in devnet.command("stats", 60).get("workers", [])):
                if time.monotonic() - t_kill > 60:
                    raise RuntimeError("the devnet did not notice its worker's death within 60 s")
                time.sleep(0.1)
        else:
            k = max(1, round(args.kill_share * n))
            victims = sorted(rng.sample(range(1, n), k))  # node 0 stays: the devnet's observer
            t_kill = time.monotonic()
            step("kill", "kill " + ",".join(map(str, victims)), 60)
        t_wait = time.monotonic()
        r = step("failure", f"wait views {args.detect_timeout:g}", args.detect_timeout + 60)
        # Timed from the crash: the wait began a little after it.
        lag = t_wait - t_kill
        fm = {q: round(v + lag, 3) for q, v in (r.get("first_match") or {}).items()}
        out["failure"] = {"killed": k, "how": "SIGKILL of a worker" if args.kill_worker else "kill", "ok": r.get("ok"),
                          "lag_s": round(lag, 3),
                          "seconds": round(r["seconds"] + lag, 2) if r.get("seconds") is not None else None,
                          "first_match": fm, "mismatched": r.get("mismatched")}  # fmt: skip
        c_failed = _counters(devnet)
        out["failure"]["swim_counters"] = _delta(c_before, c_failed)

        # Two halves of the nodes still running (a killed worker's are gone).
        live = [i for i in range(n) if i not in victims]
        a_side, b_side = live[: len(live) // 2], live[len(live) // 2 :]
        t_cut = time.monotonic()
        step("partition", f"partition {','.join(map(str, a_side))} {','.join(map(str, b_side))}", 60)
        r = step("split", f"wait views {args.partition_s:g}", args.partition_s + 60)
        part: dict[str, Any] = {"seconds_cut": args.partition_s,
                                "split_seen": {x: r.get(x) for x in ("ok", "seconds", "first_match", "mismatched")}}
        c_split = _counters(devnet)
        part["split_seen"]["swim_counters"] = _delta(c_failed, c_split)
        for side, members in (("a", a_side), ("b", b_side)):
            i, j = rng.sample(members, 2) if len(members) > 1 else (members[0], members[0])
            r = step(f"publish {side}", f"publish {i} cut-{side}", 60)
            part[f"publish_{side}"] = {x: r.get(x) for x in ("ok", "seconds", "delivered", "expected")}
            r = step(f"find {side}", f"find {i} cap-{j % caps:02d}", 120)  # a capability its half offers
            part[f"find_{side}"] = {x: r.get(x) for x in ("ok", "seconds", "matched", "expected")}
        rest = args.partition_s - (time.monotonic() - t_cut)
        if rest > 0:
            devnet.command(f"sleep {rest:.1f}", rest + 60)
        c_heal = _counters(devnet)
        part["swim_counters_while_cut"] = _delta(c_split, c_heal)
        if args.profile:
            if args.kill_worker:
                pids.pop(f"worker{len(workers) - 1}")  # SIGKILLed above
            spy = PySpy(args.profile, "merge")
            spy.start(pids)
        step("heal", "heal", 60)
        r = step("merge", f"wait views {args.merge_timeout:g}", args.merge_timeout + 60)
        if spy is not None:
            out.setdefault("profile", {})["merge"] = spy.stop()
        part["merge"] = {x: r.get(x) for x in ("ok", "seconds", "first_match", "mismatched")}
        part["merge"]["swim_counters"] = _delta(c_heal, _counters(devnet))
        r = step("publish after", f"publish {rng.choice(live)} healed", 60)
        part["publish_after"] = {x: r.get(x) for x in ("ok", "seconds", "delivered", "expected")}
        out["partition"] = part
        s2 = devnet.command("stats", 60)
        out["end"] = {"load": s2.get("load"), "workers": s2.get("workers")}
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 — what was measured so far is still reported
        out["stopped"] = f"{type(exc).__name__}: {exc}"
        print(f"  stopped: {out['stopped']}", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the devnet's own shutdown is bounded: let it finish
        try:
            if spy is not None and spy.procs:  # stopped inside a profiled window
                spy.stop()
            if contenders:
                span = time.monotonic() - t_contend
                cpu = _stop(contenders)
                out["contenders"] = {"pids": [p.pid for p in contenders],
                                     "cpu_pct": round(100 * cpu / max(span, 1e-9), 1)}  # fmt: skip
            out["rc"] = devnet.finish()
        finally:
            for p in contenders:  # (_stop interrupted by a second Ctrl-C: none left burning)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            if spy is not None:
                spy.kill()  # (stop() interrupted: no py-spy left attached)
            devnet.close()  # (finish() interrupted by a second Ctrl-C: still nothing left running)
            # Keep the logs of a run that stopped or of a devnet that failed (a failed step is a figure: the report has it).
            if devnet.proc is not None and ("stopped" in out or out.get("rc", 1) != 0):
                print(f"  the devnet's last lines:\n{devnet.log_text(40)}\n  its workers' logs: {home / 'logs'}",
                      file=sys.stderr, flush=True)
            else:
                shutil.rmtree(home, ignore_errors=True)
    out["machine"] = machine()
    return out


def _report(r: dict[str, Any]) -> None:
    def sec(x: Any) -> str:
        return "-" if x is None else f"{x:.1f} s"

    rate = f", joining {r['join_rate']:g} a second" if r.get("join_rate") else ""
    rate += f", {r['seeds']} seeds" if r.get("seeds", 3) != 3 else ""
    c = r.get("contenders")
    beside = f", {r['contend']} CPU-bound processes beside them ({c['cpu_pct']:.0f} % of a core together)" if c else ""
    print(f"{r['nodes']} nodes in {r['procs']} workers{rate}{beside} (seed {r['seed']}, {r['commit']})")
    j = r.get("join", {})
    v = j.get("views") or {}
    fm = v.get("first_match") or {}
    print(f"  join: all up {sec(j.get('up_s'))}, meshes ready at {sec(j.get('ready_s'))}, every record out "
          f"{sec(j.get('records_s'))} after that, every SWIM view whole {sec(v.get('seconds'))} after that "
          f"(each node P50 {fm.get('p50', '-')} / P99 {fm.get('p99', '-')} s)")
    rec = j.get("records") or {}
    if rec.get("published_after", {}).get("n"):
        pa = rec["published_after"]
        failed = ", ".join(f"{k.removeprefix('records_failed_')} {v}" for k, v in rec.items()
                           if k.startswith("records_failed_"))  # fmt: skip
        print(f"  records: each out P50 {pa['p50']} s / P99 {pa['p99']} s / max {pa['max']} s after its node started; "
              f"{rec.get('records_rounds', 0)} rounds, {rec.get('records_round_failures', 0)} with a failed part"
              f"{f' ({failed})' if failed else ''}")
    if "idle" in r:
        i = r["idle"]
        print(f"  idle ({i['seconds']} s): CPU {i['cpu_pct_per_node']} % of a core per node, "
              f"memory {i['rss_mb_per_node']} MiB per node, loopback {i['lo_Bps_per_node']:,} B/s per node "
              f"(load average {i['load']})")
    if "discovery" in r:
        d = r["discovery"]
        print(f"  discovery: {d['n']} finds, P50 {d['p50']} s, P99 {d['p99']} s; found {d['found']} of {d['offering']}")
    if "pubsub" in r:
        p = r["pubsub"]
        nl = p.get("node_latency") or {}
        ld = p.get("last_delivery") or {}
        print(f"  pub/sub: {p['n']} messages, every node reached (the last node's stamp) P50 {ld.get('p50', '-')} s, "
              f"P99 {ld.get('p99', '-')} s (confirmed by the devnet's poll P50 {p['p50']} s, P99 {p['p99']} s); "
              f"delivered {p['delivered']} of {p['expected']}; each node's own delivery time: P50 of the "
              f"publishes' P50s {nl.get('p50_of_p50')} s, P99 of their P99s {nl.get('p99_of_p99')} s; "
              f"the publisher held it P99 {(p.get('publish_held') or {}).get('p99')} s")
        if "cpu_s_per_message" in p:
            cores = max(1, min(r['procs'], os.cpu_count() or 1))
            print(f"  pub/sub window ({p['window_s']} s): the workers used {p['workers_cpu_s']} s of CPU, "
                  f"{p['cpu_s_per_message']} s a message above their idle rate (on {cores} cores: at most "
                  f"{cores / p['cpu_s_per_message'] if p['cpu_s_per_message'] > 0 else float('inf'):.1f} messages "
                  f"a second at this N)")
            c = p.get("swim_counters") or {}
            if c.get("pubsub_rpc_in") is not None and p.get("counted"):
                per = p.get("messages", p["n"]) * p["counted"]  # a message's frames per node
                print(f"    pub/sub frames per message per node: {c.get('pubsub_rpc_in', 0) / per:.1f} read, "
                      f"{c.get('pubsub_rpc_out', 0) / per:.1f} written; copies {c.get('pubsub_forwarded', 0) / per:.1f} "
                      f"sent, {c.get('pubsub_duplicates', 0) / per:.1f} duplicates"
                      f"{' (a worker did not answer a read: partial)' if c.get('partial') else ''}")
    if "failure" in r:
        f = r["failure"]
        fm = f.get("first_match") or {}
        print(f"  failure of {f['killed']} ({f.get('how', 'kill')}): seen by all {sec(f.get('seconds'))} (each node P50 {fm.get('p50', '-')} / "
              f"P99 {fm.get('p99', '-')} s){'' if f.get('ok') else ' NOT within the wait'}")
    if "partition" in r:
        p = r["partition"]
        m, s = p.get("merge", {}), p.get("split_seen", {})
        print(f"  partition ({p['seconds_cut']} s): split seen {sec(s.get('seconds'))}; publish in halves "
              f"{p['publish_a'].get('delivered')}/{p['publish_a'].get('expected')} and "
              f"{p['publish_b'].get('delivered')}/{p['publish_b'].get('expected')}; find in halves "
              f"{p['find_a'].get('matched')}/{p['find_a'].get('expected')} and {p['find_b'].get('matched')}/"
              f"{p['find_b'].get('expected')}; merged {sec(m.get('seconds'))} after the heal"
              f"{'' if m.get('ok') else ' (NOT within the wait)'}; next publish {p['publish_after'].get('delivered')}/"
              f"{p['publish_after'].get('expected')}")
        c = m.get("swim_counters") or {}
        if "dialer_dials" in c or "transport_dials" in c:
            print(f"  merge window: {c.get('dialer_dials', 0)} dial attempts ({c.get('dialer_failures', 0)} failed), "
                  f"{c.get('inbound_accepted', 0)} let in; SWIM opened {c.get('transport_dials', 0)} streams "
                  f"({c.get('transport_dials_unconnected', 0)} needing a connection, {c.get('transport_dial_failures', 0)} "
                  f"failed, {c.get('transport_dial_timeouts', 0)} of them timed out), "
                  f"{c.get('transport_dropped_write', 0)} writes dropped, {c.get('transport_write_timeouts', 0)} timed out"
                  f"{' (a worker did not answer: partial)' if c.get('partial') else ''}")
            for prefix, what in (("transport_dials_for_", "SWIM's opens that needed a connection"),
                                 ("dialer_for_", "the node's dial attempts")):
                asked = sorted(((v, k[len(prefix):] or "?") for k, v in c.items() if k.startswith(prefix)),
                               reverse=True)  # fmt: skip
                if asked:
                    print(f"    {what}, by what asked: " + ", ".join(f"{k} {v}" for v, k in asked))
    for window, workers in r.get("profile", {}).items():
        for name, prof in workers.items():
            if "work" not in prof:
                print(f"  profile, {window} window, {name}: no busy sample")
                continue
            top = ", ".join(f"{k} {v:g} %" for k, v in list(prof["owner"].items())[:5])
            work = ", ".join(f"{k} {v:g} %" for k, v in list(prof["work"].items())[:5])
            print(f"  profile, {window} window ({prof['seconds']:g} s), {name} (busy {prof['busy_pct_of_a_core']:g} % "
                  f"of a core): by owner {top}; by work {work}")
    for f in r.get("failed_steps", []):
        print(f"  failed: {f['step']} ({f['command']})")
    if r.get("stopped"):
        print(f"  stopped: {r['stopped']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--join-rate", type=float, default=0.0,
                    help="the devnet's --join-rate: node starts a second (0: as fast as the workers go)")
    ap.add_argument("--seeds", type=int, default=3,
                    help="the devnet's --seeds: the first S nodes are everyone's bootstrap nodes (the node count: "
                         "each node joins nodes already up, as at 100 nodes here, where 3 seeds starved)")
    ap.add_argument("--settle", type=float, default=30.0, help="seconds between every view whole and the idle window")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of the idle window")
    ap.add_argument("--finds", type=int, default=20)
    ap.add_argument("--publishes", type=int, default=20)
    ap.add_argument("--kill-share", type=float, default=0.02, help="share of the nodes crashed at once (at least 1)")
    ap.add_argument("--kill-worker", action="store_true",
                    help="SIGKILL the last worker process (its nodes die at once) instead of --kill-share nodes")
    ap.add_argument("--detect-timeout", type=float, default=120.0)
    ap.add_argument("--partition-s", type=float, default=60.0)
    ap.add_argument("--merge-timeout", type=float, default=180.0)
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="join: the bound on the network coming up (workers started, nodes up, meshes ready), "
                         "and on each of wait records and wait views")
    ap.add_argument("--contend", type=int, default=0,
                    help="CPU-bound processes run beside the devnet, at the same priority (a shared machine)")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="py-spy (raw stacks into DIR) on every worker in the idle, pub/sub and merge windows; "
                         "the JSON gets each one's CPU shares by work, owner and task (py-spy's own CPU "
                         "shares the cores: a profiled run's figures are not an unprofiled one's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.profile and PySpy(args.profile, "check").py_spy is None:
        ap.error("--profile needs py-spy (pip install py-spy) on PATH or beside this Python")
    if args.nodes < 4:
        ap.error("--nodes must be at least 4 (a kill and two halves)")
    if args.contend < 0:
        ap.error("--contend must be 0 or more")
    if args.kill_worker and args.procs < 2:
        ap.error("--kill-worker needs --procs 2 or more (a worker must be left)")

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM as Ctrl-C: stop the devnet, report what was measured

    signal.signal(signal.SIGTERM, interrupted)
    r = run(args)
    if args.json:
        emit(r, True)
    else:
        _report(r)
    sys.exit(1 if r.get("stopped") else 0)


if __name__ == "__main__":
    main()
