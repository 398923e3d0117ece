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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentp2p.testing import DaemonProcess, poll_until
from tests.reachability.natlab import NatLab, available

_WHY = available()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

ENV = {
    "AGENTP2P_AUTONAT__CONFIRMATIONS": "1",
    "AGENTP2P_AUTONAT__BOOT_DELAY": "0.2",
    "AGENTP2P_AUTONAT__DIAL_TIMEOUT": "3",
    "AGENTP2P_AUTONAT__REQUEST_TIMEOUT": "8",
    "AGENTP2P_SWIM": "false",
}


@pytest.fixture
def lab() -> Iterator[NatLab]:
    with NatLab() as lab:
        yield lab


def daemon(lab: NatLab, tmp: Path, name: str, *flags: str, env: dict[str, str] | None = None) -> DaemonProcess:
    host = lab.hosts[name]
    return DaemonProcess(
        tmp / name, *flags, name=name, listen=f"/ip4/{host.ip}/tcp/4001", api=f"unix:{tmp / name}.sock",
        extra_env={**ENV, **(env or {})}, wrap=lab.exec_args(host),
    )


def receive_within(sub: Any, timeout: float) -> Any:
    """``sub.receive()`` with a deadline (the event stream itself has none)."""
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(sub.receive()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert got, f"no message within {timeout}s"
    return got[0]


def stats(d: DaemonProcess) -> dict:
    with d.sync_client() as c:
        return c.stats()


def test_a_node_behind_a_nat_is_reachable_through_a_relay(lab: NatLab, tmp_path: Path) -> None:
    lab.add_public("relay")
    lab.add_public("pub")
    lab.add_natted("priv", "symmetric")
    with daemon(lab, tmp_path, "relay", env={"AGENTP2P_RELAY__SERVICE": "on"}) as relay:
        with daemon(lab, tmp_path, "priv", "--bootstrap", relay.addr, "--agent-name", "priv",
                    "--capability", "translate") as priv:
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
