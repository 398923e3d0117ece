"""A request given up by its owner (PeerSender.abandon) does not hold the
peer's stream against a request that is still wanted.

Virtual clock, fake streams: every test runs at one instant, so "at once"
means before any deadline could have passed.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from agentp2p.network.framing import length_prefixed
from agentp2p.protocol.kademlia.streams import Cut, Ticket, Unsent
from tests.protocol.kademlia.senderfakes import Peer, rig, sender_for


async def test_given_up_on_the_wire_it_is_cut_when_a_wanted_request_waits(autojump_clock: Any) -> None:
    peer, sender, stats, got, ask = rig(Peer())
    a, b = Ticket(), Ticket()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "a", a)
        await wait_all_tasks_blocked()
        nursery.start_soon(ask, "b", b)
        await wait_all_tasks_blocked()
        assert len(peer.streams) == 1 and peer.streams[0].writes and stats.queued == 1
        t0 = trio.current_time()
        sender.abandon(a)
        await wait_all_tasks_blocked()
        assert isinstance(got["a"], Cut) and peer.streams[0].resets == 1
        assert len(peer.streams) == 2 and peer.streams[1].writes, "b went out on a fresh stream"
        peer.streams[1].answer.set()
    assert got["b"] == b"answer"
    assert trio.current_time() == t0
    assert (stats.abandoned_cut, stats.cancelled, stats.failures) == (1, 0, 0)


async def test_given_up_with_nobody_waiting_it_is_left_until_a_request_arrives(autojump_clock: Any) -> None:
    peer, sender, stats, got, ask = rig(Peer())
    a = Ticket()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "a", a)
        await wait_all_tasks_blocked()
        sender.abandon(a)
        await wait_all_tasks_blocked()
        assert "a" not in got and peer.streams[0].resets == 0, "nobody waits: the stream stays in step"
        nursery.start_soon(ask, "b", Ticket())
        await wait_all_tasks_blocked()
        assert isinstance(got["a"], Cut)
        peer.streams[-1].answer.set()
    assert got["b"] == b"answer" and stats.abandoned_cut == 1


async def test_given_up_while_the_stream_opens_it_is_never_sent_and_the_stream_is_kept(
        autojump_clock: Any) -> None:
    peer, sender, stats, got, ask = rig(Peer(opening=False))  # the dial waits for the test
    a = Ticket()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "a", a)
        await wait_all_tasks_blocked()
        nursery.start_soon(ask, "b", Ticket())
        await wait_all_tasks_blocked()
        sender.abandon(a)  # nothing to cut yet: a is opening the stream b needs too
        peer.opening.set()
        await wait_all_tasks_blocked()
        assert isinstance(got["a"], Unsent)
        (stream,) = peer.streams
        assert stream.writes == [length_prefixed(b"b")] and stream.resets == 0
        stream.answer.set()
    assert got["b"] == b"answer"
    assert (stats.abandoned_unsent, stats.abandoned_cut, stats.streams_opened) == (1, 0, 1)


async def test_no_cut_for_waiters_that_were_given_up_too(autojump_clock: Any) -> None:
    peer = Peer()
    sender, stats = sender_for(peer)
    a, b = Ticket(), Ticket()

    async def ask(ticket: Ticket) -> None:
        await sender.request(b"q", True, ticket)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, a)
        await wait_all_tasks_blocked()
        nursery.start_soon(ask, b)
        await wait_all_tasks_blocked()
        sender.abandon(b)
        sender.abandon(a)
        await wait_all_tasks_blocked()
        assert peer.streams[0].resets == 0 and stats.abandoned_cut == 0
        nursery.cancel_scope.cancel()


async def test_a_request_cancelled_as_the_stream_is_handed_to_it_does_not_start(autojump_clock: Any) -> None:
    """trio hands a lock over at release: a waiter cancelled between the
    hand-over and its first step must not write (a cancelled write costs
    the stream a reset)."""
    peer = Peer()
    sender, stats = sender_for(peer)
    b_scope = trio.CancelScope()

    async def first() -> None:
        await sender.request(b"a", True)
        b_scope.cancel()  # b holds the lock now, but has not run yet

    async def second() -> None:
        with b_scope:
            await sender.request(b"b", True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await wait_all_tasks_blocked()
        nursery.start_soon(second)
        await wait_all_tasks_blocked()
        peer.streams[0].answer.set()
    assert b_scope.cancelled_caught
    assert (peer.streams[0].resets, stats.requests, len(peer.streams[0].writes)) == (0, 1, 1)


@pytest.mark.parametrize("expect", [True, False])
async def test_a_plain_request_is_never_abandoned(autojump_clock: Any, expect: bool) -> None:
    peer = Peer()
    sender, stats = sender_for(peer)
    async with trio.open_nursery() as nursery:
        async def ask() -> None:
            assert await sender.request(b"q", expect) == (b"answer" if expect else None)
        nursery.start_soon(ask)
        await wait_all_tasks_blocked()
        peer.streams[0].answer.set()
    assert (stats.abandoned_cut, stats.abandoned_unsent, stats.requests) == (0, 0, 1)
