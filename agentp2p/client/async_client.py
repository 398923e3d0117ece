"""The async client: one API for asyncio and trio programs.

httpx's ``AsyncClient`` runs on whichever event loop calls it (through
anyio/sniffio), so the same ``Client`` works under ``asyncio.run`` and
``trio.run``::

    async with Client() as daemon:          # finds ~/.agentp2p/api.addr and api.token
        print((await daemon.node()).peer_id)
        async with daemon.subscribe("news") as sub:
            await daemon.publish("news", "hello")
            async for msg in sub:
                print(msg.sender, msg.text)
                break
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
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


class AsyncEventStream:
    """Events from one API event stream (``async for event in stream``)."""

    def __init__(self, response: httpx.Response, endpoint: Endpoint) -> None:
        self._lines = response.aiter_lines()
        self._endpoint = endpoint
        self._decoder = SSEDecoder()

    async def next_event(self) -> StreamEvent:
        with translate_errors(self._endpoint, streaming=True):
            async for line in self._lines:
                raw = self._decoder.feed(line)
                if raw is not None:
                    return stream_event(raw)
        raise StreamClosed(f"the daemon at {self._endpoint.address} ended the event stream")

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self.next_event()


class AsyncSubscription:
    """Messages on one topic. ``dropped`` counts messages lost because we read too slowly."""

    def __init__(self, topic: str, events: AsyncEventStream) -> None:
        self.topic = topic
        self.events = events
        self.dropped = 0

    async def receive(self) -> Message:
        while True:
            ev = await self.events.next_event()
            if ev.event == "message":
                return calls.message_from(ev)
            if ev.event == "dropped":
                self.dropped += int(ev.data.get("count", 0))

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Message:
        return await self.receive()


class AsyncStreamOf(Generic[T]):
    """The items of one kind an event stream carries (``async for item in stream``).

    ``first`` is the event that opened the stream (``ready``, or the
    ``members`` snapshot), already read.
    """

    def __init__(self, events: AsyncEventStream, first: StreamEvent, decode: Callable[[StreamEvent], T | None]) -> None:
        self.events = events
        self.first = first
        self._decode = decode

    async def receive(self) -> T:
        while True:
            item = self._decode(await self.events.next_event())
            if item is not None:
                return item

    def __aiter__(self) -> AsyncStreamOf[T]:
        return self

    async def __anext__(self) -> T:
        return await self.receive()


class AsyncInbox(AsyncStreamOf[DirectMessage]):
    """Incoming direct messages, acknowledged to the daemon (see :meth:`Client.incoming`).

    With ``auto_ack`` (the default) the message last returned is acknowledged
    when the next one is asked for, and when the ``async with`` block exits
    without an exception; :meth:`ack` acknowledges earlier (or, with
    ``auto_ack=False``, at all). An unacknowledged message is given to the
    next reader when this stream closes, and again after a daemon crash:
    the same id may arrive twice (at-least-once), deduplicate by ``msg.id``.
    """

    def __init__(self, client: Client, events: AsyncEventStream, first: StreamEvent, auto_ack: bool) -> None:
        super().__init__(events, first, lambda e: calls.direct_message_from(e) if e.event == "message" else None)
        self._client = client
        self.auto_ack = auto_ack
        self._last: DirectMessage | None = None

    async def receive(self) -> DirectMessage:
        if self.auto_ack:
            await self.ack_last()
        msg = await super().receive()
        self._last = msg
        return msg

    async def ack(self, *msgs: DirectMessage | str) -> list[str]:
        """Acknowledge messages (or ids); returns the ids the daemon was waiting for."""
        ids = [m if isinstance(m, str) else m.id for m in msgs]
        if self._last is not None and self._last.id in ids:
            self._last = None
        return await self._client.ack(*ids) if ids else []

    async def ack_last(self) -> None:
        """Acknowledge the message last returned, if not yet done."""
        if self._last is not None:
            await self.ack(self._last)


class Client:
    """Talks to a running ``agentp2p daemon`` (see module doc).

    With no arguments it reads ``~/.agentp2p/api.addr`` and ``api.token``;
    ``identity`` (a daemon's identity key file) reaches that daemon through
    the API files named after it; ``home`` points at another directory of
    default files; ``api``/``token``/``token_file`` override each piece.
    """

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
        transport = httpx.AsyncHTTPTransport(uds=uds) if uds else None
        self._http = httpx.AsyncClient(transport=transport, **client_kwargs(self.endpoint, timeout))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, call: Call[T]) -> T:
        """Perform one described API call (see :mod:`agentp2p.client.calls`)."""
        timeout: Any = httpx.USE_CLIENT_DEFAULT if call.timeout is None else max(call.timeout, self.timeout)
        with translate_errors(self.endpoint):
            resp = await self._http.request(call.method, call.path, params=call.params, json=call.json, timeout=timeout)
        return calls.finish(call, resp.status_code, resp.content, self.endpoint.token_source)

    @contextlib.asynccontextmanager
    async def events(self, path: str, params: dict[str, Any] | None = None) -> AsyncIterator[AsyncEventStream]:
        """Open any API event stream; closed when the block exits."""
        with translate_errors(self.endpoint, streaming=True):
            request = self._http.build_request("GET", path, params=params, timeout=stream_timeout(self.timeout))
            response = await self._http.send(request, stream=True)
        try:
            if response.status_code != 200:
                with translate_errors(self.endpoint):
                    body = await response.aread()
                raise calls.error_from(response.status_code, body, self.endpoint.token_source)
            yield AsyncEventStream(response, self.endpoint)
        finally:
            await response.aclose()

    # -- node and peers -----------------------------------------------------------

    async def node(self) -> NodeInfo:
        return await self.call(calls.node())

    async def stats(self) -> dict[str, Any]:
        return await self.call(calls.stats())

    async def peers(self) -> list[Peer]:
        return await self.call(calls.peers())

    async def banned_peers(self) -> list[BannedPeer]:
        """Peers the daemon refuses for now (penalty box), and why."""
        return await self.call(calls.banned_peers())

    async def denied(self) -> list[str]:
        """Peers on the daemon's deny list."""
        return await self.call(calls.denied())

    async def deny(self, peer_id: str) -> bool:
        """Refuse this peer both ways until :meth:`allow`, and close what is open
        to it; False if it was denied already. Lasts until the daemon stops
        (its config's ``deny`` list is what lasts)."""
        return await self.call(calls.deny(peer_id))

    async def allow(self, peer_id: str | None = None) -> list[str]:
        """Take the peer off the deny list (none given: every peer); returns
        the peers that were on it."""
        return await self.call(calls.allow(peer_id))

    async def allow_list(self) -> list[str] | None:
        """The peers the daemon's allow list admits; None when it is off
        (``allow_only = false`` in its config: every peer may connect)."""
        return await self.call(calls.allow_list())

    async def add_to_allow_list(self, peer_id: str) -> bool:
        """Admit this peer; False if it was already. A 409 ``ApiError`` when the
        list is off (only the daemon's config turns it on) or full."""
        return await self.call(calls.add_to_allow_list(peer_id))

    async def remove_from_allow_list(self, peer_id: str) -> bool:
        """Stop admitting this peer and cut its connections; False if it was not on the list."""
        return await self.call(calls.remove_from_allow_list(peer_id))

    async def policy(self) -> dict[str, Any]:
        """The daemon's authorization policy: ``{default, groups, rules}`` (docs/security.md)."""
        return await self.call(calls.policy())

    async def set_policy(self, policy: dict[str, Any]) -> dict[str, Any]:
        """Replace the daemon's policy, in force at once and until it stops; an
        ``ApiError`` (400) naming what is wrong, and the old policy stays."""
        return await self.call(calls.set_policy(policy))

    async def certificates(self) -> list[dict[str, Any]]:
        """The membership certificates the daemon presents (group, issuer, validity)."""
        return await self.call(calls.certificates())

    async def add_certificate(self, certificate: str) -> dict[str, Any]:
        """Have the daemon present ``certificate`` (the base64 text of ``agentp2p cert issue``)."""
        return await self.call(calls.add_certificate(certificate))

    async def peer_groups(self, peer_id: str, *, refresh: bool = False) -> dict[str, Any]:
        """What a peer proved to the daemon of its groups (fetched from it if not known)."""
        return await self.call(calls.peer_groups(peer_id, refresh))

    async def trust_scores(self) -> list[dict[str, Any]]:
        """Peers the daemon has a trust opinion of (score, level, pin, reasons), lowest first."""
        return await self.call(calls.trust_scores())

    async def trust(self, peer_id: str) -> dict[str, Any]:
        """The daemon's trust in one peer: score, level, pin, reasons by count, seconds still refused."""
        return await self.call(calls.trust(peer_id))

    async def pin(self, peer_id: str, pin: str | None) -> dict[str, Any]:
        """Pin a peer ``"trusted"`` or ``"banned"`` (cut off at once), or unpin it (None); kept across restarts."""
        return await self.call(calls.pin(peer_id, pin))

    async def peer(self, peer_id: str) -> Peer:
        return await self.call(calls.peer(peer_id))

    async def connect(self, addr: str) -> str:
        return await self.call(calls.connect(addr))

    async def disconnect(self, peer_id: str) -> None:
        await self.call(calls.disconnect(peer_id))

    async def ping(self, peer_id: str) -> float:
        return await self.call(calls.ping(peer_id))

    # -- pub/sub --------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes | str) -> int:
        return await self.call(calls.publish(topic, data))

    @contextlib.asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncSubscription]:
        """Subscribed once this is entered: a publish after it is seen."""
        path, params = calls.subscribe_path(topic)
        async with self.events(path, params) as events:
            first = await events.next_event()
            if first.event != "subscribed":
                raise StreamClosed(f"expected a 'subscribed' event, got {first.event!r}")
            yield AsyncSubscription(topic, events)

    async def topics(self) -> dict[str, list[str]]:
        return await self.call(calls.topics())

    async def topic_peers(self, topic: str) -> list[str]:
        return await self.call(calls.topic_peers(topic))

    async def pubsub_peers(self, topic: str) -> TopicPeers:
        """``topic``'s subscribers, the daemon's mesh for it and each peer's score."""
        return await self.call(calls.pubsub_peers(topic))

    @contextlib.asynccontextmanager
    async def _stream_of(
        self, path: str, params: dict[str, Any], first: str, decode: Callable[[StreamEvent], T | None]
    ) -> AsyncIterator[AsyncStreamOf[T]]:
        async with self.events(path, params) as events:
            opened = await events.next_event()
            if opened.event != first:
                raise StreamClosed(f"expected a {first!r} event, got {opened.event!r}")
            yield AsyncStreamOf(events, opened, decode)

    # -- direct messages -----------------------------------------------------------

    async def send(
        self,
        peer_id: str,
        data: bytes | str,
        *,
        type: str | None = None,  # noqa: A002
        timeout: float = 30.0,
        seal: bool = False,
        wait: str | None = None,
    ) -> str:
        """Send a direct message; returns its id once the receipt asked for came
        (:meth:`send_with_receipt` returns the receipt itself).

        ``wait="stored"`` (the daemon's default): once the receiving daemon's
        durable inbox has it; ``wait="consumed"``: once the peer's
        application acknowledged it. ``ApiError`` with status 507
        (``inbox_full``) if, waiting for *stored*, the peer's inbox refused it
        (nothing stored: send again later; waiting for *consumed* it waits for
        room instead), 504 (``delivery_timeout``) if the receipt did not come
        within ``timeout`` seconds (it may still arrive; if it was stored, it
        will, and the error's ``stored`` is True).
        """
        return await self.call(calls.send(peer_id, data, type=type, timeout=timeout, seal=seal, wait=wait))

    async def send_with_receipt(
        self,
        peer_id: str,
        data: bytes | str,
        *,
        type: str | None = None,  # noqa: A002
        timeout: float = 30.0,
        seal: bool = False,
        wait: str | None = None,
    ) -> SendReceipt:
        """As :meth:`send`, returning its :class:`SendReceipt` (``.id``,
        ``.receipt`` — ``"stored"`` or ``"consumed"`` —, seconds to each receipt)."""
        return await self.call(calls.send_with_receipt(peer_id, data, type=type, timeout=timeout, seal=seal, wait=wait))

    async def request(
        self, peer_id: str, data: bytes | str, *, type: str | None = None, timeout: float = 30.0, seal: bool = False  # noqa: A002
    ) -> bytes:
        """Send a request and return the response payload (504 ``request_timeout``,
        502 ``remote_handler_error`` if the peer's handler failed or there is none)."""
        return await self.call(calls.request(peer_id, data, type=type, timeout=timeout, seal=seal))

    @contextlib.asynccontextmanager
    async def incoming(self, *, auto_ack: bool = True) -> AsyncIterator[AsyncInbox]:
        """Incoming direct messages (an :class:`AsyncInbox`).

        A message counts as consumed, and its sender's ``send`` returns, once
        we acknowledge it: with ``auto_ack`` when we ask for the next message
        or leave the block normally, else with ``inbox.ack(msg)`` /
        :meth:`ack`. Unacknowledged messages are delivered again (same id) to
        the next reader, and after a daemon crash.
        """
        path, params = calls.incoming_path()
        async with self.events(path, params) as events:
            opened = await events.next_event()
            if opened.event != "ready":
                raise StreamClosed(f"expected a 'ready' event, got {opened.event!r}")
            inbox = AsyncInbox(self, events, opened, auto_ack)
            yield inbox
            if auto_ack:
                await inbox.ack_last()

    async def ack(self, *ids: str) -> list[str]:
        """Acknowledge direct messages by id (see :meth:`incoming`); returns those that were waiting."""
        return await self.call(calls.ack(list(ids)))

    def handle(self, type: str) -> contextlib.AbstractAsyncContextManager[AsyncStreamOf[DirectMessage]]:  # noqa: A002
        """Answer requests of ``type`` while the block runs: each item has a
        ``request_id`` for :meth:`reply` / :meth:`reply_error`."""
        path, params = calls.handle_path(type)
        return self._stream_of(path, params, "ready", lambda e: calls.direct_message_from(e) if e.event == "request" else None)

    async def reply(self, request_id: str, data: bytes | str) -> None:
        await self.call(calls.reply(request_id, data))

    async def reply_error(self, request_id: str, error: str) -> None:
        await self.call(calls.reply_error(request_id, error))

    # -- membership ------------------------------------------------------------------

    async def members(self, states: list[str] | tuple[str, ...] | None = None) -> list[Member]:
        """SWIM members (default: alive and suspect; ``states`` to choose)."""
        return await self.call(calls.members(states))

    def member_events(self) -> contextlib.AbstractAsyncContextManager[AsyncStreamOf[MemberEvent]]:
        """Membership changes; ``stream.first.data["members"]`` is the snapshot they start from."""
        path, params = calls.member_events_path()
        return self._stream_of(path, params, "members", lambda e: calls.member_event_from(e) if e.event != "members" else None)

    # -- capability records ---------------------------------------------------------

    async def record(self) -> Record:
        """This agent's record (``card``: as an A2A Agent Card)."""
        return await self.call(calls.own_record())

    async def update_record(self, **fields: Any) -> Record:
        """Change and re-publish this agent's record: ``name``, ``description``,
        ``capabilities`` (names or dicts), ``metadata``, or ``card`` (an A2A Agent Card)."""
        return await self.call(calls.update_record(fields))

    async def get_record(self, peer_id: str, fresh: bool = False) -> Record | None:
        return await self.call(calls.get_record(peer_id, fresh))

    async def find_agents(
        self, capability: str, tags: list[str] | tuple[str, ...] = (), limit: int = 10, card: bool = False
    ) -> list[Agent]:
        """Live agents offering ``capability`` (with every tag in ``tags``), best first."""
        return await self.call(calls.find_agents(capability, tags, limit, card))

    # -- DHT ------------------------------------------------------------------------

    async def dht_get(self, key: str) -> bytes | None:
        return await self.call(calls.dht_get(key))

    async def dht_put(self, key: str, value: bytes | str) -> int:
        """Store a value; returns how many remote peers stored it."""
        return await self.call(calls.dht_put(key, value))

    async def provide(self, key: str) -> None:
        await self.call(calls.provide(key))

    async def find_providers(self, key: str, count: int = 20) -> list[PeerAddrs]:
        return await self.call(calls.find_providers(key, count))

    async def find_peer(self, peer_id: str) -> PeerAddrs | None:
        return await self.call(calls.find_peer(peer_id))
