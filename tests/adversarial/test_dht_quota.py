"""Issue #10, finding 4 (DHT): one peer cannot make a node store without bound.

The attacker is an ordinary node that sends PUT_VALUE and ADD_PROVIDER
straight to the victim (``DHT.store_at`` / ``DHT.announce_to``: one request
to one peer), as many as it likes; the victim refuses beyond the peer's
quota, counts it, and still stores an honest peer's value.
"""

from __future__ import annotations

from agentp2p.config import DHTConfig
from agentp2p.node import Node
from agentp2p.protocol.dht import provider_key
from agentp2p.testing import local_config, wait_until
from tests.adversarial.benign import assert_serves


def _key(name: str) -> bytes:
    return f"/agentp2p/{name}".encode()


async def test_values_past_a_peers_quota_are_refused_and_honest_puts_still_work() -> None:
    dht = DHTConfig(max_values_per_peer=20, max_value_bytes_per_peer=200 * 1024)
    async with Node(local_config(dht=dht)) as victim, Node(local_config()) as attacker, \
            Node(local_config()) as honest:
        await attacker.connect(victim.addrs[0])
        await honest.connect(victim.addrs[0])
        at_victim = attacker.dht.store_at

        # Count quota: 40 small values, 20 accepted.
        accepted = [await at_victim(victim.peer_id, _key(f"a{i}"), b"v" * 100) for i in range(40)]
        assert sum(accepted) == 20 and all(accepted[:20])
        assert sum(victim.dht.local_value(_key(f"a{i}")) is not None for i in range(40)) == 20
        # Byte quota: nothing more from this peer fits, whatever the size.
        assert not await at_victim(victim.peer_id, _key("big"), b"B" * 60_000)
        # Replacing one of its own values is fine (same key, no new quota).
        assert await at_victim(victim.peer_id, _key("a0"), b"w" * 100)
        assert victim.dht.local_value(_key("a0")) == b"w" * 100
        stats = victim.stats()["dht"]
        assert stats["quota_hits"]["max_values_per_peer"] >= 21
        assert victim.dht.quotas.held_by(attacker.peer_id)["values"] == 20
        assert victim.penalties.points(attacker.peer_id) > 0
        # One refused request costs the attacker its stream, never the victim anything.
        assert attacker.dht.stats()["adapter"]["streams_opened"] >= 21

        # An honest peer's PUT is unaffected.
        assert await honest.dht.store_at(victim.peer_id, _key("honest"), b"hello")
        assert victim.dht.local_value(_key("honest")) == b"hello"
        await assert_serves(victim)


async def test_value_bytes_quota_and_node_wide_cap() -> None:
    dht = DHTConfig(max_value_bytes_per_peer=200 * 1024, max_values=30)
    async with Node(local_config(dht=dht)) as victim, Node(local_config()) as a, Node(local_config()) as b:
        await a.connect(victim.addrs[0])
        await b.connect(victim.addrs[0])
        results = [await a.dht.store_at(victim.peer_id, _key(f"b{i}"), b"x" * 60_000) for i in range(6)]
        assert results == [True, True, True, False, False, False]  # 3 x 60 KB fit in 200 KiB
        assert victim.dht.quotas.held_by(a.peer_id)["value_bytes"] <= 200 * 1024
        results = [await b.dht.store_at(victim.peer_id, _key(f"c{i}"), b"y") for i in range(40)]
        assert sum(results) == 30 - 3  # the node-wide cap, whoever sends
        assert victim.stats()["dht"]["values"] <= 30
        assert victim.stats()["dht"]["quota_hits"]["max_values"] == 13
        # The node-wide cap is nobody's fault: b was not blamed for it.
        assert victim.penalties.points(b.peer_id) == 0
        # Value bytes from peers are reserved in the node's resource manager.
        assert victim.resources.stats()["memory_by_service"]["dht"] == victim.dht.quotas.value_bytes > 0


async def test_provider_records_past_a_peers_quota_are_not_stored() -> None:
    dht = DHTConfig(max_provider_records_per_peer=5)
    async with Node(local_config(dht=dht)) as victim, Node(local_config()) as attacker:
        await attacker.connect(victim.addrs[0])
        for i in range(8):
            assert await attacker.dht.announce_to(victim.peer_id, provider_key(f"cap{i}"))
        await wait_until(lambda: victim.stats()["dht"]["quota_hits"].get("max_provider_records_per_peer") == 3)
        held = sum(any(p.peer_id == attacker.peer_id for p in victim.dht.local_providers(provider_key(f"cap{i}")))
                   for i in range(8))
        assert held == 5
        assert victim.dht.quotas.held_by(attacker.peer_id)["provider_records"] == 5
        # Refused ADD_PROVIDERs do not reset the stream (they have no answer to refuse with).
        assert attacker.dht.stats()["adapter"]["streams_opened"] == 1
