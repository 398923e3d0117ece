"""The durable inbox when its disk fails: a reader's acknowledgement whose
consumption cannot be recorded still reaches the sender (else that sender's
share of the inbox stays full for good) and is counted, not raised."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from agentp2p.messaging.outbox import Outbox
from agentp2p.testing import wait_until
from tests.messaging.test_msg_real_flow import messaging_node


async def test_a_failed_consumption_write_still_acknowledges_the_reader_and_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with messaging_node() as (a, sa), messaging_node(store=tmp_path / "b.db") as (b, sb):
        await a.connect(b.addrs[0])
        assert sb.store is not None

        def disk_error(self: Outbox, peer: bytes, envs: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(Outbox, "mark_consumed", disk_error)
        ids: list[str] = []
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                ids.append(await sa.send(b.peer_id, b"read me", wait="consumed", timeout=20))

            nursery.start_soon(send)
            with trio.fail_after(20):
                msg = await sb.receive(ack=False)
                assert sb.ack(msg)  # the reader's ack: no exception, whatever the disk did
                await wait_until(lambda: ids == [msg.id], timeout=20, what="the consumed receipt")
        inbox = sb.stats()["inbox"]
        assert inbox["consume_errors"] == 1 and inbox["messages"] == 0
