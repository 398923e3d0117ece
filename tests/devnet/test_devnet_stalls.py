"""A devnet worker's stall meter (agentp2p/devnet/stalls.py): a loop held by
synchronous work, and the collector's pauses, are measured as they happen."""

from __future__ import annotations

import gc
import time

import trio

from agentp2p.devnet.stalls import LATE, StallMeter
from agentp2p.testing import wait_until


async def test_a_held_loop_and_a_full_collection_are_measured() -> None:
    meter = StallMeter(tick=0.01)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(meter.run)
        await wait_until(lambda: meter._on_gc in gc.callbacks, 5, "the meter to start")
        time.sleep(3 * LATE)  # what the meter is for: code that holds the loop (not a wait for anything)
        gc.collect()  # a full collection, timed through gc.callbacks
        await wait_until(lambda: meter.stalls >= 1, 5, "the meter to wake late")
        nursery.cancel_scope.cancel()
    assert meter.max_lag >= 3 * LATE and meter.late_s >= meter.max_lag, meter.as_dict()
    got = meter.as_dict()
    assert got["gc"]["gen2"]["count"] >= 1 and got["gc"]["gen2"]["max_s"] > 0, got
    assert meter._on_gc not in gc.callbacks  # removed when it stops
