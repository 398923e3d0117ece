"""How long a node takes to learn its reachability, and to become reachable
through a relay, behind real NATs (tests/reachability/natlab.py; needs root).

Daemons with the default settings (``AGENTP2P_SWIM=false`` only, to keep
the machine quiet) in the NAT lab: three public nodes that bootstrap from
each other (AutoNAT servers, and relays once they find themselves public),
then a public node and a node behind a ``--nat`` NAT, each bootstrapping
from all three. Reported, from each newcomer's start: its AutoNAT verdict,
and for the NATed one its first ``/p2p-circuit`` address; then how long a
fresh public node takes to reach it through the relay (connect and ping).

    sudo .venv/bin/python benchmarks/reachability_lab.py [--nat symmetric]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentp2p.testing import DaemonProcess  # noqa: E402
from benchmarks.common import until  # noqa: E402
from tests.reachability.daemons import stats  # noqa: E402
from tests.reachability.natlab import NatLab, available  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nat", choices=["cone", "symmetric"], default="symmetric")
    args = p.parse_args()
    why = available()
    if why:
        raise SystemExit(why)
    tmp = Path(tempfile.mkdtemp(prefix="reach-"))
    env = {"AGENTP2P_SWIM": "false"}

    def daemon(lab: NatLab, name: str, *flags: str) -> DaemonProcess:
        host = lab.hosts[name]
        return DaemonProcess(tmp / name, *flags, name=name, listen=f"/ip4/{host.ip}/tcp/4001",
                             api=f"unix:{tmp / name}.sock", extra_env=env, wrap=lab.exec_args(host))

    with NatLab() as lab:
        for name in ("s1", "s2", "s3", "pub", "late"):
            lab.add_public(name)
        lab.add_natted("priv", args.nat)
        with daemon(lab, "s1") as s1, daemon(lab, "s2", "--bootstrap", s1.addr) as s2, \
                daemon(lab, "s3", "--bootstrap", s1.addr, "--bootstrap", s2.addr) as s3:
            boot = [f for s in (s1, s2, s3) for f in ("--bootstrap", s.addr)]
            t0 = time.monotonic()
            with daemon(lab, "pub", *boot) as pub, daemon(lab, "priv", *boot) as priv:
                t_pub = until(lambda: stats(pub)["autonat"]["reachability"] != "unknown") - t0
                t_priv = until(lambda: stats(priv)["autonat"]["reachability"] != "unknown") - t0
                t_circ = until(lambda: bool(stats(priv)["relay"]["circuit_addrs"])) - t0
                print({"nat": args.nat, "public_verdict": stats(pub)["autonat"]["reachability"],
                       "public_verdict_s": round(t_pub, 1), "natted_verdict": stats(priv)["autonat"]["reachability"],
                       "natted_verdict_s": round(t_priv, 1), "natted_circuit_s": round(t_circ, 1)}, flush=True)
                circuit = stats(priv)["relay"]["circuit_addrs"][0] + f"/p2p/{priv.peer_id}"
                with daemon(lab, "late", *boot) as late, late.sync_client() as c:
                    t1 = time.monotonic()
                    c.connect(circuit)
                    rtt = c.ping(priv.peer_id)
                    print({"relayed_connect_and_ping_s": round(time.monotonic() - t1, 3),
                           "relayed_rtt_ms": round(rtt * 1000, 2)}, flush=True)


if __name__ == "__main__":
    main()
