"""The control API in-process: a real Node serving it on a loopback socket, driven by the async client under trio."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
import trio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentp2p.application.api import ApiLimits
from agentp2p.application.api.context import context
from agentp2p.client import ApiError, Client, NotFound, TokenError
from agentp2p.config import PubSubConfig
from agentp2p.network.host import AGENT_VERSION
from agentp2p.testing import wait_until

from tests.api.api_fixtures import api_node, connected_pair
from agentp2p.application.records.announce import ANNOUNCE_TOPIC


async def test_node_info_matches_the_node() -> None:
    async with api_node() as a:
        info = await a.client.node()
        assert info.peer_id == str(a.node.peer_id)
        assert info.addrs == a.node.dialable_addrs()
        assert info.agent_version == AGENT_VERSION
        assert any(p.startswith("/meshsub/") for p in info.protocols)
        stats = await a.client.stats()
        assert stats["peer_id"] == info.peer_id and stats["connections"] == 0


async def test_requests_without_the_right_token_are_refused() -> None:
    async with api_node() as a:
        async with httpx.AsyncClient(base_url=a.api.base_url) as raw:
            bad_headers = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": a.api.token}, {"Authorization": f"Basic {a.api.token}"})
            paths = (("GET", "/v1/node"), ("POST", "/v1/pubsub/publish"), ("GET", "/v1/pubsub/subscribe?topic=t"), ("GET", "/v1/nope"))
            for headers in bad_headers:
                for method, path in paths:
                    r = await raw.request(method, path, headers=headers)
                    assert r.status_code == 401, (headers, path)
                    assert r.json()["error"] == "unauthorized"
                    assert r.headers["www-authenticate"].startswith("Bearer")
            ok = await raw.get("/v1/node", headers={"Authorization": f"Bearer {a.api.token}"})
            assert ok.status_code == 200
        async with Client(a.api.base_url.removeprefix("http://"), token="not-the-token") as wrong:
            with pytest.raises(TokenError, match="refused the API token"):
                await wrong.node()
            with pytest.raises(TokenError):
                async with wrong.subscribe("t"):
                    pass
        assert "t" not in a.node.pubsub.topics()  # the refused subscribe never reached the node


async def test_publish_and_subscribe_between_two_nodes() -> None:
    async with api_node() as a, api_node() as b:
        async with b.client.subscribe("news") as sub:
            # The stream said "subscribed": the node is subscribed now, not eventually.
            # (every node also follows the agent-record announcements)
            assert set(b.node.pubsub.topics()) == {"news", ANNOUNCE_TOPIC}
            await connected_pair(a, b, topic="news")
            assert await a.client.publish("news", "hello") == 5
            binary = bytes(range(256))
            await a.client.publish("news", binary)
            with trio.fail_after(10):
                first = await sub.receive()
                second = await sub.receive()
        assert (first.topic, first.text, first.sender) == ("news", "hello", str(a.node.peer_id))
        assert second.data == binary
        # Leaving the block closed the stream, and the node unsubscribed.
        await wait_until(lambda: b.node.pubsub.topics() == [ANNOUNCE_TOPIC], what="unsubscribe after the client left")
        topics = await b.client.topics()
        assert "news" not in topics and set(topics) == {ANNOUNCE_TOPIC}


async def test_binary_message_has_null_text_on_the_wire() -> None:
    async with api_node() as a:
        async with httpx.AsyncClient(base_url=a.api.base_url, headers={"Authorization": f"Bearer {a.api.token}"}) as raw:
            async with raw.stream("GET", "/v1/pubsub/subscribe", params={"topic": "bin"}) as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")
                lines = resp.aiter_lines()
                assert await anext(lines) == "event: subscribed"
                r = await raw.post("/v1/pubsub/publish", json={"topic": "bin", "data_b64": base64.b64encode(b"\xff\x00").decode()})
                assert r.status_code == 200 and r.json() == {"topic": "bin", "size": 2}
                data_line = ""
                with trio.fail_after(10):
                    async for line in lines:
                        if line.startswith("data:") and "sender" in line:
                            data_line = line
                            break
        assert '"data":null' in data_line and '"data_b64":"/wA="' in data_line


async def test_peers_connect_identify_ping_disconnect() -> None:
    # SWIM off: a SWIM member redials a peer that hung up on it, and since
    # disconnect no longer loses track of such a redial, b would be back.
    async with api_node(swim=False) as a, api_node(swim=False) as b:
        b_id = str(b.node.peer_id)
        assert await a.client.connect(b.node.addrs[0]) == b_id
        listed = await a.client.peers()
        assert [p.peer_id for p in listed] == [b_id]
        assert [c.direction for c in listed[0].connections] == ["outbound"]
        details = await a.client.peer(b_id)
        assert details.agent_version == AGENT_VERSION
        assert any(p.startswith("/meshsub/") for p in details.protocols)
        assert 0 < await a.client.ping(b_id) < 5
        await a.client.disconnect(b_id)
        assert not a.node.is_connected(b_id)
        assert await a.client.peers() == []
        # Now unknown: 404 for each per-peer operation, never an implicit dial.
        for op in (a.client.peer, a.client.disconnect, a.client.ping):
            with pytest.raises(NotFound, match="not connected"):
                await op(b_id)


async def test_connect_errors_are_4xx_or_502_with_a_message() -> None:
    async with api_node() as a, api_node() as b:
        with pytest.raises(ApiError) as bad:
            await a.client.connect("/ip4/300.0.0.1/tcp/1")
        assert bad.value.status == 400 and "invalid multiaddr" in bad.value.message
        with pytest.raises(ApiError) as no_id:
            await a.client.connect("/ip4/127.0.0.1/tcp/1")
        assert no_id.value.status == 400 and "/p2p/" in no_id.value.message
        # A well-formed address where nobody listens: the network failed, 502.
        b_id = str(b.node.peer_id)
        with socket_closed_port() as port:
            with pytest.raises(ApiError) as unreachable:
                await a.client.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{b_id}")
        assert unreachable.value.status == 502 and unreachable.value.code == "peer_unreachable"
        with pytest.raises(ApiError) as bad_id:
            await a.client.peer("not-a-peer-id")
        assert bad_id.value.status == 400
        assert (await a.client.node()).peer_id == str(a.node.peer_id)  # still serving


class socket_closed_port:
    """A loopback port nobody listens on (bound, never listened, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"", 400, "JSON object"),
        (b'{"topic": "t", "data": "x", "extra": 1}', 400, "unknown field"),
        (b'{"topic": "t", "data": "x", "data_b64": "eA=="}', 400, "exactly one"),
        (b'{"topic": "t"}', 400, "exactly one"),
        (b'{"topic": "t", "data_b64": "***"}', 400, "base64"),
        (b'{"topic": "", "data": "x"}', 400, "topic"),
        (b'{"topic": 5, "data": "x"}', 400, "topic"),
        (b'{"topic": "t", "data": 5}', 400, "data"),
        (b'{"topic": "\\ud800", "data": "x"}', 400, "Unicode"),
        (b'{"topic": "' + b"t" * 300 + b'", "data": "x"}', 400, "longer"),
        (b"[" * 50000 + b"]" * 50000, 400, "malformed JSON"),  # nesting bomb
    ],
)
async def test_malformed_publish_requests_get_400(body: bytes, status: int, needle: str) -> None:
    async with api_node() as a:
        r = await a.client._http.post("/v1/pubsub/publish", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        assert r.json()["error"] == "bad_request" and needle in r.json()["message"]
        assert a.node.pubsub.stats.published == 0


async def test_oversized_payloads_get_413() -> None:
    async with api_node(pubsub=_small_pubsub()) as a:
        limit = a.node.config.pubsub.max_message_size
        http = a.client._http
        # Within the body limit but over the message size once decoded.
        r = await http.post("/v1/pubsub/publish", json={"topic": "t", "data": "x" * (limit + 1)})
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
        r = await http.post("/v1/pubsub/publish", json={"topic": "t", "data_b64": base64.b64encode(b"x" * (limit + 1)).decode()})
        assert r.status_code == 413
        # Over the body limit: refused from Content-Length, and when streamed without one.
        huge = b'{"topic": "t", "data": "' + b"x" * (4 * limit) + b'"}'
        r = await http.post("/v1/pubsub/publish", content=huge)
        assert r.status_code == 413

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(64):  # 1 MiB, far over the ~70 KiB body limit for 4 KiB messages
                yield b"x" * 16384

        r = await http.post("/v1/pubsub/publish", content=chunks())
        assert r.status_code == 413, r.text
        assert r.status_code == 413, r.text
        assert r.status_code == 413
        assert (await a.client.publish("t", "x" * limit)) == limit  # exactly the limit is fine


def _small_pubsub() -> PubSubConfig:
    return PubSubConfig(max_message_size=4096)


async def test_unknown_routes_and_methods_are_json_errors() -> None:
    async with api_node() as a:
        http = a.client._http
        r = await http.get("/v1/does-not-exist")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        r = await http.delete("/v1/node")
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
        r = await http.get("/v1/pubsub/subscribe")
        assert r.status_code == 400 and "topic" in r.json()["message"]
        r = await http.get("/v1/dht/providers", params={"key": "k", "count": "lots"})
        assert r.status_code == 400


async def test_dht_between_two_nodes() -> None:
    async with api_node() as a, api_node() as b:
        await connected_pair(a, b)
        await wait_until(lambda: a.node.dht.routing_table_size >= 1 and b.node.dht.routing_table_size >= 1, what="routing tables")
        assert await b.client.dht_get("missing") is None
        await a.client.dht_put("greeting", "hello")
        assert await b.client.dht_get("greeting") == b"hello"
        await a.client.dht_put("blob", b"\x00\xff")
        assert await b.client.dht_get("blob") == b"\x00\xff"
        await a.client.provide("service/echo")
        providers = await b.client.find_providers("service/echo")
        assert str(a.node.peer_id) in [p.peer_id for p in providers]
        found = await b.client.find_peer(str(a.node.peer_id))
        assert found is not None and found.addrs
        with pytest.raises(ApiError) as bad:
            await a.client.dht_get("///")
        assert bad.value.status == 400


async def test_dht_on_a_lonely_node_fails_with_502_not_500() -> None:
    async with api_node() as a:
        with pytest.raises(ApiError) as lonely:
            await a.client.provide("nobody-to-tell")
        assert (lonely.value.status, lonely.value.code) == (502, "dht_failed")
        assert "no peer accepted" in lonely.value.message


async def test_a_reader_that_falls_behind_is_told_how_many_messages_it_lost() -> None:
    """18 MB published at a client that is not reading: the node's one-slot
    subscription buffer overflows, and the stream says so — every message is
    either delivered or counted in a ``dropped`` event."""
    async with api_node(pubsub=PubSubConfig(subscription_buffer=1)) as a:
        n, size = 300, 60000
        async with a.client._http.stream("GET", "/v1/pubsub/subscribe", params={"topic": "firehose"}) as resp:
            lines = resp.aiter_lines()
            assert await anext(lines) == "event: subscribed"
            for i in range(n):
                await a.node.publish("firehose", i.to_bytes(4, "big") * (size // 4))
            got, dropped, event = 0, 0, None
            with trio.fail_after(30):
                async for line in lines:
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: ") and event == "message":
                        got += 1
                    elif line.startswith("data: ") and event == "dropped":
                        dropped += json.loads(line.removeprefix("data: "))["count"]
                    if got + dropped == n:
                        break
        assert dropped > 0 and got >= 1
        assert dropped == a.node.pubsub.stats.dropped_inbound


async def test_event_stream_limit_and_release() -> None:
    async with api_node(limits=ApiLimits(max_streams=1)) as a:
        async with a.client.subscribe("one"):
            with pytest.raises(ApiError) as busy:
                async with a.client.subscribe("two"):
                    pass
            assert busy.value.status == 429
        # The first stream closed; its slot is free again once the server sees the disconnect.
        await wait_until(lambda: a.api.context is not None and a.api.context.open_streams == 0, what="stream slot released")
        async with a.client.subscribe("three"):
            assert a.api.context is not None and a.api.context.open_streams == 1


async def test_idle_stream_sends_keepalives() -> None:
    async with api_node(limits=ApiLimits(heartbeat=0.05)) as a:
        http = a.client._http
        async with http.stream("GET", "/v1/pubsub/subscribe", params={"topic": "idle"}) as resp:
            seen = []
            with trio.fail_after(10):
                async for line in resp.aiter_lines():
                    seen.append(line)
                    if line == ": keepalive":
                        break
        assert seen[0] == "event: subscribed"


class EchoService:
    """A service contributing its own route, as messaging/membership/records will."""

    name = "echo"

    def attach(self, node) -> None:  # type: ignore[no-untyped-def]
        pass

    async def run(self, node) -> None:  # type: ignore[no-untyped-def]
        await trio.sleep_forever()

    def api_routes(self) -> list[Route]:
        async def echo(request: Request) -> JSONResponse:
            return JSONResponse({"peer_id": str(context(request).node.peer_id), "echo": request.query_params.get("say")})

        return [Route("/echo", echo, methods=["GET"])]


async def test_services_contribute_routes_behind_the_same_auth() -> None:
    async with api_node(services=(EchoService(),)) as a:
        r = await a.client._http.get("/v1/echo", params={"say": "hi"})
        assert r.json() == {"peer_id": str(a.node.peer_id), "echo": "hi"}
        async with httpx.AsyncClient(base_url=a.api.base_url) as raw:
            assert (await raw.get("/v1/echo")).status_code == 401
