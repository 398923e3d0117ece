"""AutoNAT behind real NATs: the verdicts are right.

Daemons run in the NAT lab's namespaces (tests/reachability/natlab.py):
two AutoNAT servers and a public node on the "internet", and a node behind
a NAT router. The public node learns it is public, at its own address; the
NATed node learns it is private — its servers' dial-backs to its router
are dropped, as a home router drops them. The control API is a unix
socket, which crosses namespaces.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentp2p.testing import DaemonProcess, poll_until
from tests.reachability.daemons import lab_daemon
from tests.reachability.natlab import NatLab, available

_WHY = available()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

#: Two servers must agree.
ENV = {"AGENTP2P_AUTONAT__CONFIRMATIONS": "2"}


def daemon(lab: NatLab, tmp: Path, name: str, *flags: str) -> DaemonProcess:
    return lab_daemon(lab, tmp, name, *flags, env=ENV)


def autonat(d: DaemonProcess) -> dict:
    with d.sync_client() as c:
        return c.stats()["autonat"]


def test_public_and_natted_nodes_learn_their_reachability(lab: NatLab, tmp_path: Path) -> None:
    for name in ("s1", "s2", "pub"):
        lab.add_public(name)
    natted = lab.add_natted("priv", "cone")
    with daemon(lab, tmp_path, "s1") as s1, daemon(lab, tmp_path, "s2", "--bootstrap", s1.addr) as s2:
        both = ["--bootstrap", s1.addr, "--bootstrap", s2.addr]
        with daemon(lab, tmp_path, "pub", *both) as pub, daemon(lab, tmp_path, "priv", *both) as priv:
            poll_until(lambda: autonat(pub)["reachability"] != "unknown", 30, "the public node's verdict")
            poll_until(lambda: autonat(priv)["reachability"] != "unknown", 30, "the NATed node's verdict")
            seen_pub, seen_priv = autonat(pub), autonat(priv)
            assert seen_pub["reachability"] == "public"
            assert seen_pub["public_addrs"] == [f"/ip4/{lab.hosts['pub'].ip}/tcp/4001"]
            assert seen_priv["reachability"] == "private", seen_priv
            assert seen_priv["client"]["unreachable"] >= 2 and seen_priv["public_addrs"] == []
            # The servers tried the NATed node where they saw it: its router's address.
            served = [autonat(s)["server"] for s in (s1, s2)]
            assert sum(s["dial_error"] for s in served) >= 2
            assert natted.public_ip != natted.ip
            # Operators see it in `agentp2p status`.
            assert f"reachability:  public at /ip4/{lab.hosts['pub'].ip}/tcp/4001" in pub.run_cli("status").stdout
            assert "reachability:  private (" in priv.run_cli("status").stdout


def test_a_natted_node_leaves_the_dht_to_those_who_can_serve_it(lab: NatLab, tmp_path: Path) -> None:
    """dht.mode = "auto": the NATed node turns client (no Kademlia handler,
    so peers stop listing it), the public one stays a server."""
    for name in ("s1", "s2", "pub"):
        lab.add_public(name)
    lab.add_natted("priv", "symmetric")
    with daemon(lab, tmp_path, "s1") as s1, daemon(lab, tmp_path, "s2", "--bootstrap", s1.addr) as s2:
        both = ["--bootstrap", s1.addr, "--bootstrap", s2.addr]
        with daemon(lab, tmp_path, "pub", *both) as pub, daemon(lab, tmp_path, "priv", *both) as priv:
            poll_until(lambda: dht_mode(priv) == "auto (client)", 30, "the NATed node's DHT mode")
            assert autonat(priv)["reachability"] == "private"
            with priv.sync_client() as c:
                assert not any("/kad/" in p for p in c.node().protocols)
            poll_until(lambda: autonat(pub)["reachability"] == "public", 30, "the public node's verdict")
            assert dht_mode(pub) == "auto (server)"
            with pub.sync_client() as c:
                assert "/agentp2p/kad/1.0.0" in c.node().protocols


def dht_mode(d: DaemonProcess) -> str:
    with d.sync_client() as c:
        return c.stats()["dht"]["mode"]
