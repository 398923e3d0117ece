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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from agentp2p.client import calls
from agentp2p.client.calls import Call, StreamEvent
from agentp2p.client.discovery import Endpoint, locate
from agentp2p.client.errors import StreamClosed
from agentp2p.client.sse import SSEDecoder
from agentp2p.client.transport import DEFAULT_TIMEOUT, client_kwargs, stream_event, stream_timeout, translate_errors
from agentp2p.client.types import Agent, BannedPeer, DirectMessage, Member, MemberEvent, Message, NodeInfo, Peer, PeerAddrs, Record, SendReceipt, TopicPeers

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


class StreamOf(Generic[T]):
    """Blocking twin of :class:`agentp2p.client.async_client.AsyncStreamOf`."""

    def __init__(self, events: EventStream, first: StreamEvent, decode: Callable[[StreamEvent], T | None]) -> None:
        self.events = events
        self.first = first
        self._decode = decode

    def receive(self) -> T:
        while True:
            item = self._decode(self.events.next_event())
            if item is not None:
                return item

    def __iter__(self) -> StreamOf[T]:
        return self

    def __next__(self) -> T:
        return self.receive()


class Inbox(StreamOf[DirectMessage]):
    """Blocking twin of :class:`agentp2p.client.async_client.AsyncInbox`."""

    def __init__(self, client: SyncClient, events: EventStream, first: StreamEvent, auto_ack: bool) -> None:
        super().__init__(events, first, lambda e: calls.direct_message_from(e) if e.event == "message" else None)
        self._client = client
        self.auto_ack = auto_ack
        self._last: DirectMessage | None = None

    def receive(self) -> DirectMessage:
        if self.auto_ack:
            self.ack_last()
        msg = super().receive()
        self._last = msg
        return msg

    def ack(self, *msgs: DirectMessage | str) -> list[str]:
        ids = [m if isinstance(m, str) else m.id for m in msgs]
        if self._last is not None and self._last.id in ids:
            self._last = None
        return self._client.ack(*ids) if ids else []

    def ack_last(self) -> None:
        if self._last is not None:
            self.ack(self._last)


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
        identity: str | Path | None = None,
    ) -> None:
        self.endpoint = endpoint or locate(api, token=token, token_file=token_file, home=home, identity=identity)
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
        timeout: Any = httpx.USE_CLIENT_DEFAULT if call.timeout is None else max(call.timeout, self.timeout)
        with translate_errors(self.endpoint):
            resp = self._http.request(call.method, call.path, params=call.params, json=call.json, timeout=timeout)
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

    def banned_peers(self) -> list[BannedPeer]:
        """Peers the daemon refuses for now (penalty box), and why."""
        return self.call(calls.banned_peers())

    def denied(self) -> list[str]:
        """Peers on the daemon's deny list."""
        return self.call(calls.denied())

    def deny(self, peer_id: str) -> bool:
        """Refuse this peer both ways until :meth:`allow`, and close what is open
        to it; False if it was denied already. Lasts until the daemon stops
        (its config's ``deny`` list is what lasts)."""
        return self.call(calls.deny(peer_id))

    def allow(self, peer_id: str | None = None) -> list[str]:
        """Take the peer off the deny list (none given: every peer); returns
        the peers that were on it."""
        return self.call(calls.allow(peer_id))

    def allow_list(self) -> list[str] | None:
        """The peers the daemon's allow list admits; None when it is off
        (``allow_only = false`` in its config: every peer may connect)."""
        return self.call(calls.allow_list())

    def add_to_allow_list(self, peer_id: str) -> bool:
        """Admit this peer; False if it was already. A 409 ``ApiError`` when the
        list is off (only the daemon's config turns it on) or full."""
        return self.call(calls.add_to_allow_list(peer_id))

    def remove_from_allow_list(self, peer_id: str) -> bool:
        """Stop admitting this peer and cut its connections; False if it was not on the list."""
        return self.call(calls.remove_from_allow_list(peer_id))

    def policy(self) -> dict[str, Any]:
        """The daemon's authorization policy: ``{default, groups, rules}`` (docs/security.md)."""
        return self.call(calls.policy())

    def set_policy(self, policy: dict[str, Any]) -> dict[str, Any]:
        """Replace the daemon's policy, in force at once and until it stops; an
        ``ApiError`` (400) naming what is wrong, and the old policy stays."""
        return self.call(calls.set_policy(policy))

    def certificates(self) -> list[dict[str, Any]]:
        """The membership certificates the daemon presents (group, issuer, validity)."""
        return self.call(calls.certificates())

    def add_certificate(self, certificate: str) -> dict[str, Any]:
        """Have the daemon present ``certificate`` (the base64 text of ``agentp2p cert issue``)."""
        return self.call(calls.add_certificate(certificate))

    def peer_groups(self, peer_id: str, *, refresh: bool = False) -> dict[str, Any]:
        """What a peer proved to the daemon of its groups (fetched from it if not known)."""
        return self.call(calls.peer_groups(peer_id, refresh))

    def trust_scores(self) -> list[dict[str, Any]]:
        """Peers the daemon has a trust opinion of (score, level, pin, reasons), lowest first."""
        return self.call(calls.trust_scores())

    def trust(self, peer_id: str) -> dict[str, Any]:
        """The daemon's trust in one peer: score, level, pin, reasons by count, seconds still refused."""
        return self.call(calls.trust(peer_id))

    def pin(self, peer_id: str, pin: str | None) -> dict[str, Any]:
        """Pin a peer ``"trusted"`` or ``"banned"`` (cut off at once), or unpin it (None); kept across restarts."""
        return self.call(calls.pin(peer_id, pin))

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

    def pubsub_peers(self, topic: str) -> TopicPeers:
        """``topic``'s subscribers, the daemon's mesh for it and each peer's score."""
        return self.call(calls.pubsub_peers(topic))

    @contextlib.contextmanager
    def _stream_of(
        self, path: str, params: dict[str, Any], first: str, decode: Callable[[StreamEvent], T | None]
    ) -> Iterator[StreamOf[T]]:
        with self.events(path, params) as events:
            opened = events.next_event()
            if opened.event != first:
                raise StreamClosed(f"expected a {first!r} event, got {opened.event!r}")
            yield StreamOf(events, opened, decode)

    # -- direct messages -----------------------------------------------------------

    def send(
        self,
        peer_id: str,
        data: bytes | str,
        *,
        type: str | None = None,  # noqa: A002
        timeout: float = 30.0,
        seal: bool = False,
        wait: str | None = None,
    ) -> str:
        """Blocking twin of :meth:`agentp2p.client.async_client.Client.send`: the message id."""
        return self.call(calls.send(peer_id, data, type=type, timeout=timeout, seal=seal, wait=wait))

    def send_with_receipt(
        self,
        peer_id: str,
        data: bytes | str,
        *,
        type: str | None = None,  # noqa: A002
        timeout: float = 30.0,
        seal: bool = False,
        wait: str | None = None,
    ) -> SendReceipt:
        """Blocking twin of :meth:`agentp2p.client.async_client.Client.send_with_receipt`."""
        return self.call(calls.send_with_receipt(peer_id, data, type=type, timeout=timeout, seal=seal, wait=wait))

    def request(
        self, peer_id: str, data: bytes | str, *, type: str | None = None, timeout: float = 30.0, seal: bool = False  # noqa: A002
    ) -> bytes:
        return self.call(calls.request(peer_id, data, type=type, timeout=timeout, seal=seal))

    @contextlib.contextmanager
    def incoming(self, *, auto_ack: bool = True) -> Iterator[Inbox]:
        """Blocking twin of :meth:`agentp2p.client.async_client.Client.incoming`."""
        path, params = calls.incoming_path()
        with self.events(path, params) as events:
            opened = events.next_event()
            if opened.event != "ready":
                raise StreamClosed(f"expected a 'ready' event, got {opened.event!r}")
            inbox = Inbox(self, events, opened, auto_ack)
            yield inbox
            if auto_ack:
                inbox.ack_last()

    def ack(self, *ids: str) -> list[str]:
        return self.call(calls.ack(list(ids)))

    def handle(self, type: str) -> contextlib.AbstractContextManager[StreamOf[DirectMessage]]:  # noqa: A002
        path, params = calls.handle_path(type)
        return self._stream_of(path, params, "ready", lambda e: calls.direct_message_from(e) if e.event == "request" else None)

    def reply(self, request_id: str, data: bytes | str) -> None:
        self.call(calls.reply(request_id, data))

    def reply_error(self, request_id: str, error: str) -> None:
        self.call(calls.reply_error(request_id, error))

    # -- membership ------------------------------------------------------------------

    def members(self, states: list[str] | tuple[str, ...] | None = None) -> list[Member]:
        return self.call(calls.members(states))

    def member_events(self) -> contextlib.AbstractContextManager[StreamOf[MemberEvent]]:
        path, params = calls.member_events_path()
        return self._stream_of(path, params, "members", lambda e: calls.member_event_from(e) if e.event != "members" else None)

    # -- capability records ---------------------------------------------------------

    def record(self) -> Record:
        return self.call(calls.own_record())

    def update_record(self, **fields: Any) -> Record:
        return self.call(calls.update_record(fields))

    def get_record(self, peer_id: str, fresh: bool = False) -> Record | None:
        return self.call(calls.get_record(peer_id, fresh))

    def find_agents(
        self, capability: str, tags: list[str] | tuple[str, ...] = (), limit: int = 10, card: bool = False
    ) -> list[Agent]:
        return self.call(calls.find_agents(capability, tags, limit, card))

    # -- DHT ------------------------------------------------------------------------

    def dht_get(self, key: str) -> bytes | None:
        return self.call(calls.dht_get(key))

    def dht_put(self, key: str, value: bytes | str) -> int:
        """Store a value; returns how many remote peers stored it."""
        return self.call(calls.dht_put(key, value))

    def provide(self, key: str) -> None:
        self.call(calls.provide(key))

    def find_providers(self, key: str, count: int = 20) -> list[PeerAddrs]:
        return self.call(calls.find_providers(key, count))

    def find_peer(self, peer_id: str) -> PeerAddrs | None:
        return self.call(calls.find_peer(peer_id))
