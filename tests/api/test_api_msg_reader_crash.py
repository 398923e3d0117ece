"""Finding 10 (issue #10): a direct message must not be lost when the receiving
daemon is SIGKILLed after a reader saw it but before the reader acknowledged
it. The daemon stores each message before its event stream shows it, and
only the reader's acknowledgement consumes it (and lets the sender's ACK
go), so after the kill and a restart the reader gets every unacknowledged
message again, with the same ids; then, acknowledged, the sender's sends return.
"""

from __future__ import annotations

from pathlib import Path

import trio

from agentp2p.node import Node
from agentp2p.testing import DaemonProcess, local_config, wait_until

COUNT = 20


async def _read(daemon: DaemonProcess, n: int, *, ack: bool) -> list[str]:
    """Read ``n`` messages from the daemon's event stream; acknowledge them only if ``ack``."""
    async with daemon.client() as client:
        async with client.incoming(auto_ack=False) as inbox:
            ids = []
            with trio.fail_after(60):
                while len(ids) < n:
                    ids.append((await inbox.receive()).id)
            if ack:
                assert sorted(await inbox.ack(*ids)) == sorted(ids)
            return ids


async def test_unacknowledged_messages_come_back_after_sigkill_and_restart(tmp_path: Path) -> None:
    home = tmp_path / "b"
    b = await DaemonProcess(home).start_async()
    try:
        async with Node(local_config()) as a:
            await a.connect(b.addrs[0])
            returned: list[str] = []

            async def send(i: int) -> None:
                returned.append(await a.send(b.peer_id, b"task %d" % i, timeout=120))

            async with trio.open_nursery() as senders:
                for i in range(COUNT):
                    senders.start_soon(send, i)
                seen = await _read(b, COUNT, ack=False)
                # Read, not acknowledged: no sender was told "acknowledged".
                assert returned == [] and a.messaging.stats()["acked"] == 0
                b.kill()
                await b.aclose()

                b = await DaemonProcess(home).start_async()  # same identity and store
                again = await _read(b, COUNT, ack=True)
                assert sorted(again) == sorted(seen)  # every one, same ids (readers deduplicate by id)
                assert again == seen  # and in the same order
                # Acknowledged now: once the sender reaches the restarted daemon
                # (new port), its sends return — each exactly for what was read.
                async with b.client() as client:
                    await client.connect(str(a.addrs[0]))
                await wait_until(lambda: len(returned) == COUNT, 60, "every send acknowledged")
            assert sorted(returned) == sorted(seen)
            for suffix in ("", "-wal", "-shm"):  # finding 9, on the daemon's real files
                f = Path(f"{b.identity.with_suffix('.messages.db')}{suffix}")
                assert f.stat().st_mode & 0o777 == 0o600, f
    finally:
        await b.aclose()
