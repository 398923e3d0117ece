"""A publish round's failed parts are counted by why, and the time to the
first complete round is kept.

Why: in a 100-node devnet the last joiners' records took 74-105 s to be
out while the first took under a second; the counters said only "a round
failed". An operator (and the benchmark) needs which part failed and how:
the DHT query timed out, it ended with nobody storing the value, or fewer
peers than wanted stored it."""

from __future__ import annotations

from typing import Any

import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from agentp2p.application.records.service import FAILURE_KINDS_MAX, RecordService
from agentp2p.protocol.dht import DHTError


class _DHT:
    """Answers each put / provide from a script: a count of peers, or an error."""

    def __init__(self) -> None:
        self.routing_table_size = 8
        self.puts: list[Any] = []
        self.provides: list[Any] = []

    async def put_raw(self, key: str, value: bytes) -> int:
        return self._answer(self.puts.pop(0))

    async def provide(self, key: str) -> int:
        return self._answer(self.provides.pop(0))

    @staticmethod
    def _answer(a: Any) -> int:
        if isinstance(a, Exception):
            raise a
        return int(a)


class _PubSub:
    async def publish(self, topic: str, data: bytes) -> None:
        pass


class _Node:
    def __init__(self) -> None:
        self.identity = create_new_key_pair()
        self.dht = _DHT()
        self.pubsub = _PubSub()

    def listen_addrs(self) -> list[Any]:
        return []


async def test_failed_parts_are_counted_by_why_and_the_first_full_round_is_timed(autojump_clock: Any) -> None:
    svc = RecordService("counted", capabilities=["a"])
    node = _Node()
    svc._node = node  # type: ignore[assignment]
    svc._started_at = trio.current_time()
    svc._sign(svc._fields)
    assert svc.stats()["published_after_s"] is None

    # Round 1: the put reached 1 of the 3 peers wanted; the provide timed out.
    node.dht.puts.append(1)
    node.dht.provides.append(DHTError("provide 'a' timed out", "timeout"))
    assert await svc._publish_round() == {"put", "provide:a"}
    # Round 2 (the failed parts again): nobody stored it; an unexpected error.
    node.dht.puts.append(DHTError("put: no peer stored the value", "nobody"))
    node.dht.provides.append(RuntimeError("boom"))
    await trio.sleep(7)
    assert await svc._publish_round() == {"put", "provide:a"}
    stats = svc.stats()
    assert stats["round_failures"] == 2 and stats["published_after_s"] is None
    assert stats["failure_kinds"] == {"put:short": 1, "provide:timeout": 1, "put:nobody": 1,
                                      "provide:RuntimeError": 1}  # fmt: skip

    # Round 3: whole; the record is out 7 s after the service started.
    node.dht.puts.append(3)
    node.dht.provides.append(3)
    assert await svc._publish_round() == set()
    assert svc.published.is_set() and svc.stats()["published_after_s"] == 7.0
    # A later round does not move it.
    node.dht.puts.append(3)
    node.dht.provides.append(3)
    await trio.sleep(5)
    assert await svc._publish_round() == set()
    assert svc.stats()["published_after_s"] == 7.0


def test_failure_kinds_are_bounded() -> None:
    svc = RecordService("bounded")
    for i in range(FAILURE_KINDS_MAX + 10):
        svc._count_failure("put", f"Error{i}")
    kinds = svc.stats()["failure_kinds"]
    assert len(kinds) == FAILURE_KINDS_MAX + 1 and kinds["other"] == 10
