"""Hole punching (DCUtR) with go-libp2p, both roles, behind real NATs.

In the NAT lab (tests/reachability/natlab.py): our relay on the lab's
internet, and two peers behind their own cone NATs, one of them a
go-libp2p node running go-libp2p's hole punching service.

* go-libp2p is **B**: it holds a reservation on our relay, our node dials
  its circuit, and go-libp2p starts DCUtR over the relayed connection; our
  node answers (A: the security client) and the two punch through.
* go-libp2p is **A**: our node holds the reservation and starts DCUtR when
  go-libp2p dials its circuit; go-libp2p answers.

Either way both ends end with a direct connection between the NATs'
public addresses. go-libp2p punches only with addresses manet calls
public, so this lab's internet is not TEST-NET-3 (see NatLab.public_net).
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

DCUTR = "/libp2p/dcutr"
#: An internet go-libp2p calls public (it exists only inside the lab).
LAB_INTERNET = "1.2.3"


@pytest.fixture
def lab() -> Iterator[NatLab]:
    with NatLab(public_net=LAB_INTERNET) as lab:
        yield lab


def go_in(lab: NatLab, binary: Path, name: str, *flags: str) -> GoPeer:
    host = lab.hosts[name]
    return GoPeer(binary, listen=[f"/ip4/{host.ip}/tcp/4001"], flags=("--holepunch", *flags),
                  wrap=tuple(lab.exec_args(host)))


async def conns_of(d: DaemonProcess, peer: str) -> list:
    async with d.client() as c:
        return [conn for p in await c.peers() if p.peer_id == peer for conn in p.connections]


async def go_conns(go: GoPeer, peer: str) -> list[dict]:
    return (await go.command("conns", peer))["conns"]


async def serves_dcutr(relay: DaemonProcess, go: GoPeer) -> bool:
    """go-libp2p serves DCUtR only once it knows a public address of its own
    (observed by the relay): the relay hears of it by identify push."""
    async with relay.client() as c:
        return DCUTR in (await c.peer(go.peer_id)).protocols


async def test_go_libp2p_punches_through_to_us(lab: NatLab, go_peer_binary: Path, tmp_path: Path) -> None:
    lab.add_public("relay")
    lab.add_natted("a", "cone")
    lab.add_natted("b", "cone")
    async with lab_daemon(lab, tmp_path, "relay", env={"AGENTP2P_RELAY__SERVICE": "on"}) as relay:
        async with go_in(lab, go_peer_binary, "b", "--reserve", relay.addr) as go, \
                lab_daemon(lab, tmp_path, "a", "--bootstrap", relay.addr) as a:
            await _wait(lambda: serves_dcutr(relay, go), 30, "go-libp2p to serve DCUtR")
            async with a.client() as c:
                await c.connect(f"{relay.addr}/p2p-circuit/p2p/{go.peer_id}")
            # go-libp2p (B) punches; we answer as A.
            await _wait(lambda: _direct_only(conns_of(a, go.peer_id)), 30, "our connection to go to be direct")
            (conn,) = await conns_of(a, go.peer_id)
            assert any(f"/{lab.hosts['b'].public_ip}/" in r for r in conn.remote_addrs), conn
            await _wait(lambda: _go_direct(go, a.peer_id), 15, "go's connection to us to be direct")
            async with a.client() as c:
                assert await c.ping(go.peer_id) > 0
                hp = (await c.stats())["holepunch"]
            assert hp["answered"] == 1 and hp["punches_ok"] == 1


async def test_we_punch_through_to_go_libp2p(lab: NatLab, go_peer_binary: Path, tmp_path: Path) -> None:
    lab.add_public("relay")
    lab.add_natted("a", "cone")
    lab.add_natted("b", "cone")
    async with lab_daemon(lab, tmp_path, "relay", env={"AGENTP2P_RELAY__SERVICE": "on"}) as relay:
        async with lab_daemon(lab, tmp_path, "b", "--bootstrap", relay.addr) as b, \
                go_in(lab, go_peer_binary, "a", "--bootstrap", relay.addr) as go:
            await _wait(lambda: _reserved(b), 30, "our reservation on the relay")
            await _wait(lambda: serves_dcutr(relay, go), 30, "go-libp2p to serve DCUtR")
            circuit = (await _stats(b))["relay"]["circuit_addrs"][0]
            await go.connect(f"{circuit}/p2p/{b.peer_id}")
            # We (B) punch; go-libp2p answers as A.
            await _wait(lambda: _direct_only(conns_of(b, go.peer_id)), 30, "our connection to go to be direct")
            await _wait(lambda: _go_direct(go, b.peer_id), 15, "go's connection to us to be direct")
            (conn,) = await go_conns(go, b.peer_id)
            assert f"/{lab.hosts['b'].public_ip}/" in conn["remote_addr"], conn
            hp = (await _stats(b))["holepunch"]
            assert hp["direct_by_punch"] == 1
            assert await go.ping(b.peer_id) > 0


async def _stats(d: DaemonProcess) -> dict:
    async with d.client() as c:
        return await c.stats()


async def _reserved(d: DaemonProcess) -> bool:
    return bool((await _stats(d))["relay"]["circuit_addrs"])


async def _direct_only(conns_coro: object) -> bool:
    conns = await conns_coro  # type: ignore[misc]
    return [c.relayed for c in conns] == [False]


async def _go_direct(go: GoPeer, peer: str) -> bool:
    return [c["limited"] for c in await go_conns(go, peer)] == [False]


async def _wait(predicate: object, timeout: float, what: str) -> None:
    """``await predicate()`` until true, within ``timeout`` (another process's state: polled)."""
    with trio.move_on_after(timeout):
        while not await predicate():  # type: ignore[operator]
            await trio.sleep(0.1)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
