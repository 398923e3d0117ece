"""The routing-table watcher wakes the publisher promptly, then idles.

It polls every 0.25 s (py-libp2p signals nothing when the table changes);
once the record is out and the table is still, it looks less and less
often (up to WATCH_POLL_MAX), and fast again as soon as the table moves.
Before, it polled 4 times a second forever: an idle node's most frequent
wake-up."""

from __future__ import annotations

from typing import Any

import trio

from agentp2p.application.records.service import WATCH_POLL_MAX, RecordService


class _DHT:
    def __init__(self) -> None:
        self.size = 0
        self.reads = 0

    @property
    def routing_table_size(self) -> int:
        self.reads += 1
        return self.size


class _Node:
    def __init__(self) -> None:
        self.dht = _DHT()


async def test_the_watcher_wakes_the_publisher_then_backs_off(autojump_clock: Any) -> None:
    svc = RecordService("watched")
    node = _Node()
    svc._node = node  # type: ignore[assignment]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(svc._watch_growth)
        await trio.sleep(5)
        assert not svc._wake.is_set()  # an empty table: nothing to publish to
        node.dht.size = 8
        t0 = trio.current_time()
        await svc._wake.wait()  # the first fill wakes the publisher once it settles
        assert trio.current_time() - t0 <= svc.settle + 0.5
        svc._wake = trio.Event()
        svc._table_at_last_round = 8  # the publisher's round ran
        reads = node.dht.reads
        await trio.sleep(600)
        idle_reads = node.dht.reads - reads
        assert idle_reads <= 600 / WATCH_POLL_MAX + 10  # not 600 / 0.25
        node.dht.size = 16  # doubled: a republish is due, found within one slow poll
        t0 = trio.current_time()
        await svc._wake.wait()
        assert trio.current_time() - t0 <= WATCH_POLL_MAX + svc.settle + 0.5
        nursery.cancel_scope.cancel()
