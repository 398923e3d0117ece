"""Resource manager accounting: every scope refuses before it overflows, and
releases give everything back."""

from __future__ import annotations

import logging

import pytest

from agentp2p.errors import ConfigError
from agentp2p.network.resources import ResourceLimits, ResourceManager
from agentp2p.throttled_log import ThrottledLog


def test_memory_scopes_refuse_before_overflow_and_report_the_peer() -> None:
    hits: list[tuple[str, str]] = []
    rm = ResourceManager(
        ResourceLimits(max_memory=1000, max_memory_per_peer=400, max_memory_per_service=700),
        on_hit=lambda peer, limit: hits.append((peer, limit)),
    )
    assert rm.reserve_memory("a", "yamux", 400)
    assert not rm.reserve_memory("a", "yamux", 1)
    assert hits == [("a", "memory_per_peer")]
    assert rm.reserve_memory("b", "yamux", 300)
    # The service's share is full: refused, counted, but "c" is not to blame.
    assert not rm.reserve_memory("c", "yamux", 1)
    assert rm.hits["memory_per_service"] == 1 and hits == [("a", "memory_per_peer")]
    assert rm.reserve_memory("c", "pubsub", 300)
    assert not rm.reserve_memory("d", "dht", 1)  # the node's total is full; nobody to blame
    assert rm.hits["memory"] == 1 and hits == [("a", "memory_per_peer")]
    for peer, service, n in [("a", "yamux", 400), ("b", "yamux", 300), ("c", "pubsub", 300)]:
        rm.release_memory(peer, service, n)
    assert rm.memory == 0 and rm.stats()["memory_by_service"] == {} and rm.memory_of("a") == 0


def test_reservation_grows_shrinks_and_closes() -> None:
    rm = ResourceManager(ResourceLimits(max_memory=100, max_memory_per_peer=100, max_memory_per_service=100))
    res = rm.reservation("p", "messaging")
    assert res.grow(60) and not res.grow(41) and res.size == 60
    res.shrink(100)  # never below zero
    assert res.size == 0 and rm.memory == 0
    assert res.grow(100)
    res.close()
    assert rm.memory == 0 and rm.memory_of("p") == 0


def test_streams_per_peer_and_protocol() -> None:
    rm = ResourceManager(ResourceLimits(max_streams_per_peer_protocol=2))
    assert rm.open_stream("p", "/x") and rm.open_stream("p", "/x")
    assert not rm.open_stream("p", "/x")
    assert rm.open_stream("p", "/y") and rm.open_stream("q", "/x")
    rm.close_stream("p", "/x")
    assert rm.open_stream("p", "/x")
    assert rm.hits["streams_per_peer_protocol"] == 1


def test_per_ip_limit_exempts_loopback_unless_asked() -> None:
    rm = ResourceManager(ResourceLimits(max_connections_per_ip=2))
    assert all(rm.admit_inbound_socket("127.0.0.1") for _ in range(10))
    assert rm.admit_inbound_socket("10.0.0.1") and rm.admit_inbound_socket("10.0.0.1")
    assert not rm.admit_inbound_socket("10.0.0.1")
    rm.release_inbound_socket("10.0.0.1")
    assert rm.admit_inbound_socket("10.0.0.1")
    strict = ResourceManager(ResourceLimits(max_connections_per_ip=1, limit_loopback=True))
    assert strict.admit_inbound_socket("127.0.0.1") and not strict.admit_inbound_socket("127.0.0.1")


def test_inbound_connection_limit() -> None:
    rm = ResourceManager(ResourceLimits(max_inbound_connections=1))
    assert rm.admit_inbound_connection("p") and not rm.admit_inbound_connection("q")
    rm.release_inbound_connection()
    assert rm.admit_inbound_connection("q")


def test_a_connection_refused_for_lack_of_room_is_reported_to_the_full_hook() -> None:
    rm = ResourceManager(ResourceLimits(max_inbound_connections=1))
    heard: list[None] = []
    rm.set_full_hook(lambda: heard.append(None))
    assert rm.admit_inbound_connection("p") and not heard
    assert not rm.admit_inbound_connection("q")
    assert len(heard) == 1 and rm.hits["inbound_connections"] == 1
    rm.set_full_hook(None)
    assert not rm.admit_inbound_connection("q") and len(heard) == 1


def test_limits_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_memory_per_peer"):
        ResourceLimits(max_memory=10, max_memory_per_peer=20).validate()
    with pytest.raises(ConfigError, match="handshake_timeout"):
        ResourceLimits(handshake_timeout=0).validate()


def test_throttled_log_says_how_much_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    t = [0.0]
    tl = ThrottledLog(logging.getLogger("test.throttle"), interval=10, max_keys=2, clock=lambda: t[0])
    with caplog.at_level(logging.INFO, logger="test.throttle"):
        for _ in range(1000):
            tl.warning(("peer", "bad sig"), "rejected from %s", "peer")
        t[0] = 11
        tl.warning(("peer", "bad sig"), "rejected from %s", "peer")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["rejected from peer", "rejected from peer (999 more since last report)"]
    assert tl.suppressed == 999
    for i in range(10):  # the key table stays bounded
        tl.info(i, "x")
    assert tl.tracked == 2
