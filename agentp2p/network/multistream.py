"""multistream-select that sends its header and first proposal together.

py-libp2p 0.8.1's client (``MultiselectClient.select_one_of``) writes the
``/multistream/1.0.0`` header, waits for the listener's, then writes its
proposal and waits again: two round trips wherever it negotiates. It
negotiates three times before a new connection carries its first request —
the security protocol, the muxer, the stream's protocol — so a first
request to a new peer took 9 round trips (TCP 1, security 2, Noise 1,
muxer 2, stream 2, the request 1), which is most of a cold DHT lookup's
time (docs/dht.md, "Connection set-up dominates lookup latency").

The protocol does not need the wait: the listener answers the header and
the proposal in order whenever they come, and go-libp2p's client
(go-multistream ``SelectProtoOrFail``) sends both in one write. So does
:func:`select_one_of`: header and first proposal in one write, then the
listener's header and its answer to the proposal are read — one round trip.
Only if the first proposal is refused (``na``) are the others tried one at
a time, as before. Listeners need nothing new: py-libp2p's reads exactly
one message at a time from a buffered stream, as go's does.

:func:`install` puts it on py-libp2p's client class, process-wide (every
host of the process negotiates this way; ``build_host`` installs it);
:func:`uninstall` restores the library's, for the benchmark's before/after
(benchmarks/round_trips.py). Errors are the library's
(``MultiselectClientError``, ``ProtocolNotSupportedError`` never escapes a
successful fallback), so callers see no difference but the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import IOException
from libp2p.protocol_muxer import multiselect_client as _client
from libp2p.protocol_muxer.exceptions import (
    MultiselectClientError,
    MultiselectCommunicatorError,
    ProtocolNotSupportedError,
)
from libp2p.utils import encode_delim

__all__ = ["HEADER", "LIBRARY_SELECT_ONE_OF", "install", "installed", "select_one_of", "uninstall"]

HEADER = "/multistream/1.0.0"
_NA = "na"
_TIMEOUT = 30

#: py-libp2p's own method, kept for :func:`uninstall` and for the test that shows its waits.
LIBRARY_SELECT_ONE_OF = _client.MultiselectClient.select_one_of


async def _read(communicator: Any, what: str) -> str:
    try:
        return str(await communicator.read())
    except MultiselectCommunicatorError as exc:
        raise MultiselectClientError(f"{what} read failed: {exc}") from exc


async def select_one_of(
    self: Any, protocols: Sequence[TProtocol], communicator: Any, negotiate_timeout: int = _TIMEOUT
) -> TProtocol:
    """``MultiselectClient.select_one_of`` in one round trip when the first protocol is accepted."""
    writer = getattr(communicator, "read_writer", None)
    if not protocols or writer is None:
        return await LIBRARY_SELECT_ONE_OF(self, protocols, communicator, negotiate_timeout)
    first = protocols[0]
    first_str = "" if first is None else str(first)
    with trio.move_on_after(negotiate_timeout):
        try:
            await writer.write(encode_delim(HEADER.encode()) + encode_delim(first_str.encode()))
        except (IOException, AssertionError, ValueError) as exc:  # what the library's communicator maps
            raise MultiselectClientError(f"handshake write failed: {exc}") from exc
        header = await _read(communicator, "handshake")
        if header != HEADER:
            raise MultiselectClientError(f"multiselect protocol ID mismatch: expected {HEADER}, got {header!r}")
        answer = await _read(communicator, f"protocol {first_str!r}")
        if answer == HEADER:
            # A listener that restarted the handshake (the library tolerates one).
            answer = await _read(communicator, f"protocol {first_str!r}")
        if answer == first_str:
            return first
        if answer != _NA:
            raise MultiselectClientError(f"unrecognized response: {answer!r}, expected {first_str!r} or 'na'")
        refused = [f"protocol not supported: {first}"]
        for protocol in protocols[1:]:
            try:
                return await self.try_select(communicator, protocol)  # type: ignore[no-any-return]
            except ProtocolNotSupportedError as exc:
                refused.append(str(exc))
        raise MultiselectClientError(
            f"protocols not supported: tried {[str(p) for p in protocols]}. Last error: {refused[-1]}"
        )
    raise MultiselectClientError(f"response timed out after {negotiate_timeout}s, protocols tried: {list(protocols)}")


def install() -> None:
    """Negotiate in one round trip in every py-libp2p client of this process (idempotent)."""
    _client.MultiselectClient.select_one_of = select_one_of  # type: ignore[method-assign]


def uninstall() -> None:
    """Back to py-libp2p's two round trips (benchmarks and tests only)."""
    _client.MultiselectClient.select_one_of = LIBRARY_SELECT_ONE_OF  # type: ignore[method-assign]


def installed() -> bool:
    return _client.MultiselectClient.select_one_of is select_one_of
