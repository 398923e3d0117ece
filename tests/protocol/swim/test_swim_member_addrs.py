"""The adapter gives the core the addresses of members it admitted without
any (a frame's header says who, never where), once identify has put them in
the peerstore. The core's side (what it keeps and passes on) is in
test_swim_core.py (``admitted_from_a_header``)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.protocol.swim import Message, Ping, Received, SwimConfig, SwimCore, Tick
from agentp2p.protocol.swim import service as swim_service
from agentp2p.protocol.swim.service import SwimService
from agentp2p.protocol.swim.transport import SwimTransport
from agentp2p.simulation.swim import sim_signer, sim_verify
from tests.protocol.swim.swimhelpers import pid

ADDR = Multiaddr("/ip4/127.0.0.1/tcp/4001")


class _Peerstore:
    """The dialer's view of the peerstore: empty until identify answers."""

    def __init__(self) -> None:
        self.addrs: dict[ID, list[Multiaddr]] = {}

    def known_addrs(self, peer: ID) -> list[Multiaddr]:
        return list(self.addrs.get(peer, []))


def _service() -> tuple[SwimService, SwimCore, _Peerstore]:
    service = SwimService()
    core = SwimCore(pid("a"), rng=random.Random(1), now=0.0, config=SwimConfig(gossip_interval=0),
                    sign=sim_signer(pid("a")), verify=sim_verify)  # fmt: skip
    store = _Peerstore()
    service._core = core
    service._node = SimpleNamespace(dialer=store)  # type: ignore[assignment]
    # Not running: what the core sends is dropped (counted), which is all this needs.
    service._transport = SwimTransport(store, lambda _p, _f: None, dial_timeout=1, write_timeout=1)  # type: ignore[arg-type]
    return service, core, store


async def test_a_member_admitted_without_addresses_gets_them_once_identify_has_answered() -> None:
    service, core, store = _service()
    service._step(Received(pid("b"), Message(1, 3, Ping(pid("a")))))
    assert core.member(pid("b")).live and core.member(pid("b")).addrs == ()
    service._step(Tick())
    assert core.member(pid("b")).addrs == ()  # nothing in the peerstore yet: still looked for
    store.addrs[ID(pid("b"))] = [Multiaddr("/ip4/0.0.0.0/tcp/4001")]  # a wildcard: nobody can dial it
    service._addrless_next = 0.0  # (a second later: looked up at most once a second)
    service._step(Tick())
    assert core.member(pid("b")).addrs == () and service._addrless
    store.addrs[ID(pid("b"))].append(ADDR)
    service._step(Tick())
    assert core.member(pid("b")).addrs == ()  # within the second: not looked up again
    service._addrless_next = 0.0
    service._step(Tick())
    assert core.member(pid("b")).addrs == (ADDR.to_bytes(),)
    assert core.stats.addrs_learnt == 1 and not service._addrless


async def test_the_search_for_addresses_is_bounded_in_time_and_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swim_service, "MAX_ADDRLESS", 3)
    service, core, store = _service()
    for name in "bcdef":
        service._step(Received(pid(name), Message(1, 0, Ping(pid("a")))))
    assert len(service._addrless) == 3  # the others are not looked for
    # Past ADDRLESS_WAIT they are given up: a peer that never answers identify costs nothing more.
    for peer in service._addrless:
        service._addrless[peer] = 0.0
    service._addrless_next = 0.0
    service._step(Tick())
    assert not service._addrless and core.stats.addrs_learnt == 0
    store.addrs[ID(pid("b"))] = [ADDR]  # too late: no longer looked for
    service._addrless_next = 0.0
    service._step(Tick())
    assert core.member(pid("b")).addrs == ()
