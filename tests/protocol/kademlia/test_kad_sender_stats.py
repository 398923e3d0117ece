"""The outbound request accounting says *why* requests fail, within bounds."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from agentp2p.protocol.kademlia.streams import MAX_FAILURE_KINDS, PeerSender, SenderStats
from tests.protocol.kademlia.senderfakes import Peer, sender_for


class Refused(Exception):
    pass


async def test_a_failed_request_is_counted_by_its_kind() -> None:
    stats = SenderStats()

    async def refuse() -> None:
        raise Refused("dial refused")

    sender = PeerSender(refuse, max_message_bytes=1024, max_idle=10.0, stats=stats)
    for _ in range(2):
        with pytest.raises(Refused):
            await sender.request(b"\x00", True)
    assert stats.failures == 2
    assert stats.as_dict()["failure_kinds"] == {"Refused": 2}


def test_failure_kinds_are_bounded() -> None:
    stats = SenderStats()
    kinds = [type(f"Kind{i}", (Exception,), {}) for i in range(3 * MAX_FAILURE_KINDS)]
    for kind in kinds:
        stats.failed(kind())
    assert stats.failures == len(kinds)
    assert len(stats.failure_kinds) == MAX_FAILURE_KINDS + 1
    assert stats.failure_kinds["other"] == len(kinds) - MAX_FAILURE_KINDS
    assert sum(stats.failure_kinds.values()) == stats.failures


def test_a_single_failure_wrapped_by_a_nursery_counts_as_itself() -> None:
    stats = SenderStats()
    stats.failed(BaseExceptionGroup("nursery", [ExceptionGroup("inner", [Refused("no")])]))
    stats.failed(ExceptionGroup("two", [Refused("a"), ValueError("b")]))
    assert stats.failure_kinds == {"Refused": 1, "ExceptionGroup": 1}


async def test_a_request_behind_another_to_the_same_peer_is_counted_with_its_wait(autojump_clock: Any) -> None:
    """The per-peer FIFO is where a request's deadline can run out before it
    is even sent: the stats say how often and for how long requests queued."""
    peer = Peer()
    sender, stats = sender_for(peer)
    answers: list[bytes | None] = []

    async def ask() -> None:
        answers.append(await sender.request(b"q", True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await wait_all_tasks_blocked()
        nursery.start_soon(ask)  # the stream is busy: this one queues
        await wait_all_tasks_blocked()
        (stream,) = peer.streams
        assert (stats.queued, len(stream.writes)) == (1, 1)
        await trio.sleep(2.0)  # virtual time: the first answer takes 2 s
        stream.answer.set()
        await wait_all_tasks_blocked()
        stream.answer.set()
    assert answers == [b"answer", b"answer"]
    assert stats.queued == 1 and stats.queued_ms == 2000

    # A request cut by its deadline while it waits counts its wait too.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await wait_all_tasks_blocked()
        with trio.move_on_after(0.5):
            await sender.request(b"q", True)
        stream.answer.set()
    assert stats.queued == 2 and stats.queued_ms == 2500
    assert stats.requests == 3  # the cut one never got the stream


async def test_a_request_cancelled_inside_the_librarys_nurseries_counts_as_cancelled(autojump_clock: Any) -> None:
    """A deadline that lands while the stream is being opened (a dial runs in
    nurseries) arrives as a group of Cancelled: a cancellation, not a
    failure of the peer's."""
    stats = SenderStats()

    async def dialing() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(trio.sleep_forever)

    sender = PeerSender(dialing, max_message_bytes=1024, max_idle=10.0, stats=stats)
    with trio.move_on_after(1.0) as scope:
        await sender.request(b"q", True)
    assert scope.cancelled_caught
    assert (stats.cancelled, stats.failures, stats.failure_kinds) == (1, 0, {})
