"""Finding 8: a sustained flood of silent TCP sockets.

The flooder (silent_flood.py, a subprocess) holds N sockets open against
the victim and re-opens each one the victim closes. py-libp2p gives every
socket an inbound slot for the whole 10 s upgrade timeout, so a few hundred
silent sockets refuse every honest dial. Our InboundGate keeps a bounded
table of pending handshakes and closes the oldest silent socket to make
room, so honest dialers (who speak at once) get through.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from libp2p.peer.peerinfo import PeerInfo

from agentp2p.network.inbound import inbound_gate
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until

from tests.adversarial.benign import assert_serves
from tests.adversarial.yamux_raw import LOOPBACK, plain_host

FLOODER = os.path.join(os.path.dirname(__file__), "silent_flood.py")


class Flood:
    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self._buf = b""

    async def line(self, timeout: float = 60) -> str:
        assert self.proc.stdout is not None
        with trio.fail_after(timeout):
            while b"\n" not in self._buf:
                chunk = await self.proc.stdout.receive_some(4096)
                if not chunk:
                    raise AssertionError("flooder exited")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    async def opened(self) -> int:
        """Sockets the flooder has opened so far (the first N plus re-opens)."""
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(b"?\n")
        return int(await self.line())


@contextlib.asynccontextmanager
async def silent_flood(port: int, n: int) -> AsyncIterator[Flood]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, FLOODER, "127.0.0.1", str(port), str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    flood = Flood(proc)
    try:
        assert await flood.line() == "ready"
        yield flood
    finally:
        with trio.CancelScope(shield=True):
            assert proc.stdin is not None
            with contextlib.suppress(Exception):
                await proc.stdin.aclose()
            with trio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _port(addrs: list[Any]) -> int:
    return int(addrs[0].value_for_protocol("tcp"))


async def test_library_is_locked_out_by_silent_sockets() -> None:
    victim = plain_host()
    async with victim.run([LOOPBACK]):
        limiter = victim.get_network()._inbound_limiter
        async with silent_flood(_port(victim.get_transport_addrs()), int(limiter.total_tokens) + 50):
            await wait_until(lambda: limiter.borrowed_tokens == limiter.total_tokens, 30, "slots taken by the flood")
            honest = plain_host()
            async with honest.run([LOOPBACK]):
                try:
                    with trio.fail_after(10):
                        await honest.connect(PeerInfo(victim.get_id(), victim.get_transport_addrs()))
                    refused = False
                except Exception:
                    refused = True
                assert refused, "py-libp2p accepted an honest dial with every slot held by silent sockets"


@pytest.mark.slow
async def test_silent_socket_flood_does_not_keep_honest_dialers_out() -> None:
    async with Node(local_config(swim=False)) as victim:
        gate = inbound_gate(victim.host)
        assert gate is not None
        async with silent_flood(_port(victim.listen_addrs), 800) as flood:
            # the table is full and the flood is being churned through it
            await wait_until(lambda: gate.stats["evicted"] >= 800 - gate.pending, 60, "the flood to fill the table")
            for _ in range(10):
                async with Node(local_config(swim=False)) as honest:
                    await honest.connect(victim.addrs[0])
                    assert await honest.ping(victim.peer_id) > 0
            # the flood was sustained the whole time: closed sockets came back
            assert await flood.opened() > 800
            assert gate.pending <= victim.resources.limits.max_pending_handshakes
        await assert_serves(victim)
