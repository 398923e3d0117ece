"""Circuit relay v2 behind a real NAT: a node nobody can dial is reachable.

In the NAT lab (natlab.py): a public relay, a public node, and a node
behind a symmetric NAT (hole punching could not cross it; the relay is its
only way in). Nothing is configured by hand on the NATed node: AutoNAT
finds it private, it reserves a slot on the relay it is connected to
(``auto_relay``), and its record carries the ``/p2p-circuit`` address. The
public node finds it by capability and reaches it through the relay:
ping, a stored direct message, pub/sub.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agentp2p.testing import DaemonProcess, poll_until
from tests.reachability.daemons import lab_daemon, stats
from tests.reachability.natlab import NatLab, available

_WHY = available()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")


#: The NATed nodes here do not hole-punch: the NATed node would dial the
#: public one directly (a DCUtR reversal) and the relay would carry nothing
#: after the first contact (test_holepunch_nat.py tests that).
NO_PUNCH = {"AGENTP2P_HOLEPUNCH__ENABLED": "false"}


def daemon(lab: NatLab, tmp: Path, name: str, *flags: str, env: dict[str, str] | None = None,
           host: str | None = None, port: int = 4001) -> DaemonProcess:
    return lab_daemon(lab, tmp, name, *flags, env=env, host=host, port=port)


def receive_within(sub: Any, timeout: float) -> Any:
    """``sub.receive()`` with a deadline (the event stream itself has none)."""
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(sub.receive()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert got, f"no message within {timeout}s"
    return got[0]


def test_a_node_behind_a_nat_is_reachable_through_a_relay(lab: NatLab, tmp_path: Path) -> None:
    lab.add_public("relay")
    lab.add_public("pub")
    lab.add_natted("priv", "symmetric")
    with daemon(lab, tmp_path, "relay", env={"AGENTP2P_RELAY__SERVICE": "on"}) as relay:
        with daemon(lab, tmp_path, "priv", "--bootstrap", relay.addr, "--agent-name", "priv",
                    "--capability", "translate", env=NO_PUNCH) as priv:
            poll_until(lambda: stats(priv)["relay"]["circuit_addrs"], 30, "the NATed node's reservation")
            st = stats(priv)
            assert st["autonat"]["reachability"] == "private"
            circuit = st["relay"]["circuit_addrs"][0]
            assert circuit == f"{relay.addr}/p2p-circuit"
            status = priv.run_cli("status").stdout
            assert "reachable through 1 relay(s)" in status and circuit in status
            assert "relay:         serving (1 reservations" in relay.run_cli("status").stdout
            with daemon(lab, tmp_path, "pub", "--bootstrap", relay.addr) as pub, pub.sync_client() as c:
                # Found by what it does, with an address that works from outside.
                poll_until(lambda: c.find_agents("translate"), 30, "the NATed agent's record")
                (agent,) = c.find_agents("translate")
                assert agent.peer_id == priv.peer_id
                assert any(a.startswith(circuit) for a in agent.record.addrs), agent.record.addrs
                assert c.ping(priv.peer_id) > 0
                c.send(priv.peer_id, "hello from outside", wait="stored", timeout=20)
                with priv.sync_client() as pc, pc.subscribe("news") as sub:
                    # Publish once pub knows of the subscription (it travels over the circuit too).
                    poll_until(lambda: priv.peer_id in c.topic_peers("news"), 20, "pub sees the subscription")
                    c.publish("news", "relayed news")
                    assert receive_within(sub, 20).data == b"relayed news"
                through = stats(relay)["relay"]["relay"]
                assert through["circuits"] >= 1 and through["reservations_held"] == 1


def test_relay_limits_hold_against_a_greedy_nat(lab: NatLab, tmp_path: Path) -> None:
    """Behind one NAT, many identities share one public address: the relay
    counts reservations by that address, so a second identity behind the
    same router is refused while the first is served; and a peer pushing
    more through a circuit than its data limit gets the circuit cut (and
    opens a new one: nothing is lost, the relay spends no more than its
    limit on any one circuit)."""
    lab.add_public("relay")
    lab.add_public("pub")
    lab.add_natted("home", "symmetric")  # no hole punching: the relay carries everything
    env = {"AGENTP2P_RELAY__SERVICE": "on", "AGENTP2P_RELAY__MAX_RESERVATIONS_PER_IP": "1",
           "AGENTP2P_RELAY__CIRCUIT_DATA": "131072"}
    with daemon(lab, tmp_path, "relay", env=env) as relay:
        with daemon(lab, tmp_path, "home", "--bootstrap", relay.addr, env=NO_PUNCH) as first:
            poll_until(lambda: stats(first)["relay"]["circuit_addrs"], 30, "the first identity's reservation")
            with daemon(lab, tmp_path, "second", "--bootstrap", relay.addr, env=NO_PUNCH, host="home",
                        port=4002) as second:
                poll_until(lambda: stats(second)["relay"]["client"].get("reservations_failed", 0) >= 1, 30,
                           "the second identity to be refused")
                assert not stats(second)["relay"]["circuit_addrs"]
                books = stats(relay)["relay"]["relay"]
                assert books["books_refused_ip"] >= 1 and books["reservations_held"] == 1
            circuit = stats(first)["relay"]["circuit_addrs"][0] + f"/p2p/{first.peer_id}"
            with daemon(lab, tmp_path, "pub", "--bootstrap", relay.addr) as pub, pub.sync_client() as c:
                c.connect(circuit)
                for i in range(6):  # 6 x 48 KiB through circuits of 128 KiB
                    c.send(first.peer_id, bytes([i]) * 48 * 1024, wait="stored", timeout=30)
                through = stats(relay)["relay"]["relay"]
                # Each send returned once stored in the inbox: all six arrived.
                assert through["ended_data_limit"] >= 1 and through["circuits"] >= 2
