"""The deny list: bounded, all-or-nothing, and on real sockets a denied peer
is disconnected and refused both ways until it is allowed again."""

from __future__ import annotations

import pytest

from agentp2p.errors import DialError
from agentp2p.network.denylist import DenyList, DenyListFull
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


def test_deny_allow_clear_report_what_changed() -> None:
    dl = DenyList()
    assert dl.deny(["a", "b", "a"]) == ["a", "b"]
    assert dl.deny(["b", "c"]) == ["c"]
    assert "a" in dl and "z" not in dl and len(dl) == 3
    assert dl.allow(["a", "z"]) == ["a"]
    assert sorted(dl.clear()) == ["b", "c"]
    assert len(dl) == 0
    assert dl.stats() == {"denied_now": 0, "denied_total": 3, "allowed_total": 3}


def test_the_list_is_bounded_and_a_batch_that_does_not_fit_adds_nothing() -> None:
    dl = DenyList(max_entries=3)
    dl.deny(["a", "b"])
    with pytest.raises(DenyListFull):
        dl.deny(["c", "d"])
    assert sorted(dl.peers()) == ["a", "b"]
    assert dl.deny(["a", "c"]) == ["c"]  # already-denied peers take no room
    with pytest.raises(ValueError):
        DenyList(max_entries=0)


async def test_a_denied_peer_is_cut_off_both_ways_until_allowed() -> None:
    async with Node(local_config()) as a, Node(local_config()) as b:
        await a.connect(b.addrs[0])
        await wait_until(lambda: a.is_connected(b.peer_id) and b.is_connected(a.peer_id), what="connected")

        assert await a.deny(b.peer_id) == [b.peer_id]
        assert a.is_denied(b.peer_id) and a.denied() == [b.peer_id]
        await wait_until(lambda: not a.is_connected(b.peer_id) and not b.is_connected(a.peer_id),
                         what="the connection closed on both sides")  # fmt: skip

        # We do not dial it (our services may also try in the background and be
        # refused the same way, so count from here)...
        refused = a.dialer.stats.refused_denied
        with pytest.raises(DialError, match="deny list"):
            await a.connect(b.addrs[0])
        assert a.dialer.stats.refused_denied > refused
        # ...and its dials to us are refused after Noise (it is not on *its* list).
        with pytest.raises(DialError):
            await b.connect(a.addrs[0])
        assert not a.is_connected(b.peer_id)
        assert a.stats()["denylist"]["denied_now"] == 1

        assert a.allow(b.peer_id) == [b.peer_id]
        await b.connect(a.addrs[0])
        await wait_until(lambda: a.is_connected(b.peer_id), what="connected again after allow")
        # allow() with no peers clears the list.
        await a.deny(b.peer_id)
        assert a.allow() == [b.peer_id] and a.denied() == []
