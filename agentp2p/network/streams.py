"""Inbound streams per (peer, protocol), for every handler on the host.

py-libp2p runs one task per inbound stream with no limit per peer or per
protocol. :func:`limit_streams` replaces the host's multistream handler
table with one that wraps every handler — those registered already
(identify, ping, pubsub, the DHT) and those registered later (our
services) — in ``ResourceManager.open_stream``/``close_stream``. A stream
beyond ``max_streams_per_peer_protocol`` open at once, or beyond
``stream_opens_per_second`` per (peer, protocol), is reset before its
handler runs; the limit hit counts against the peer in the penalty box.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import trio

from agentp2p.network.ratelimit import PeerRateLimiter
from agentp2p.network.resources import ResourceManager

StreamHandler = Any


def _limited(handler: StreamHandler, protocol: str, rm: ResourceManager, opens: PeerRateLimiter) -> StreamHandler:
    async def limited(stream: Any) -> None:
        peer = getattr(getattr(stream, "muxed_conn", None), "peer_id", None)
        too_fast = not opens.allow((peer, protocol), time.monotonic())
        if too_fast:
            rm.hit("stream_opens_per_second", peer, protocol)
        if too_fast or not rm.open_stream(peer, protocol):
            with trio.move_on_after(1):
                try:
                    await stream.reset()
                except Exception:  # already dead: nothing to save
                    pass
            return
        try:
            await handler(stream)
        finally:
            rm.close_stream(peer, protocol)

    limited.__wrapped__ = handler  # type: ignore[attr-defined]
    limited._agentp2p_stream_limit = rm  # type: ignore[attr-defined]
    return limited


class _LimitedHandlers(dict):  # type: ignore[type-arg]
    """A multistream handler table that wraps each handler as it is stored."""

    def __init__(self, rm: ResourceManager, items: dict[Any, Any]) -> None:
        super().__init__()
        self._rm = rm
        limits = rm.limits
        self._opens = PeerRateLimiter(limits.stream_opens_per_second, limits.stream_open_burst, max_peers=16384)
        for protocol, handler in items.items():
            self[protocol] = handler

    def __setitem__(self, protocol: Any, handler: Any) -> None:
        if protocol is not None and handler is not None and getattr(handler, "_agentp2p_stream_limit", None) is not self._rm:
            handler = _limited(handler, str(protocol), self._rm, self._opens)
        super().__setitem__(protocol, handler)

    def setdefault(self, protocol: Any, handler: Any = None) -> Any:  # type: ignore[override]
        if protocol not in self:
            self[protocol] = handler
        return self[protocol]

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for protocol, handler in dict(*args, **kwargs).items():
            self[protocol] = handler


def limit_streams(host: Any, resources: ResourceManager) -> None:
    """Wrap every present and future stream handler of ``host`` with the stream limit."""
    multiselect = host.get_mux()
    if isinstance(multiselect.handlers, _LimitedHandlers):
        return
    multiselect.handlers = _LimitedHandlers(resources, dict(multiselect.handlers))


async def close_quietly(stream: Any, reset: bool = False) -> None:
    """Close (or reset) ``stream`` even while being cancelled, within a second,
    whatever it raises: the end of a protocol exchange that is over anyway."""
    with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(Exception):
        await (stream.reset() if reset else stream.close())


def remote_ip(conn: Any) -> str | None:
    """The IP at the other end of a stream or raw connection (``get_remote_address``);
    None when it has none (a relayed connection) or cannot say."""
    try:
        addr = conn.get_remote_address()
        return str(addr[0]) if addr else None
    except Exception:  # noqa: BLE001 — a closed or odd connection
        return None
