"""The libp2p ping protocol (``/ipfs/ping/1.0.0``), as a client.

py-libp2p serves ping; asking is ours so that it goes through the one dialer
(bans, deadlines) and so that services (records' liveness) can ping without
the node facade.

A ping server (py-libp2p's, like go-libp2p's) resets a third concurrent ping
stream from one peer. Callers on one node do not know of each other (the API,
records' liveness probes), so we run at most
:data:`MAX_CONCURRENT_PER_PEER` ping to one peer at once; the others wait
their turn within their own deadline. Before, ten concurrent pings to one
peer failed with StreamReset ~70 % of the time.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref

import trio
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID

from agentp2p.contract import Dialing
from agentp2p.errors import DialError

__all__ = ["PING_PROTOCOL", "ping"]

_PAYLOAD = 32  # the spec's fixed payload size
#: Our pings in flight to one peer. Its handler accepts 2 streams from us and
#: resets more; a stream we just closed counts there until its handler sees
#: the EOF, so one in flight (plus one closing) stays within that.
MAX_CONCURRENT_PER_PEER = 1

# dialer -> peer -> [semaphore, callers holding or waiting]; entries go when unused.
_slots: weakref.WeakKeyDictionary[object, dict[ID, list]] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def _turn(dialer: Dialing, peer: ID):  # type: ignore[no-untyped-def]
    peers = _slots.setdefault(dialer, {})
    slot = peers.setdefault(peer, [trio.Semaphore(MAX_CONCURRENT_PER_PEER), 0])
    slot[1] += 1
    try:
        async with slot[0]:
            yield
    finally:
        slot[1] -= 1
        if slot[1] == 0:
            peers.pop(peer, None)


async def _read_exactly(stream: object, n: int) -> bytes:
    data = b""
    while len(data) < n:
        try:
            chunk = await stream.read(n - len(data))  # type: ignore[attr-defined]
        except StreamEOF:
            break
        if not chunk:
            break
        data += chunk
    return data


async def ping(dialer: Dialing, peer: ID, timeout: float = 5.0) -> float:
    """Round-trip time to ``peer`` in seconds; :class:`DialError` on failure.

    Dials ``peer`` at its known addresses if not connected (no DHT lookup).
    """
    payload = os.urandom(_PAYLOAD)
    try:
        with trio.fail_after(timeout):
            async with _turn(dialer, peer):
                stream = await dialer.open_stream(peer, [str(PING_PROTOCOL)], timeout=timeout, lookup=False)
                try:
                    start = time.perf_counter()
                    await stream.write(payload)
                    got = await _read_exactly(stream, _PAYLOAD)
                    rtt = time.perf_counter() - start
                finally:
                    with contextlib.suppress(Exception):
                        await stream.close()
    except trio.TooSlowError:
        raise DialError(f"ping {peer} timed out") from None
    except DialError as exc:
        raise DialError(f"ping {peer} failed: {exc}") from None
    except Exception as exc:
        raise DialError(f"ping {peer} failed: {exc}") from None
    if got != payload:
        raise DialError(f"ping {peer}: reply did not echo our payload")
    return rtt
