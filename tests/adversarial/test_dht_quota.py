"""Issue #10, finding 4 (DHT): one peer cannot make a node store without bound.

The attacker is an ordinary node that sends PUT_VALUE and ADD_PROVIDER
straight to the victim (the library's own per-peer store calls), as many as
it likes; the victim refuses beyond the peer's quota, counts it, and still
stores an honest peer's value.
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
        store = victim.dht.kad.value_store.store
        at_victim = attacker.dht.kad.value_store._store_at_peer

        # Count quota: 40 small values, 20 accepted.
        accepted = [await at_victim(victim.peer_id, _key(f"a{i}"), b"v" * 100) for i in range(40)]
        assert sum(accepted) == 20 and all(accepted[:20])
        assert sum(1 for k in store if k.startswith(b"/agentp2p/a")) == 20
        # Byte quota: nothing more from this peer fits, whatever the size.
        assert not await at_victim(victim.peer_id, _key("big"), b"B" * 60_000)
        # Replacing one of its own values is fine (same key, no new quota).
        stats = victim.stats()["dht"]
        assert stats["quota_hits"]["max_values_per_peer"] >= 21
        assert victim.dht.quotas.values_by_peer[attacker.peer_id] == 20
        assert victim.penalties.points(attacker.peer_id) > 0

        # An honest peer's PUT is unaffected.
        assert await honest.dht.kad.value_store._store_at_peer(victim.peer_id, _key("honest"), b"hello")
        assert store[_key("honest")][0].value == b"hello"
        await assert_serves(victim)


async def test_value_bytes_quota_and_node_wide_cap() -> None:
    dht = DHTConfig(max_value_bytes_per_peer=200 * 1024, max_values=30)
    async with Node(local_config(dht=dht)) as victim, Node(local_config()) as a, Node(local_config()) as b:
        await a.connect(victim.addrs[0])
        await b.connect(victim.addrs[0])
        put_a = a.dht.kad.value_store._store_at_peer
        results = [await put_a(victim.peer_id, _key(f"b{i}"), b"x" * 60_000) for i in range(6)]
        assert results == [True, True, True, False, False, False]  # 3 x 60 KB fit in 200 KiB
        assert victim.dht.quotas.value_bytes_by_peer[a.peer_id] <= 200 * 1024
        put_b = b.dht.kad.value_store._store_at_peer
        results = [await put_b(victim.peer_id, _key(f"c{i}"), b"y") for i in range(40)]
        assert sum(results) == 30 - 3  # the node-wide cap, whoever sends
        assert len(victim.dht.kad.value_store.store) <= 30
        assert victim.stats()["dht"]["quota_hits"]["max_values"] == 13


async def test_provider_records_past_a_peers_quota_are_not_stored() -> None:
    dht = DHTConfig(max_provider_records_per_peer=5)
    async with Node(local_config(dht=dht)) as victim, Node(local_config()) as attacker:
        await attacker.connect(victim.addrs[0])
        send = attacker.dht.kad.provider_store._send_add_provider
        for i in range(8):  # below the library's own 10-per-10-s rate limit
            await send(victim.peer_id, provider_key(f"cap{i}"))
        providers = victim.dht.kad.provider_store.providers
        held = sum(1 for per_key in providers.values() if str(attacker.peer_id) in per_key)
        assert held == 5
        await wait_until(lambda: victim.stats()["dht"]["quota_hits"].get("max_provider_records_per_peer") == 3)
        assert victim.dht.quotas.providers_by_peer[str(attacker.peer_id)] == 5
