"""How long hole punching takes behind real NATs, and what it saves
(tests/reachability/natlab.py; needs root).

In the NAT lab: a public relay and two nodes behind their own NATs of one
kind (default settings but the lab tests' quick AutoNAT — the relay is the
only server, so one answer decides — and SWIM off to keep the machine quiet).
B reserves on the relay; A dials B's circuit and pings B through it. Then,
per run: how long until A's only connection to B is direct (from A's
connect call) A has a direct connection, and until the relayed one is
closed (after the ``grace`` period, 5 s); B's own figure for the upgrade
(``direct_after_ms``: from the relayed connection to a direct one); the
round trip of the first ping (through the relay) and after. Behind symmetric NATs: how long until B gives up, and that A still
reaches B through the relay.

    sudo .venv/bin/python benchmarks/holepunch_lab.py [--nat cone|symmetric] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentp2p.testing import DaemonProcess  # noqa: E402
from benchmarks.common import until as poll_until  # noqa: E402
from tests.reachability.daemons import lab_daemon, stats  # noqa: E402
from tests.reachability.natlab import NatLab, available  # noqa: E402


def relayed_flags(d: DaemonProcess, peer: str) -> list[bool]:
    with d.sync_client() as c:
        return [conn.relayed for p in c.peers() if p.peer_id == peer for conn in p.connections]


def until(pred, timeout: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    return poll_until(pred, timeout, interval=0.02)  # the figures' resolution


def one_run(nat: str, tmp: Path) -> dict:
    def daemon(lab: NatLab, name: str, *flags: str) -> DaemonProcess:
        # The lab tests' daemon: one AutoNAT server (the relay) decides; SWIM off.
        return lab_daemon(lab, tmp, name, *flags)

    with NatLab() as lab:
        lab.add_public("relay")
        lab.add_natted("a", nat)
        lab.add_natted("b", nat)
        with daemon(lab, "relay") as relay:
            with daemon(lab, "a", "--bootstrap", relay.addr) as a, daemon(lab, "b", "--bootstrap", relay.addr) as b:
                until(lambda: bool(stats(b)["relay"]["circuit_addrs"]))
                circuit = stats(b)["relay"]["circuit_addrs"][0] + f"/p2p/{b.peer_id}"
                with a.sync_client() as c:
                    t0 = time.monotonic()
                    c.connect(circuit)
                    rtt_first = c.ping(b.peer_id)
                    if nat == "cone":
                        t_direct = until(lambda: False in relayed_flags(a, b.peer_id)) - t0
                        t_only = until(lambda: relayed_flags(a, b.peer_id) == [False]) - t0
                        rtts = [c.ping(b.peer_id) for _ in range(20)]
                        hp = stats(b)["holepunch"]
                        return {"direct_s": t_direct, "relay_closed_s": t_only,
                                "upgrade_ms": hp["direct_after_ms"]["p50"],
                                "rtt_first_ms": rtt_first * 1000, "rtt_direct_ms": statistics.median(rtts) * 1000,
                                "how": [k for k in hp if k.startswith("direct_by_")]}
                    t_gave_up = until(lambda: stats(b)["holepunch"].get("failed") == 1) - t0
                    rtts = [c.ping(b.peer_id) for _ in range(20)]
                    return {"gave_up_s": t_gave_up, "rtt_relayed_ms": statistics.median(rtts) * 1000,
                            "still_relayed": relayed_flags(a, b.peer_id) == [True]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nat", choices=["cone", "symmetric"], default="cone")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    why = available()
    if why:
        raise SystemExit(why)
    results = []
    for i in range(args.runs):
        r = one_run(args.nat, Path(tempfile.mkdtemp(prefix="punch-")))
        print({"run": i + 1, **{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}}, flush=True)
        results.append(r)
    keys = [k for k, v in results[0].items() if isinstance(v, float)]
    print({"nat": args.nat, "runs": args.runs,
           **{f"median_{k}": round(statistics.median(r[k] for r in results), 2) for k in keys}}, flush=True)


if __name__ == "__main__":
    main()
