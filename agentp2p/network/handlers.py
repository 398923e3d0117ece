"""Stream handlers that cannot take the node down.

py-libp2p 0.8.1 runs every inbound stream handler inside the swarm's nursery:
an exception escaping any handler (ours, pubsub's, the DHT's, identify's)
cancels that nursery and with it the whole host. A peer that sends garbage on
any protocol could therefore kill the node.

We contain failures at two depths:

* :func:`install_swarm_guard` wraps the swarm's single entry point for inbound
  streams, so nothing a remote peer triggers on any protocol (including
  multistream negotiation) escapes: the stream is reset and the failure
  counted.
* :func:`contained` wraps each handler we register ourselves, so a bug in one
  of our protocols is logged under its protocol name and counted separately.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from agentp2p.throttled_log import ThrottledLog

log = logging.getLogger("agentp2p.network.handlers")

StreamHandler = Callable[[Any], Awaitable[None]]


class HandlerFailures:
    """Counts contained handler failures per protocol (visible in node stats).

    ``on_failure(peer, protocol)``, when set, hears of each one: the node
    counts it against the peer in the penalty box.
    """

    def __init__(self, on_failure: Callable[[Any, str], None] | None = None) -> None:
        self.by_protocol: Counter[str] = Counter()
        self.on_failure = on_failure
        self._log = ThrottledLog(log, interval=30.0)

    def report(self, protocol: str, peer: Any, exc: BaseException) -> None:
        self.by_protocol[protocol] += 1
        self._log.warning((protocol, str(peer)), "handler for %s failed (peer %s): %r", protocol, peer, exc)
        if self.on_failure is not None and peer is not None:
            self.on_failure(peer, protocol)

    @property
    def total(self) -> int:
        return sum(self.by_protocol.values())


async def _reset_quietly(stream: Any) -> None:
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except Exception:  # the stream may already be dead; nothing to save
            pass


def contained(
    handler: StreamHandler, protocol: str, failures: HandlerFailures | None = None
) -> StreamHandler:
    """Return ``handler`` wrapped so that its exceptions reset the stream only."""

    async def guarded(stream: Any) -> None:
        try:
            await handler(stream)
        except Exception as exc:  # noqa: BLE001 — containment is the point
            peer = getattr(getattr(stream, "muxed_conn", None), "peer_id", None)
            if failures is not None:
                failures.report(protocol, peer, exc)
            else:
                log.warning("handler for %s failed (peer %s): %r", protocol, peer, exc)
            await _reset_quietly(stream)

    guarded.__wrapped__ = handler  # type: ignore[attr-defined]
    return guarded


def install_swarm_guard(host: Any, failures: HandlerFailures) -> None:
    """Wrap the swarm-wide inbound stream entry point of ``host``."""
    swarm = host.get_network()
    inner = swarm.common_stream_handler
    if getattr(inner, "__wrapped__", None) is not None:
        return  # already guarded
    swarm.set_stream_handler(contained(inner, "*inbound*", failures))
