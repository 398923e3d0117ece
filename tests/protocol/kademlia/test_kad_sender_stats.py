"""The outbound request accounting says *why* requests fail, within bounds."""

from __future__ import annotations

import pytest

from agentp2p.protocol.kademlia.streams import MAX_FAILURE_KINDS, PeerSender, SenderStats


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
