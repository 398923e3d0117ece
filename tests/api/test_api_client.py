"""Client pieces on their own: SSE decoding, daemon discovery, the token file, the sync client."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import httpx
import pytest
import trio

from agentp2p.application.api.auth import load_or_create_token
from agentp2p.application.api.body import parse_peer_id
from agentp2p.application.api.errors import ApiError as ServerApiError
from agentp2p.client import ApiError, Client, ClientError, DaemonNotRunning, SendReceipt, StreamClosed, SyncClient, TokenError, locate
from agentp2p.client.discovery import parse_api_address
from agentp2p.client.sse import Event, SSEDecoder
from agentp2p.network.identity import Identity

from tests.api.api_fixtures import api_node


def _decode(text: str) -> list[Event]:
    dec = SSEDecoder()
    return [ev for line in text.split("\n") if (ev := dec.feed(line)) is not None]


def test_sse_decoder() -> None:
    events = _decode(": keepalive\n\nevent: subscribed\nid: 1\ndata: {}\n\ndata: a\ndata:b\n\nid: 7\n\nevent: x\ndata\n\n")
    assert events == [Event("subscribed", "{}", "1"), Event("message", "a\nb", "1"), Event("x", "", "7")]


def test_parse_api_address() -> None:
    a = parse_api_address("127.0.0.1:5001")
    assert (a.host, a.port, a.base_url, a.is_loopback()) == ("127.0.0.1", 5001, "http://127.0.0.1:5001", True)
    v6 = parse_api_address("[::1]:80")
    assert (v6.host, str(v6), v6.base_url, v6.is_loopback()) == ("::1", "[::1]:80", "http://[::1]:80", True)
    assert parse_api_address("http://localhost:9/").port == 9
    assert not parse_api_address("0.0.0.0:5001").is_loopback()
    # A daemon bound to every interface (in a container) is reached, and its
    # dashboard link given, through loopback: browsers refuse 0.0.0.0.
    assert parse_api_address("0.0.0.0:5001").base_url == "http://127.0.0.1:5001"
    assert parse_api_address("[::]:5001").base_url == "http://[::1]:5001"
    unix = parse_api_address("unix:/tmp/x.sock")
    assert unix.is_unix and unix.is_loopback() and str(unix) == "unix:/tmp/x.sock"
    for bad in ("5001", "host:", "host:port", "1.2.3.4:70000", "unix:"):
        with pytest.raises(ValueError):
            parse_api_address(bad)


def test_locate(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match="api.addr does not exist"):
        locate(home=tmp_path)
    (tmp_path / "api.addr").write_text("127.0.0.1:1234\n")
    with pytest.raises(TokenError, match="api.token does not exist"):
        locate(home=tmp_path)
    (tmp_path / "api.token").write_text("secret-token-value\n")
    ep = locate(home=tmp_path)
    assert (str(ep.address), ep.token, ep.token_source) == ("127.0.0.1:1234", "secret-token-value", str(tmp_path / "api.token"))
    assert locate("127.0.0.1:9", token="t", home=tmp_path).token == "t"
    (tmp_path / "api.addr").write_text("garbage")
    with pytest.raises(DaemonNotRunning, match="corrupt"):
        locate(home=tmp_path)
    with pytest.raises(ClientError):
        locate("not an address", token="t")


def test_token_file_is_private_reused_and_replaced_when_exposed(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "api.token"
    token = load_or_create_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 32
    assert load_or_create_token(path) == token  # kept across restarts
    path.chmod(0o644)
    replaced = load_or_create_token(path)
    assert replaced != token and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == replaced
    assert [p.name for p in path.parent.iterdir()] == ["api.token"]  # no temp files left


def test_concurrent_token_creation_agrees(tmp_path: Path) -> None:
    path = tmp_path / "api.token"
    results: list[str] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        results.append(load_or_create_token(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and path.read_text().strip() == results[0]


def test_parse_peer_id() -> None:
    ed = str(Identity.generate().peer_id)
    assert str(parse_peer_id(ed)) == ed
    assert str(parse_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")).startswith("Qm")
    for bad in ("abc", "", "0OIl", ed[:-1], "1" * 200, 5):
        with pytest.raises(ServerApiError):
            parse_peer_id(bad)


def _sse_transport(body: str, status: int = 200) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": "text/event-stream"}, content=body.encode())

    return httpx.MockTransport(handler)


async def test_subscription_counts_dropped_and_reports_a_closed_stream() -> None:
    body = (
        'event: subscribed\ndata: {"topic":"t"}\n\n'
        'event: dropped\ndata: {"topic":"t","count":3}\n\n'
        'event: message\ndata: {"topic":"t","sender":"12D3","seqno":"01","data_b64":"aGk=","data":"hi"}\n\n'
    )
    client = Client("127.0.0.1:1", token="t")
    client._http = httpx.AsyncClient(transport=_sse_transport(body), base_url="http://x")
    async with client, client.subscribe("t") as sub:
        msg = await sub.receive()
        assert (msg.text, sub.dropped) == ("hi", 3)
        with pytest.raises(StreamClosed, match="ended the event stream"):
            await sub.receive()


_SENT = {"id": "0123abcd", "peer_id": "12D3", "type": "message", "size": 2, "receipt": "stored",
         "stored_after": 0.012, "consumed_after": None}


def _json_transport(status: int, body: dict[str, object], seen: list[dict[str, object]]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append({"path": request.url.path, **json.loads(request.content)})
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handler)


async def test_send_returns_the_id_and_send_with_receipt_the_receipt() -> None:
    # send() -> str (the message id) as before receipts; the receipt is send_with_receipt()'s.
    seen: list[dict[str, object]] = []
    client = Client("127.0.0.1:1", token="t")
    client._http = httpx.AsyncClient(transport=_json_transport(200, _SENT, seen), base_url="http://x")
    async with client:
        assert await client.send("12D3", "hi") == "0123abcd"
        receipt = await client.send_with_receipt("12D3", "hi", wait="consumed")
    assert isinstance(receipt, SendReceipt) and (receipt.id, receipt.receipt, receipt.stored_after) == ("0123abcd", "stored", 0.012)
    assert [(s["path"], s.get("wait")) for s in seen] == [("/v1/messages", None), ("/v1/messages", "consumed")]
    sync = SyncClient("127.0.0.1:1", token="t")
    sync._http = httpx.Client(transport=_json_transport(200, _SENT, seen), base_url="http://x")
    with sync:
        assert sync.send("12D3", "hi", wait="stored") == "0123abcd"
        assert sync.send_with_receipt("12D3", "hi").receipt == "stored"


async def test_a_delivery_timeout_says_whether_the_message_was_stored() -> None:
    body = {"error": "delivery_timeout", "message": "12D3 stored message 0123abcd but ...", "stored": True}
    for stored in (True, False):
        client = Client("127.0.0.1:1", token="t")
        client._http = httpx.AsyncClient(transport=_json_transport(504, {**body, "stored": stored}, []), base_url="http://x")
        async with client:
            with pytest.raises(ApiError) as late:
                await client.send("12D3", "hi", wait="consumed")
        assert (late.value.status, late.value.code, late.value.stored) == (504, "delivery_timeout", stored)
    # Errors without the field (any other, or an older daemon's 504): unknown.
    client = Client("127.0.0.1:1", token="t")
    client._http = httpx.AsyncClient(transport=_json_transport(502, {"error": "peer_unreachable", "message": "x"}, []), base_url="http://x")
    async with client:
        with pytest.raises(ApiError) as other:
            await client.send("12D3", "hi")
    assert other.value.stored is None


async def test_sync_client_from_a_thread() -> None:
    async with api_node() as a:
        addr = a.api.base_url.removeprefix("http://")

        def script() -> tuple[str, str]:
            with SyncClient(addr, token=a.api.token) as c, c.subscribe("sync") as sub:
                c.publish("sync", "from a script")
                return c.node().peer_id, sub.receive().text

        with trio.fail_after(20):
            peer_id, text = await trio.to_thread.run_sync(script)
        assert (peer_id, text) == (str(a.node.peer_id), "from a script")


async def test_client_errors_name_the_daemon_address() -> None:
    async with Client("127.0.0.1:1", token="t") as c:
        with pytest.raises(DaemonNotRunning, match=r"127\.0\.0\.1:1"):
            await c.node()


def test_token_file_mode_survives_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "t"
        load_or_create_token(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)
