"""``dht put`` says how many peers stored the value (issue #11: it reported
success when no remote peer had stored it)."""

from __future__ import annotations


import pytest
import trio

from agentp2p.client import Client
from agentp2p.config import DHTConfig
from agentp2p.application.api import ApiService
from agentp2p.node import Node
from agentp2p.protocol.dht import DHTError
from agentp2p.testing import local_config, wait_until



async def _linked(a: Node, b: Node) -> None:
    await a.connect(b.addrs[0])
    await wait_until(lambda: b.peer_id in a.dht.routing_table_peers(), what="b in a's routing table")


async def test_put_returns_the_number_of_peers_that_stored_it() -> None:
    async with Node(local_config()) as a, Node(local_config()) as b, Node(local_config()) as c:
        await _linked(a, b)
        await _linked(a, c)
        assert await a.dht_put("counted", b"v") == 2
        assert b.dht.local_value(b"/agentp2p/counted") == b"v"


async def test_put_fails_when_peers_exist_but_none_stored_it() -> None:
    # b refuses values above 16 bytes; a accepts them, so a's put is valid
    # locally and refused by its only peer.
    async with Node(local_config()) as a, Node(local_config(dht=DHTConfig(max_value_size=16))) as b:
        await _linked(a, b)
        with pytest.raises(DHTError, match="no peer stored the value") as refused:
            await a.dht_put("refused", b"x" * 100)
        # Its reason, for counters (records count failed parts by it): the
        # query ended in time, and nobody stored the value.
        assert refused.value.reason == "nobody"
        assert b.dht.local_value(b"/agentp2p/refused") is None


async def test_put_alone_stores_locally_and_says_zero() -> None:
    async with Node(local_config()) as a:
        assert await a.dht_put("alone", b"v") == 0
        assert await a.dht_get("alone") == b"v"


async def test_api_and_client_report_the_count() -> None:
    api = ApiService("127.0.0.1:0")
    async with Node(local_config(), services=[api]) as a, Node(local_config()) as b:
        await _linked(a, b)
        with trio.fail_after(10):
            await api.ready.wait()
        async with Client(api.base_url.removeprefix("http://"), token=api.token) as client:
            assert await client.dht_put("via-api", "v") == 1
            r = await client._http.put("/v1/dht/value", json={"key": "via-http", "value": "v"})
            assert r.status_code == 200 and r.json()["stored"] == 1


async def test_empty_value_is_refused_up_front() -> None:
    # Peers refuse empty values; saying so beats "no peer stored it".
    api = ApiService("127.0.0.1:0")
    async with Node(local_config(), services=[api]) as a:
        with pytest.raises(DHTError, match="empty value") as empty:
            await a.dht_put("empty", b"")
        assert empty.value.reason == "rejected"
        with trio.fail_after(10):
            await api.ready.wait()
        async with Client(api.base_url.removeprefix("http://"), token=api.token) as client:
            r = await client._http.put("/v1/dht/value", json={"key": "empty", "value": ""})
            assert r.status_code == 400 and "empty" in r.json()["message"]
