"""The libp2p ping protocol (``/ipfs/ping/1.0.0``), as a client.

py-libp2p serves ping; asking is ours so that it goes through the one dialer
(bans, deadlines) and so that services (records' liveness) can ping without
the node facade.
"""

from __future__ import annotations

import contextlib
import os
import time

import trio
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID

from agentp2p.contract import Dialing
from agentp2p.errors import DialError

__all__ = ["PING_PROTOCOL", "ping"]

_PAYLOAD = 32  # the spec's fixed payload size


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
