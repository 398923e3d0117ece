"""PeerRateLimiter: a token bucket per peer, bounded in peers."""

from agentp2p.network.ratelimit import PeerRateLimiter


def test_a_bucket_empties_refills_and_can_be_forgiven() -> None:
    rl = PeerRateLimiter(rate=1 / 300, burst=1)
    assert rl.allow("p", 0.0) and not rl.allow("p", 1.0)
    assert rl.allow("p", 301.0)  # refilled after its period
    assert not rl.allow("p", 302.0)
    rl.forget("p")  # e.g. a success: what it spent is not held against it
    assert rl.allow("p", 303.0)


def test_the_table_forgets_the_least_recently_seen_peer() -> None:
    rl = PeerRateLimiter(rate=1.0, burst=1, max_peers=2)
    assert rl.allow("a", 0.0) and rl.allow("b", 0.0) and rl.allow("c", 0.0)
    assert len(rl) == 2 and rl.allow("a", 0.0)  # "a" was dropped, so it starts full
