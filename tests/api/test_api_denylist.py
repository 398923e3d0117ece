"""The deny list through the control API and the config (#15): a denied peer
is cut off and refused with a clear 403, not a timeout, until allowed."""

from __future__ import annotations

import httpx
import pytest

from agentp2p.client import ApiError, Forbidden
from agentp2p.config import build_config
from agentp2p.errors import ConfigError, PeerRefused
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until
from tests.api.api_fixtures import api_node


async def test_deny_through_the_api_cuts_a_peer_off_and_connect_answers_403_until_allowed() -> None:
    async with api_node() as a, api_node() as b:
        bid = str(b.node.peer_id)
        await a.client.connect(str(b.node.addrs[0]))
        assert await a.client.denied() == []

        assert await a.client.deny(bid) is True
        assert await a.client.deny(bid) is False  # already denied: nothing changed
        assert await a.client.denied() == [bid]
        await wait_until(lambda: not a.node.is_connected(b.node.peer_id) and not b.node.is_connected(a.node.peer_id),
                         what="the connection closed on both sides")  # fmt: skip

        with pytest.raises(Forbidden) as refused:
            await a.client.connect(str(b.node.addrs[0]))
        assert refused.value.status == 403 and refused.value.code == "forbidden"
        assert "deny list" in str(refused.value)

        assert await a.client.allow(bid) == [bid]
        assert await a.client.allow(bid) == []  # not on the list any more
        await a.client.connect(str(b.node.addrs[0]))
        assert a.node.is_connected(b.node.peer_id)

        # DELETE /v1/peers/denied clears the whole list.
        await a.client.deny(bid)
        assert await a.client.allow() == [bid] and await a.client.denied() == []


async def test_a_malformed_peer_id_is_a_400_and_changes_nothing() -> None:
    async with api_node() as a:
        headers = {"Authorization": f"Bearer {a.api.token}"}
        async with httpx.AsyncClient(base_url=a.api.base_url, headers=headers) as http:
            for bad in ("nope", "12D3KooWnotapeer"):
                answer = await http.put(f"/v1/peers/denied/{bad}")
                assert answer.status_code == 400, answer.text
                assert answer.json()["error"] == "bad_request"
            # /peers/denied is not taken for a peer ID by /peers/{peer_id}.
            listed = await http.get("/v1/peers/denied")
            assert listed.status_code == 200 and listed.json() == {"denied": []}
            # Nor is /peers/allowed: DELETE there is a 405, not a disconnect from a peer "allowed".
            wrong = await http.delete("/v1/peers/allowed")
            assert wrong.status_code == 405
            assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}  # a set in starlette: any order


async def test_the_configs_deny_list_is_in_force_from_the_start() -> None:
    async with Node(local_config()) as b:
        async with Node(local_config(deny=[str(b.peer_id)])) as a:
            assert a.denied() == [b.peer_id]
            with pytest.raises(PeerRefused, match="deny list"):
                await a.connect(b.addrs[0])
            with pytest.raises(Exception):  # refused by a's gate after Noise
                await b.connect(a.addrs[0])
            assert not a.is_connected(b.peer_id)


def test_a_bad_entry_in_the_configs_deny_list_is_a_config_error() -> None:
    # py-libp2p's ID.from_base58 takes any base58 string; "nope" would be a peer nobody is.
    with pytest.raises(ConfigError, match="deny: 'nope' is not a valid peer ID"):
        build_config(environ={"AGENTP2P_DENY": "nope"})
    ok = build_config(environ={"AGENTP2P_DENY": "12D3KooWBJ3Ypyy3frwDUdMC7ouP8WHiKESqUr6fVmvgwze9yoP2"})
    assert ok.deny == ["12D3KooWBJ3Ypyy3frwDUdMC7ouP8WHiKESqUr6fVmvgwze9yoP2"]


async def test_the_allow_list_through_the_api() -> None:
    async with api_node() as b:
        async with api_node(allow_only=True, allow=[str(b.node.peer_id)]) as a:
            assert await a.client.allow_list() == [str(b.node.peer_id)]
            async with api_node() as c:
                cid = str(c.node.peer_id)
                with pytest.raises(Forbidden, match="allow list"):
                    await a.client.connect(str(c.node.addrs[0]))
                assert await a.client.add_to_allow_list(cid) is True
                assert await a.client.add_to_allow_list(cid) is False
                await a.client.connect(str(c.node.addrs[0]))
                assert await a.client.remove_from_allow_list(cid) is True
                await wait_until(lambda: not a.node.is_connected(c.node.peer_id), what="c cut off")
        # Off (the default): nothing to edit, and the API says why instead of pretending.
        assert await b.client.allow_list() is None
        with pytest.raises(ApiError) as off:
            await b.client.add_to_allow_list(str(b.node.peer_id))
        assert off.value.status == 409 and "allow_only" in str(off.value)
