"""Hole punching (DCUtR) behind real NATs: direct where the NATs allow, relayed where not.

In the NAT lab (natlab.py): a public relay and two nodes, each behind its
own NAT. Each node learns it is private (AutoNAT), reserves on the relay
and advertises its circuit. A dials B's circuit; B, reached through the
relay, starts DCUtR over it: the two exchange the addresses their NATs
show, and dial each other at the same moment, so each NAT sees its own
outgoing SYN before the peer's arrives.

* **cone** NATs (Linux keeps the source port): the punch goes through, the
  relayed connection is closed, and the peers talk directly.
* **symmetric** NATs (a random port per connection): the address B was
  told is not where A's SYN leaves from; every attempt fails and the
  connection stays on the relay, still working.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentp2p.testing import DaemonProcess, poll_until
from tests.reachability.daemons import lab_daemon, stats
from tests.reachability.natlab import NatLab, available

_WHY = available()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

#: A short grace period: the test watches the relayed connection go.
FAST_PUNCH = {"AGENTP2P_HOLEPUNCH__GRACE": "0.5"}


@contextlib.contextmanager
def two_behind_nats(lab: NatLab, tmp: Path, kind: str) -> Iterator[tuple[DaemonProcess, DaemonProcess]]:
    """A relay, and A and B behind ``kind`` NATs bootstrapped from it; yields
    (A, B) once B holds a reservation and A is connected to B through it."""
    lab.add_public("relay")
    lab.add_natted("a", kind)
    lab.add_natted("b", kind)
    with lab_daemon(lab, tmp, "relay", env={"AGENTP2P_RELAY__SERVICE": "on"}) as relay:
        with lab_daemon(lab, tmp, "a", "--bootstrap", relay.addr, env=FAST_PUNCH) as a, \
                lab_daemon(lab, tmp, "b", "--bootstrap", relay.addr, env=FAST_PUNCH) as b:
            poll_until(lambda: reserved(b), 30, "B's reservation on the relay")
            with a.sync_client() as c:
                c.connect(f"{reserved(b)[0]}/p2p/{b.peer_id}")
            yield a, b


def connections_to(d: DaemonProcess, peer: str) -> list:
    with d.sync_client() as c:
        return [conn for p in c.peers() if p.peer_id == peer for conn in p.connections]


def reserved(d: DaemonProcess) -> list[str]:
    return stats(d)["relay"]["circuit_addrs"]


def test_cone_nats_are_punched_through(lab: NatLab, tmp_path: Path) -> None:
    with two_behind_nats(lab, tmp_path, "cone") as (a, b), a.sync_client() as c:
        poll_until(lambda: stats(b)["holepunch"].get("direct_by_punch") == 1, 30, "B's punch")
        # Direct both ways, the relayed connection gone.
        poll_until(lambda: [x.relayed for x in connections_to(a, b.peer_id)] == [False], 15,
                   "A's only connection to B to be direct")
        poll_until(lambda: [x.relayed for x in connections_to(b, a.peer_id)] == [False], 15,
                   "B's only connection to A to be direct")
        # ... between the NATs' public addresses.
        (conn,) = connections_to(a, b.peer_id)
        assert any(f"/{lab.hosts['b'].public_ip}/" in r for r in conn.remote_addrs), conn
        assert c.ping(b.peer_id) > 0
        c.send(b.peer_id, "directly", wait="stored", timeout=20)
        hp = stats(b)["holepunch"]
        assert hp["attempts"] >= 1 and hp["observed_ips"] == [lab.hosts["b"].public_ip]
        assert "hole punching: 1 relayed connection(s) made direct (punch 1)" in b.run_cli("status").stdout


def test_symmetric_nats_stay_on_the_relay(lab: NatLab, tmp_path: Path) -> None:
    with two_behind_nats(lab, tmp_path, "symmetric") as (a, b), a.sync_client() as c:
        poll_until(lambda: stats(b)["holepunch"].get("failed") == 1, 60, "B to give up")
        hp = stats(b)["holepunch"]
        assert hp["attempts"] == 3 and hp["punches_failed"] == 3 and "punches_ok" not in hp
        assert [x.relayed for x in connections_to(a, b.peer_id)] == [True]
        assert c.ping(b.peer_id) > 0  # still reachable, through the relay
