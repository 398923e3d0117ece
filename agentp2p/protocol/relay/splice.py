"""Join two streams into one relayed connection, within its limits.

The relay copies bytes both ways between the initiator's hop stream and
the target's stop stream. The circuit is one unit: when either direction
ends (end of stream, an error, its byte budget spent), both are torn down
at once — a direction left waiting on a read would hold the circuit's slot
(py-libp2p's relay leaks them so). The duration limit is a real timer, so
an idle circuit ends on time too. Each direction holds at most one chunk
in memory; flow control (Yamux windows) does the rest.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.network.stream.exceptions import StreamEOF

__all__ = ["CHUNK", "Spliced", "splice"]

CHUNK = 64 * 1024


@dataclass
class Spliced:
    """How a circuit ended and what it carried (bytes each way)."""

    reason: str = ""
    forward: int = 0  # initiator -> target
    backward: int = 0  # target -> initiator


async def splice(a: Any, b: Any, *, duration: float, data: int) -> Spliced:
    """Copy ``a`` <-> ``b`` until one side ends or a limit is reached (0: none)."""
    result = Spliced()

    async def pump(src: Any, dst: Any, attr: str, done: trio.CancelScope) -> None:
        moved = 0
        try:
            while True:
                want = CHUNK if not data else min(CHUNK, data - moved)
                if want <= 0:
                    result.reason = result.reason or "data limit"
                    break
                try:
                    chunk = await src.read(want)
                except StreamEOF:
                    chunk = b""
                if not chunk:
                    result.reason = result.reason or "closed"
                    break
                await dst.write(chunk)
                moved += len(chunk)
                setattr(result, attr, moved)
        except Exception:  # noqa: BLE001 — a reset or dead connection ends the circuit
            result.reason = result.reason or "reset"
        finally:
            done.cancel()

    with trio.move_on_after(duration if duration > 0 else float("inf")) as timer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, a, b, "forward", nursery.cancel_scope)
            nursery.start_soon(pump, b, a, "backward", nursery.cancel_scope)
    if timer.cancelled_caught:
        result.reason = "duration limit"
    with trio.CancelScope(shield=True), trio.move_on_after(2):
        for s in (a, b):
            if result.reason == "closed":  # pass the end of stream on, then let go of both ways
                with contextlib.suppress(Exception):
                    await s.close()
            with contextlib.suppress(Exception):
                await s.reset()
    return result
