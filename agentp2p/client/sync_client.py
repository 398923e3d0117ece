"""The synchronous client, for scripts: the same methods as :class:`Client`, blocking.

::

    with SyncClient() as daemon:
        daemon.publish("news", "hello")
        with daemon.subscribe("news") as sub:
            for msg in sub:
                print(msg.text)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from agentp2p.client import calls
from agentp2p.client.calls import Call, StreamEvent
from agentp2p.client.discovery import Endpoint, locate
from agentp2p.client.errors import StreamClosed
from agentp2p.client.sse import SSEDecoder
from agentp2p.client.transport import DEFAULT_TIMEOUT, client_kwargs, stream_event, stream_timeout, translate_errors
from agentp2p.client.types import Message, NodeInfo, Peer, PeerAddrs

T = TypeVar("T")


class EventStream:
    """Events from one API event stream (``for event in stream``)."""

    def __init__(self, response: httpx.Response, endpoint: Endpoint) -> None:
        self._lines = response.iter_lines()
        self._endpoint = endpoint
        self._decoder = SSEDecoder()

    def next_event(self) -> StreamEvent:
        with translate_errors(self._endpoint, streaming=True):
            for line in self._lines:
                raw = self._decoder.feed(line)
                if raw is not None:
                    return stream_event(raw)
        raise StreamClosed(f"the daemon at {self._endpoint.address} ended the event stream")

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> StreamEvent:
        return self.next_event()


class Subscription:
    """Messages on one topic. ``dropped`` counts messages lost because we read too slowly."""

    def __init__(self, topic: str, events: EventStream) -> None:
        self.topic = topic
        self.events = events
        self.dropped = 0

    def receive(self) -> Message:
        while True:
            ev = self.events.next_event()
            if ev.event == "message":
                return calls.message_from(ev)
            if ev.event == "dropped":
                self.dropped += int(ev.data.get("count", 0))

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Message:
        return self.receive()


class SyncClient:
    """Blocking twin of :class:`agentp2p.client.Client` (same arguments)."""

    def __init__(
        self,
        api: str | None = None,
        *,
        token: str | None = None,
        token_file: str | Path | None = None,
        home: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        endpoint: Endpoint | None = None,
    ) -> None:
        self.endpoint = endpoint or locate(api, token=token, token_file=token_file, home=home)
        self.timeout = timeout
        uds = self.endpoint.address.unix_path
        transport = httpx.HTTPTransport(uds=uds) if uds else None
        self._http = httpx.Client(transport=transport, **client_kwargs(self.endpoint, timeout))

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call[T]) -> T:
        with translate_errors(self.endpoint):
            resp = self._http.request(call.method, call.path, params=call.params, json=call.json)
        return calls.finish(call, resp.status_code, resp.content, self.endpoint.token_source)

    @contextlib.contextmanager
    def events(self, path: str, params: dict[str, Any] | None = None) -> Iterator[EventStream]:
        with translate_errors(self.endpoint, streaming=True):
            request = self._http.build_request("GET", path, params=params, timeout=stream_timeout(self.timeout))
            response = self._http.send(request, stream=True)
        try:
            if response.status_code != 200:
                with translate_errors(self.endpoint):
                    body = response.read()
                raise calls.error_from(response.status_code, body, self.endpoint.token_source)
            yield EventStream(response, self.endpoint)
        finally:
            response.close()

    # -- node and peers -----------------------------------------------------------

    def node(self) -> NodeInfo:
        return self.call(calls.node())

    def stats(self) -> dict[str, Any]:
        return self.call(calls.stats())

    def peers(self) -> list[Peer]:
        return self.call(calls.peers())

    def peer(self, peer_id: str) -> Peer:
        return self.call(calls.peer(peer_id))

    def connect(self, addr: str) -> str:
        return self.call(calls.connect(addr))

    def disconnect(self, peer_id: str) -> None:
        self.call(calls.disconnect(peer_id))

    def ping(self, peer_id: str) -> float:
        return self.call(calls.ping(peer_id))

    # -- pub/sub --------------------------------------------------------------------

    def publish(self, topic: str, data: bytes | str) -> int:
        return self.call(calls.publish(topic, data))

    @contextlib.contextmanager
    def subscribe(self, topic: str) -> Iterator[Subscription]:
        path, params = calls.subscribe_path(topic)
        with self.events(path, params) as events:
            first = events.next_event()
            if first.event != "subscribed":
                raise StreamClosed(f"expected a 'subscribed' event, got {first.event!r}")
            yield Subscription(topic, events)

    def topics(self) -> dict[str, list[str]]:
        return self.call(calls.topics())

    def topic_peers(self, topic: str) -> list[str]:
        return self.call(calls.topic_peers(topic))

    # -- DHT ------------------------------------------------------------------------

    def dht_get(self, key: str) -> bytes | None:
        return self.call(calls.dht_get(key))

    def dht_put(self, key: str, value: bytes | str) -> None:
        self.call(calls.dht_put(key, value))

    def provide(self, key: str) -> None:
        self.call(calls.provide(key))

    def find_providers(self, key: str, count: int = 20) -> list[PeerAddrs]:
        return self.call(calls.find_providers(key, count))

    def find_peer(self, peer_id: str) -> PeerAddrs | None:
        return self.call(calls.find_peer(peer_id))
