"""AutoNAT v1 with go-libp2p's server, behind real NATs.

A go-libp2p node serving AutoNAT (its ``EnableNATService``) on the lab's
internet, and two of our daemons that bootstrap from it: one public, one
behind a NAT. go-libp2p's server is the only one they can ask, and it
judges them as it would on the internet: it dials back the asker's
observed IP, public addresses only (so this lab's internet is a range
``manet.IsPublicAddr`` accepts; see NatLab.public_net). Our client reads
its answers into the right verdicts: ``public`` at the node's own address,
``private`` for the NATed one, which turns DHT client. (Our daemons' own
AutoNAT servers are off, so every answer is go-libp2p's.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from agentp2p.testing import DaemonProcess
from tests.interop.gopeer import GoPeer
from tests.reachability.daemons import lab_daemon
from tests.reachability.natlab import NatLab, available

_WHY = available()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(_WHY is not None, reason=_WHY or "")]

#: An internet go-libp2p calls public (it exists only inside the lab).
LAB_INTERNET = "1.2.3"


@pytest.fixture
def lab() -> Iterator[NatLab]:
    with NatLab(public_net=LAB_INTERNET) as lab:
        yield lab


async def _autonat(d: DaemonProcess) -> dict:
    async with d.client() as c:
        return (await c.stats())["autonat"]


async def _verdict(d: DaemonProcess, timeout: float = 60) -> dict:
    with trio.move_on_after(timeout):
        while (st := await _autonat(d))["reachability"] == "unknown":
            await trio.sleep(0.1)
        return st
    raise AssertionError(f"no verdict within {timeout}s: {await _autonat(d)}")


async def test_go_libp2p_autonat_server_judges_our_nodes(lab: NatLab, go_peer_binary: Path, tmp_path: Path) -> None:
    lab.add_public("server")
    lab.add_public("pub")
    lab.add_natted("priv", "cone")
    server = lab.hosts["server"]
    async with GoPeer(go_peer_binary, listen=[f"/ip4/{server.ip}/tcp/4001"], flags=("--autonat-service",),
                      wrap=tuple(lab.exec_args(server))) as go:
        boot = go.addrs[0]
        # go-libp2p's server answers "dial error" only once its own 15 s
        # dial-back timeout passes (the NAT drops the SYN): wait for it as
        # our default request timeout (30 s) does, not the lab's quick 8 s.
        only_go = {"AGENTP2P_AUTONAT__SERVER": "false", "AGENTP2P_AUTONAT__REQUEST_TIMEOUT": "30"}
        async with lab_daemon(lab, tmp_path, "pub", "--bootstrap", boot, env=only_go) as pub, \
                lab_daemon(lab, tmp_path, "priv", "--bootstrap", boot, env=only_go) as priv:
            public = await _verdict(pub)
            assert public["reachability"] == "public"
            assert public["public_addrs"] == [f"/ip4/{lab.hosts['pub'].ip}/tcp/4001"]
            private = await _verdict(priv)
            assert private["reachability"] == "private" and not private["public_addrs"]
            async with priv.client() as c:
                assert (await c.stats())["dht"]["mode"] == "auto (client)"
