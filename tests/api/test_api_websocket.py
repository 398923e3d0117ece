"""WebSocket streaming beside server-sent events (issue #16), on real sockets.

The event streams — a topic's messages, incoming direct messages, membership
changes — read over a WebSocket at the same path: one JSON frame per event
(``{"event", "id", "data"}``), the same token, the same limit on open
streams; a request the SSE route would refuse is closed with ``4000 + its
status`` and the reason; a dashboard session reaches only membership events,
and only from its own origin. Client side: trio-websocket (a py-libp2p
dependency already).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url

from agentp2p.application.api import ApiLimits, ApiService
from agentp2p.application.dashboard.gate import COOKIE_PREFIX, LOGIN_PATH
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until
from tests.api.api_fixtures import ApiNode, api_node, connected_pair

TIMEOUT = 10


def ws_url(a: ApiNode | ApiService, path: str) -> str:
    api = a.api if isinstance(a, ApiNode) else a
    return api.base_url.replace("http://", "ws://", 1) + path


def bearer(a: ApiNode | ApiService) -> list[tuple[bytes, bytes]]:
    api = a.api if isinstance(a, ApiNode) else a
    return [(b"authorization", f"Bearer {api.token}".encode())]


@contextlib.asynccontextmanager
async def websocket(url: str, headers: list[tuple[bytes, bytes]]) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(url, extra_headers=headers, connect_timeout=TIMEOUT, disconnect_timeout=TIMEOUT) as ws:
        yield ws


async def next_event(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        frame: dict[str, Any] = json.loads(await ws.get_message())
    return frame


async def closed_with(ws: WebSocketConnection) -> tuple[int, str]:
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as info:
        await ws.get_message()
    return info.value.reason.code, info.value.reason.reason or ""


async def test_a_topic_over_a_websocket() -> None:
    async with api_node() as a, api_node() as b:
        async with websocket(ws_url(b, "/v1/pubsub/subscribe?topic=news"), bearer(b)) as ws:
            assert await next_event(ws) == {"event": "subscribed", "id": 1, "data": {"topic": "news"}}
            assert "news" in b.node.pubsub.topics()  # subscribed now, as with SSE
            await connected_pair(a, b, topic="news")
            await a.client.publish("news", "hello")
            await a.client.publish("news", bytes([0xFF, 0x00]))
            first, second = await next_event(ws), await next_event(ws)
            assert b.api.context is not None and b.api.context.open_streams == 1
        assert first["event"] == "message" and first["id"] == 2
        assert (first["data"]["topic"], first["data"]["data"], first["data"]["sender"]) == ("news", "hello", str(a.node.peer_id))
        assert second["data"]["data"] is None and second["data"]["data_b64"] == "/wA="
        # Closing the socket ended the stream: unsubscribed, the slot given back.
        await wait_until(lambda: "news" not in b.node.pubsub.topics(), what="unsubscribe after the socket closed")
        await wait_until(lambda: b.api.context.open_streams == 0, what="stream slot released")


async def test_incoming_messages_over_a_websocket_acknowledged_by_post() -> None:
    async with api_node() as a, api_node() as b:
        await connected_pair(a, b)
        sent: list[str] = []
        async with websocket(ws_url(b, "/v1/messages/incoming"), bearer(b)) as ws, trio.open_nursery() as nursery:
            assert (await next_event(ws))["event"] == "ready"

            async def send() -> None:
                sent.append(await a.client.send(str(b.node.peer_id), "hi", type="greeting"))

            nursery.start_soon(send)
            frame = await next_event(ws)
            assert frame["event"] == "message"
            msg = frame["data"]
            assert (msg["sender"], msg["type"], msg["data"]) == (str(a.node.peer_id), "greeting", "hi")
            await ws.send_message("ignored: acks are POSTs")  # the stream goes on
            assert await b.client.ack(msg["id"]) == [msg["id"]]
            await wait_until(lambda: sent == [msg["id"]], what="the sender's send returned")


async def test_membership_events_over_a_websocket() -> None:
    async with api_node() as a, api_node() as b:
        async with websocket(ws_url(a, "/v1/members/events"), bearer(a)) as ws:
            first = await next_event(ws)
            assert first["event"] == "members" and first["data"]["peer_id"] == str(a.node.peer_id)
            await connected_pair(b, a)
            with trio.fail_after(TIMEOUT):
                while (frame := await next_event(ws))["event"] != "joined":
                    pass
            assert frame["data"]["peer_id"] == str(b.node.peer_id)


async def test_refusals_are_close_codes_with_the_reason_and_no_token_is_no_upgrade() -> None:
    async with api_node(limits=ApiLimits(max_streams=1)) as a:
        for headers in ([], [(b"authorization", b"Bearer wrong")]):
            with pytest.raises(ConnectionRejected) as rejected:
                async with websocket(ws_url(a, "/v1/members/events"), headers):
                    pass
            assert rejected.value.status_code == 403
        async with websocket(ws_url(a, "/v1/pubsub/subscribe"), bearer(a)) as ws:
            code, reason = await closed_with(ws)
            assert code == 4400 and reason.startswith("bad_request:") and "topic" in reason
        async with websocket(ws_url(a, "/v1/members/events?state=x"), bearer(a)) as held:
            assert (await next_event(held))["event"] == "members"  # (its query is not checked, as with SSE)
            async with websocket(ws_url(a, "/v1/pubsub/subscribe?topic=t"), bearer(a)) as ws:
                code, reason = await closed_with(ws)
                assert code == 4429 and reason.startswith("too_many_requests:")
    swimless = ApiService("127.0.0.1:0")
    async with Node(local_config(swim=False), services=[swimless]):
        with trio.fail_after(TIMEOUT):
            await swimless.ready.wait()
        async with websocket(ws_url(swimless, "/v1/members/events"), bearer(swimless)) as ws:
            code, reason = await closed_with(ws)
            assert code == 4503 and reason.startswith("service_unavailable:")


async def test_a_dashboard_session_reaches_membership_events_from_its_own_origin_only() -> None:
    api = ApiService("127.0.0.1:0", dashboard=True)
    async with Node(local_config(), services=[api]):
        with trio.fail_after(TIMEOUT):
            await api.ready.wait()
        async with httpx.AsyncClient(base_url=api.base_url) as http:
            code = (await http.post("/dashboard/login-code", headers={"Authorization": f"Bearer {api.token}"})).json()
            assert (await http.post(LOGIN_PATH, data={"code": code["path"].split("code=", 1)[1]})).status_code == 303
            name = f"{COOKIE_PREFIX}{api.address.port}"
            cookie = [(b"cookie", f"{name}={http.cookies[name]}".encode())]
        own = [(b"origin", api.base_url.encode())]
        async with websocket(ws_url(api, "/v1/members/events"), cookie + own) as ws:
            assert (await next_event(ws))["event"] == "members"
        for path, headers in (
            ("/v1/members/events", cookie + [(b"origin", b"http://127.0.0.1:3000")]),  # another origin, same site
            ("/v1/members/events", cookie),  # no Origin: not a browser's page (browsers always send it here)
            ("/v1/pubsub/subscribe?topic=t", cookie + own),  # a session does not subscribe
            ("/v1/messages/incoming", cookie + own),
        ):
            with pytest.raises(ConnectionRejected):
                async with websocket(ws_url(api, path), headers):
                    pass


async def test_a_client_frame_larger_than_a_few_kib_closes_the_socket() -> None:
    # Clients send nothing the streams read; hypercorn's default would buffer 16 MiB per message.
    async with api_node() as a:
        async with websocket(ws_url(a, "/v1/members/events"), bearer(a)) as ws:
            assert (await next_event(ws))["event"] == "members"
            await ws.send_message("x" * 100)  # small frames are ignored
            await ws.send_message("x" * 64 * 1024)
            code, _ = await closed_with(ws)
            assert code == 1009  # message too big
