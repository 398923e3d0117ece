"""The allow list: off, it admits everyone and cannot be edited; on, it
admits only its peers, both ways, bounded; on real sockets too."""

from __future__ import annotations

import pytest

from agentp2p.errors import ConfigError, DialError, PeerRefused
from agentp2p.config import build_config
from agentp2p.network.allowlist import AllowList, AllowListFull, AllowListOff
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


def test_off_it_admits_everyone_and_refuses_edits() -> None:
    off = AllowList()
    assert off.permits("anyone") and off.stats()["refused_total"] == 0
    with pytest.raises(AllowListOff):
        off.add(["a"])
    with pytest.raises(AllowListOff):
        off.remove(["a"])


def test_on_it_admits_only_its_peers_and_is_bounded() -> None:
    on = AllowList(["a"], enabled=True, max_entries=2)
    assert on.permits("a") and not on.permits("b")
    assert on.stats() == {"enabled": True, "allowed_now": 1, "refused_total": 1}
    assert on.add(["a", "b"]) == ["b"]
    with pytest.raises(AllowListFull):
        on.add(["c"])
    assert on.remove(["a", "z"]) == ["a"]
    assert sorted(on.peers()) == ["b"]
    empty = AllowList(enabled=True)
    assert not empty.permits("a")  # on and empty: nobody, never everybody


def test_config_rules() -> None:
    peer = "12D3KooWBJ3Ypyy3frwDUdMC7ouP8WHiKESqUr6fVmvgwze9yoP2"
    with pytest.raises(ConfigError, match="allow_only is false"):
        build_config(environ={"AGENTP2P_ALLOW": peer})
    with pytest.raises(ConfigError, match="allow: 'x' is not a valid peer ID"):
        build_config(environ={"AGENTP2P_ALLOW_ONLY": "1", "AGENTP2P_ALLOW": "x"})
    other = "12D3KooWC1eEcGbRhz7oAGdp2KG2fKE1MfBwoygdu7Jhi5qqCPHF"
    with pytest.raises(ConfigError, match="not in allow"):
        build_config(environ={"AGENTP2P_ALLOW_ONLY": "1", "AGENTP2P_ALLOW": peer,
                              "AGENTP2P_BOOTSTRAP": f"/ip4/127.0.0.1/tcp/1/p2p/{other}"})  # fmt: skip
    cfg = build_config(environ={"AGENTP2P_ALLOW_ONLY": "true", "AGENTP2P_ALLOW": peer})
    assert cfg.allow_only and cfg.allow == [peer]


async def test_only_admitted_peers_connect_both_ways_and_edits_apply_at_once() -> None:
    async with Node(local_config()) as b, Node(local_config()) as c:
        async with Node(local_config(allow_only=True, allow=[str(b.peer_id)])) as a:
            assert a.allowed() == [b.peer_id]
            await b.connect(a.addrs[0])
            await wait_until(lambda: a.is_connected(b.peer_id), what="b admitted")

            with pytest.raises(PeerRefused, match="allow list"):
                await a.connect(c.addrs[0])
            with pytest.raises(DialError):  # refused by a's gate after Noise
                await c.connect(a.addrs[0])
            assert not a.is_connected(c.peer_id)
            assert a.stats()["allowlist"]["refused_total"] >= 2

            assert a.add_allowed(c.peer_id) == [c.peer_id]
            await c.connect(a.addrs[0])
            await wait_until(lambda: a.is_connected(c.peer_id), what="c admitted once added")

            assert await a.remove_allowed(b.peer_id) == [b.peer_id]
            await wait_until(lambda: not a.is_connected(b.peer_id) and not b.is_connected(a.peer_id),
                             what="b cut off once removed")  # fmt: skip
            with pytest.raises(DialError):
                await b.connect(a.addrs[0])
