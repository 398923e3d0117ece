"""The penalty box: decay, thresholds, escalating bans, bounded tracking — and
on real sockets, a peer whose streams keep failing our handlers is cut off."""

from __future__ import annotations

import pytest
import trio

from agentp2p.errors import DialError
from agentp2p.network.penalties import PenaltyBox, PenaltyConfig
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_points_decay_so_occasional_offences_never_ban() -> None:
    clock = Clock()
    box = PenaltyBox(PenaltyConfig(threshold=10, half_life=60), clock=clock)
    for _ in range(200):  # one offence a minute for 200 minutes
        assert not box.offence("p", "odd frame")
        clock.t += 60
    assert not box.is_banned("p")
    assert box.points("p") < 2.0


def test_a_burst_bans_and_the_ban_expires() -> None:
    clock = Clock()
    bans: list[str] = []
    box = PenaltyBox(PenaltyConfig(threshold=10, ban_initial=30), on_ban=lambda p, info: bans.append(p), clock=clock)
    results = [box.offence("p", "flood") for _ in range(10)]
    assert results == [False] * 9 + [True]
    assert bans == ["p"] and box.is_banned("p")
    assert [b.reason for b in box.banned()] == ["flood"]
    # Offences while banned do not ban again.
    assert not box.offence("p", "flood")
    clock.t += 31
    assert not box.is_banned("p") and box.banned() == []


def test_repeat_offenders_get_doubling_bans_up_to_the_cap() -> None:
    clock = Clock()
    box = PenaltyBox(PenaltyConfig(threshold=1, ban_initial=30, ban_max=100), clock=clock)
    lengths = []
    for _ in range(4):
        box.offence("p", "x")
        lengths.append(round(box.banned()[0].remaining))
        clock.t += 200
    assert lengths == [30, 60, 100, 100]


def test_tracking_is_bounded_and_keeps_banned_peers() -> None:
    clock = Clock()
    box = PenaltyBox(PenaltyConfig(threshold=1, max_tracked=100), clock=clock)
    box.offence("villain", "x")
    for i in range(1000):
        box.offence(f"p{i}", "y", weight=0.1)
    assert len(box._peers) <= 100
    assert box.is_banned("villain")


def test_disabled_box_never_bans() -> None:
    box = PenaltyBox(PenaltyConfig(enabled=False, threshold=1))
    assert not box.offence("p", "x", 100)
    assert not box.is_banned("p")


async def test_a_peer_that_keeps_failing_our_handlers_is_disconnected_and_refused() -> None:
    async def broken(stream) -> None:  # type: ignore[no-untyped-def]
        raise ValueError("bug triggered by peer input")

    config = local_config(swim=False)
    config.penalties.threshold = 5  # the third contained failure (weight 2 each) tips it
    async with Node(config) as victim, Node(local_config(swim=False)) as attacker:
        victim.set_stream_handler("/test/broken/1.0.0", broken)
        await attacker.connect(victim.addrs[0])
        failures = victim.handler_failures.by_protocol
        while failures["/test/broken/1.0.0"] < 3:
            before = failures["/test/broken/1.0.0"]
            with trio.fail_after(10):
                try:
                    stream = await attacker.host.new_stream(victim.peer_id, ["/test/broken/1.0.0"])
                    await stream.write(b"x")
                except Exception:
                    continue  # the last reset can race the next negotiation; try again
                await wait_until(lambda: failures["/test/broken/1.0.0"] > before, what="contained failure")
        await wait_until(lambda: victim.is_banned(attacker.peer_id), what="attacker banned")
        await wait_until(lambda: not victim.is_connected(attacker.peer_id), what="attacker disconnected")
        assert victim.stats()["handler_failures"]["/test/broken/1.0.0"] == 3
        banned = victim.stats()["penalties"]["banned_now"]
        assert [b["peer"] for b in banned] == [str(attacker.peer_id)]
        assert banned[0]["reason"] == "handler:/test/broken/1.0.0"
        with pytest.raises(DialError, match="banned"):
            await victim.connect(attacker.addrs[0])
