"""How the devnet's controller and its workers talk: JSON objects, one per line,
over the worker's stdin (requests) and stdout (replies).

* The worker's first line is ``{"ready": true, "pid": ...}`` once it has
  imported everything and can start nodes.
* A request is ``{"id": n, "op": "...", ...}``; its reply carries the same
  ``id`` and ``"ok": true`` with the op's fields, or ``"ok": false`` and
  ``"error"``. A worker serves requests concurrently, so replies may come
  in any order.
* The worker stops when its stdin closes — the controller closing it on
  quit, or the kernel closing it because the controller died.

Lines are bounded (:data:`MAX_LINE`): a reply that would not fit is a bug,
and a reader that buffered without bound would turn it into memory growth.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_LINE", "LineReader", "encode", "WireError"]

#: The longest line either side sends (a stats reply of 1,000 nodes is ~200 kB).
MAX_LINE = 8 << 20


class WireError(Exception):
    """The other side sent something that is not a bounded JSON object line."""


def encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


class LineReader:
    """JSON object lines from a trio ``ReceiveStream`` (a pipe)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def next(self) -> dict[str, Any] | None:
        """The next object, or None at end of stream."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                raw = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError as exc:
                    raise WireError(f"not JSON: {raw[:200]!r}") from exc
                if not isinstance(obj, dict):
                    raise WireError(f"not a JSON object: {raw[:200]!r}")
                return obj
            if len(self._buf) > MAX_LINE:
                raise WireError(f"a line longer than {MAX_LINE} bytes")
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return None
            self._buf += chunk
