"""Direct messages through the control API, in process: real nodes, real sockets, the async client under trio.

Covers send (acknowledged when the receiving daemon writes the message to an
incoming stream), what happens with no reader, requests answered by an API
program (handle + reply), and the error answers of every messaging route.
"""

from __future__ import annotations

import base64
from types import SimpleNamespace

import httpx
import pytest
import trio

from agentp2p.application.api import build_app
from agentp2p.client import ApiError, NotFound
from agentp2p.config import NodeConfig
from agentp2p.testing import wait_until

from tests.api.api_fixtures import api_node, connected_pair


async def test_send_is_acknowledged_once_an_incoming_stream_takes_it() -> None:
    async with api_node() as a, api_node() as b:
        await connected_pair(a, b)
        b_id, a_id = str(b.node.peer_id), str(a.node.peer_id)
        binary = bytes(range(256))
        ids: list[str] = []

        async def sends() -> None:
            receipt = await a.client.send_with_receipt(b_id, "hello", type="greeting", wait="consumed")
            assert receipt.receipt == "consumed" and receipt.consumed_after is not None
            ids.append(receipt.id)
            ids.append(await a.client.send(b_id, binary, seal=True, wait="consumed"))  # send(): the id alone

        async with b.client.incoming() as inbox, trio.open_nursery() as nursery:
            nursery.start_soon(sends)
            with trio.fail_after(10):
                first = await inbox.receive()
                # The first send returns only once we acknowledge (asking for the next does).
                assert b.node.messaging.stats()["inbox"]["unacknowledged"] == 1 and ids == []
                second = await inbox.receive()
                await wait_until(lambda: len(ids) == 1, what="first send acknowledged")
                assert await inbox.ack(second) == [second.id]
                await wait_until(lambda: len(ids) == 2, what="second send acknowledged")
        msg_id, sealed_id = ids
        assert (first.id, first.sender, first.type, first.text, first.sealed) == (msg_id, a_id, "greeting", "hello", False)
        assert (second.id, second.data, second.type, second.sealed) == (sealed_id, binary, "message", True)
        assert a.node.messaging.stats()["sent"] == 2


async def test_without_a_reader_the_sender_gets_504_and_the_message_waits() -> None:
    async with api_node() as a, api_node() as b:
        await connected_pair(a, b)
        with pytest.raises(ApiError) as late:
            await a.client.send(str(b.node.peer_id), "anyone?", timeout=0.5, wait="consumed")
        assert (late.value.status, late.value.code, late.value.stored) == (504, "delivery_timeout", False)
        assert "did not acknowledge" in late.value.message
        # It reached b's node and waited there: the next reader gets it.
        async with b.client.incoming() as inbox:
            # The sender's link keeps the message after the 504 and resends it
            # (RTO floor 5 s, doubling); on a loaded CI machine 10 s was short.
            with trio.fail_after(30):
                msg = await inbox.receive()
        assert msg.text == "anyone?"


async def test_several_readers_share_the_messages() -> None:
    async with api_node() as a, api_node() as b:
        await connected_pair(a, b)
        got: list[str] = []
        async with b.client.incoming() as one, b.client.incoming() as two, trio.open_nursery() as nursery:

            async def read(inbox) -> None:  # type: ignore[no-untyped-def]
                async for msg in inbox:
                    got.append(msg.text)

            nursery.start_soon(read, one)
            nursery.start_soon(read, two)
            for i in range(6):
                await a.client.send(str(b.node.peer_id), f"m{i}")
            await wait_until(lambda: len(got) == 6, what="all six messages read")
            nursery.cancel_scope.cancel()
        assert sorted(got) == [f"m{i}" for i in range(6)]  # each exactly once


async def test_requests_answered_by_an_api_program() -> None:
    async with api_node() as a, api_node() as b:
        await connected_pair(a, b)
        b_id = str(b.node.peer_id)
        async with b.client.handle("upper") as requests:
            assert requests.first.data == {"type": "upper"}
            with pytest.raises(ApiError) as taken:
                async with b.client.handle("upper"):
                    pass
            assert (taken.value.status, taken.value.code) == (409, "conflict")

            async def answer() -> None:
                req = await requests.receive()
                assert req.sender == str(a.node.peer_id) and req.type == "upper" and req.request_id
                await b.client.reply(req.request_id, req.text.upper())
                with pytest.raises(NotFound):  # answered once, never twice
                    await b.client.reply(req.request_id, "again")
                req = await requests.receive()
                await b.client.reply_error(req.request_id, "cannot shout that")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer)
                with trio.fail_after(15):
                    assert await a.client.request(b_id, "quiet", type="upper") == b"QUIET"
                    with pytest.raises(ApiError) as refused:
                        await a.client.request(b_id, "x", type="upper")
            assert (refused.value.status, refused.value.code) == (502, "remote_handler_error")
            assert "cannot shout that" in refused.value.message
        # The stream closed: the type has no handler any more, and a request says so at once.
        with trio.fail_after(15):
            with pytest.raises(ApiError) as gone:
                await a.client.request(b_id, "x", type="upper")
        assert gone.value.code == "remote_handler_error" and "no handler" in gone.value.message
        async with b.client.handle("upper"):  # and the type can be handled again
            pass


async def test_request_without_a_reply_times_out_and_a_closed_handler_answers_pending_requests() -> None:
    async with api_node() as a, api_node() as b:
        await connected_pair(a, b)
        b_id = str(b.node.peer_id)
        async with b.client.handle("slow") as requests:
            with pytest.raises(ApiError) as late:
                await a.client.request(b_id, "x", type="slow", timeout=1.0)
            assert (late.value.status, late.value.code) == (504, "request_timeout")
            stale = await requests.receive()
        with pytest.raises(NotFound):  # its handler stopped waiting when the stream closed
            await b.client.reply(stale.request_id, "too late")

        async with trio.open_nursery() as nursery:
            outcome: list[ApiError] = []

            async def ask() -> None:
                with pytest.raises(ApiError) as err:
                    await a.client.request(b_id, "y", type="slow", timeout=20)
                outcome.append(err.value)

            async with b.client.handle("slow") as requests:
                nursery.start_soon(ask)
                with trio.fail_after(10):
                    await requests.receive()
            # The program left without answering: the requester hears so at once, not at its timeout.
        assert outcome and outcome[0].code == "remote_handler_error" and "disconnected" in outcome[0].message


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"data": "x"}, 400, "peer ID"),
        ({"peer_id": "nope!", "data": "x"}, 400, "peer ID"),
        ({"peer_id": "SELF", "data": "x"}, 400, "itself"),
        ({"peer_id": "B", "data": "x", "extra": 1}, 400, "unknown field"),
        ({"peer_id": "B"}, 400, "exactly one"),
        ({"peer_id": "B", "data": "x", "data_b64": "eA=="}, 400, "exactly one"),
        ({"peer_id": "B", "data": "x", "type": "~req:x"}, 400, "type"),
        ({"peer_id": "B", "data": "x", "type": ""}, 400, "type"),
        ({"peer_id": "B", "data": "x", "type": "t" * 201}, 400, "type"),
        ({"peer_id": "B", "data": "x", "timeout": 0}, 400, "timeout"),
        ({"peer_id": "B", "data": "x", "timeout": 601}, 400, "timeout"),
        ({"peer_id": "B", "data": "x", "timeout": "soon"}, 400, "timeout"),
        ({"peer_id": "B", "data": "x", "timeout": True}, 400, "timeout"),
        ({"peer_id": "B", "data": "x", "seal": "yes"}, 400, "seal"),
        ({"peer_id": "B", "data_b64": base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()}, 413, "exceeds"),
    ],
)
async def test_bad_sends_and_requests_are_4xx(body: dict, status: int, needle: str) -> None:
    async with api_node() as a:
        b_id = "12D3KooWQ4gTjYXC7bQTQgnHVgZiJgUfsZDh7uxRGZNWjhmFmmK5"
        body = {k: (b_id if v == "B" else str(a.node.peer_id) if v == "SELF" else v) for k, v in body.items()}
        for path in ("/v1/messages", "/v1/messages/request"):
            r = await a.client._http.post(path, json=body)
            assert r.status_code == status, (path, r.text)
            assert needle in r.json()["message"], r.text
        assert a.node.messaging.stats()["sent"] == 0


@pytest.mark.parametrize(
    ("wait", "path", "needle"),
    [
        ("later", "/v1/messages", "'wait' must be"),
        (True, "/v1/messages", "'wait' must be"),
        ("stored", "/v1/messages/request", "unknown field"),  # a request waits for its response
    ],
)
async def test_bad_wait_is_a_400(wait: object, path: str, needle: str) -> None:
    async with api_node() as a:
        body = {"peer_id": "12D3KooWQ4gTjYXC7bQTQgnHVgZiJgUfsZDh7uxRGZNWjhmFmmK5", "data": "x", "wait": wait}
        r = await a.client._http.post(path, json=body)
        assert r.status_code == 400 and needle in r.json()["message"], r.text
        assert a.node.messaging.stats()["sent"] == 0


async def test_unknown_peer_is_a_504_naming_the_last_error() -> None:
    async with api_node() as a:
        nobody = "12D3KooWQ4gTjYXC7bQTQgnHVgZiJgUfsZDh7uxRGZNWjhmFmmK5"
        with pytest.raises(ApiError) as err:
            await a.client.send(nobody, "hello?", timeout=1.0)
        assert (err.value.status, err.value.code) == (504, "delivery_timeout")
        assert nobody in err.value.message


async def test_handle_and_reply_errors() -> None:
    async with api_node() as a:
        http = a.client._http
        for params, needle in (({}, "type"), ({"type": "~req:x"}, "type"), ({"type": ""}, "type")):
            r = await http.get("/v1/messages/handle", params=params)
            assert r.status_code == 400 and needle in r.json()["message"], r.text

        async def python_handler(msg):  # type: ignore[no-untyped-def]
            return b""

        a.node.set_handler("taken", python_handler)
        r = await http.get("/v1/messages/handle", params={"type": "taken"})
        assert r.status_code == 409  # a Python handler is never replaced behind its back
        r = await http.post("/v1/messages/0123/reply", json={"data": "x"})
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        for body in ({"data": "x", "error": "y"}, {"error": ""}, {"error": 5}, {}, {"data": "x", "other": 1}):
            r = await http.post("/v1/messages/0123/reply", json=body)
            assert r.status_code == 400, (body, r.text)


async def test_features_without_their_service_answer_503() -> None:
    """A node without messaging, SWIM or records (the route table is the same for every daemon)."""
    stub = SimpleNamespace(config=NodeConfig(), services={}, peer_id="stub")
    app = build_app(stub, "t")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers={"Authorization": "Bearer t"}) as http:
        peer = "12D3KooWQ4gTjYXC7bQTQgnHVgZiJgUfsZDh7uxRGZNWjhmFmmK5"
        for method, path, body in (
            ("POST", "/v1/messages", {"peer_id": peer, "data": "x"}),
            ("POST", "/v1/messages/request", {"peer_id": peer, "data": "x"}),
            ("GET", "/v1/messages/incoming", None),
            ("GET", "/v1/messages/handle?type=t", None),
            ("POST", "/v1/messages/abc/reply", {"data": "x"}),
            ("GET", "/v1/members", None),
            ("GET", "/v1/members/events", None),
            ("GET", "/v1/records/self", None),
            ("PUT", "/v1/records/self", {"name": "x"}),
            ("GET", "/v1/records?capability=x", None),
            ("GET", f"/v1/records/{peer}", None),
        ):
            r = await http.request(method, path, json=body)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["error"] == "service_unavailable" and "not enabled" in r.json()["message"]
