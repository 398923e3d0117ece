"""The durable inbox (issue #16): a direct message to a daemon whose agent is
not reading is stored there, on disk, and acknowledged as *stored*; the
reader gets it later, exactly once per acknowledgement, across a SIGKILL of
the daemon; a full inbox refuses with a clear error and loses nothing; a
sender that asks for the *consumed* receipt gets it when the reader acks.

The receiver is a real daemon (``DaemonProcess``: its own process, store and
API on 127.0.0.1); the sender an in-process node serving the API, driven
through the async client, so the receipts are seen as an agent sees them.
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from agentp2p.client import ApiError
from agentp2p.testing import DaemonProcess

from tests.api.api_fixtures import ApiNode, api_node


@contextlib.asynccontextmanager
async def receiver(home: Path, **env: str) -> AsyncIterator[DaemonProcess]:
    b = await DaemonProcess(home, extra_env=env or None).start_async()
    try:
        yield b
    finally:
        await b.aclose()


async def read(b: DaemonProcess, n: int, *, ack: bool = True) -> list[Any]:
    """``n`` messages from ``b``'s incoming stream (acknowledged if ``ack``), in the order they came."""
    async with b.client() as client, client.incoming(auto_ack=False) as inbox:
        got = []
        with trio.fail_after(30):
            while len(got) < n:
                got.append(await inbox.receive())
        if ack:
            assert sorted(await inbox.ack(*got)) == sorted(m.id for m in got)
        return got


async def b_inbox(b: DaemonProcess) -> dict[str, Any]:
    async with b.client() as client:
        return (await client.stats())["messaging"]["inbox"]  # type: ignore[no-any-return]


def unacked_at_sender(a: ApiNode, b: DaemonProcess) -> int:
    return int(a.node.messaging.stats()["peers"].get(b.peer_id, {}).get("unacked", 0))


async def test_send_to_a_daemon_with_no_reader_is_stored_and_a_later_reader_gets_it_exactly_once(tmp_path: Path) -> None:
    async with receiver(tmp_path / "b") as b, api_node() as a:
        await a.node.connect(b.addrs[0])
        receipt = await a.client.send_with_receipt(b.peer_id, "while nobody reads", timeout=30)
        assert receipt.receipt == "stored" and receipt.stored_after is not None and receipt.consumed_after is None
        # The sender forgot it: from now on b's disk answers for it.
        assert unacked_at_sender(a, b) == 0
        inbox = await b_inbox(b)
        assert inbox["durable"] and inbox["messages"] == 1 and inbox["queued"] == 1

        [got] = await read(b, 1)  # the reader starts later
        assert (got.id, got.text, got.sender) == (receipt.id, "while nobody reads", str(a.node.peer_id))
        # Acknowledged once: a later reader never sees it again, only what comes next.
        marker = await a.client.send_with_receipt(b.peer_id, "marker", timeout=30)
        [after] = await read(b, 1)
        assert (after.id, after.text) == (marker.id, "marker")
        assert (await b_inbox(b))["messages"] == 0


async def test_sigkill_between_store_and_read_delivers_after_restart(tmp_path: Path) -> None:
    home = tmp_path / "b"
    async with api_node() as a:
        async with receiver(home) as b:
            await a.node.connect(b.addrs[0])
            receipts = [await a.client.send_with_receipt(b.peer_id, f"task {i}", timeout=30) for i in range(5)]
            assert {r.receipt for r in receipts} == {"stored"}
            assert unacked_at_sender(a, b) == 0  # nothing left to resend: only b's store has them
            b.kill()  # SIGKILL: no goodbye, no flush beyond what was committed
        async with receiver(home) as b:  # same identity and store, a new port
            got = await read(b, 5)
            assert [m.id for m in got] == [r.id for r in receipts]  # every one, in order, same ids
            assert [m.text for m in got] == [f"task {i}" for i in range(5)]
            # Exactly once: acknowledged, they are gone; the next reader sees only what is new.
            async with b.client() as client:  # b dials: a may still hold its dead connection to b
                await client.connect(str(a.node.addrs[0]))
            marker = await a.client.send_with_receipt(b.peer_id, "after the restart", timeout=30)
            [after] = await read(b, 1)
            assert after.id == marker.id


async def test_full_inbox_refuses_with_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    async with receiver(tmp_path / "b", AGENTP2P_MESSAGING__INBOX_MAX_MESSAGES="3") as b, api_node() as a:
        await a.node.connect(b.addrs[0])
        kept = [await a.client.send_with_receipt(b.peer_id, f"kept {i}", timeout=30) for i in range(3)]
        assert {r.receipt for r in kept} == {"stored"}
        with trio.fail_after(30), pytest.raises(ApiError) as full:
            await a.client.send(b.peer_id, "one too many", timeout=60)  # refused at once, not at the timeout
        assert (full.value.status, full.value.code) == (507, "inbox_full")
        assert "inbox is full" in full.value.message and "nothing was stored" in full.value.message
        assert a.node.messaging.stats()["refused_inbox_full"] == 1  # the sender's counter
        inbox = await b_inbox(b)
        assert inbox["refused_full"] >= 1 and inbox["messages"] == 3  # the receiver's

        # Nothing lost: the three stored ones, in order; the refused one was never stored.
        got = await read(b, 3)
        assert [m.id for m in got] == [r.id for r in kept]
        # Read and acknowledged: there is room again.
        again = await a.client.send_with_receipt(b.peer_id, "room again", timeout=30)
        assert again.receipt == "stored"
        [after] = await read(b, 1)
        assert (after.id, after.text) == (again.id, "room again")

        # A sender that waits for consumption is not refused: a full inbox is
        # backpressure for it (retried until there is room, or its deadline).
        for i in range(3):
            await a.client.send(b.peer_id, f"fill {i}", timeout=30)
        refused_before = (await b_inbox(b))["refused_full"]
        patient: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def send_patiently() -> None:
                patient.append(await a.client.send_with_receipt(b.peer_id, "patient", wait="consumed", timeout=120))

            nursery.start_soon(send_patiently)
            with trio.fail_after(30):
                while (await b_inbox(b))["refused_full"] == refused_before:  # refused at least once...
                    await trio.sleep(0.05)  # polls b's counter over its API until the deadline
            assert patient == [] and a.node.messaging.stats()["refused_inbox_full"] == 1  # ...not failed
            got = await read(b, 3)  # room again once acknowledged: it is retried (next RTO), stored...
            got += await read(b, 1)  # ...read and acknowledged
        assert [m.text for m in got] == ["fill 0", "fill 1", "fill 2", "patient"]
        assert patient[0].receipt == "consumed" and patient[0].id == got[3].id


async def test_consumed_receipt_when_the_sender_asks_for_it(tmp_path: Path) -> None:
    async with receiver(tmp_path / "b") as b, api_node() as a:
        await a.node.connect(b.addrs[0])
        got: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                got.extend(await read(b, 1))

            nursery.start_soon(reader)
            receipt = await a.client.send_with_receipt(b.peer_id, "read me", wait="consumed", timeout=30)
        assert receipt.receipt == "consumed" and receipt.id == got[0].id
        assert receipt.stored_after is not None and receipt.consumed_after is not None
        assert receipt.stored_after <= receipt.consumed_after  # both receipts, in their order

        # Asking for consumed with nobody reading: stored, then the deadline — and not lost.
        with pytest.raises(ApiError) as late:
            await a.client.send(b.peer_id, "later", wait="consumed", timeout=3)
        assert (late.value.status, late.value.code, late.value.stored) == (504, "delivery_timeout", True)
        assert "stored message" in late.value.message and "not lost" in late.value.message
        [later] = await read(b, 1)
        assert later.text == "later"
