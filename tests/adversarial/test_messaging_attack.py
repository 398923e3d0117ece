"""Adversarial direct messaging (issue #10, findings 4 and 7 for messaging).

A hostile peer speaks /agentp2p/msg/1.0.0 itself (raw frames, correctly
signed envelopes), against a victim node on 127.0.0.1:

* **Oversized envelopes** (3.9 MB, above the documented 1 MiB): the frame's
  length prefix is refused before the frame is buffered, the stream reset,
  the refusal counted and the peer penalised; nothing is delivered and the
  victim still serves honest peers.
* **Hello-reset flood**: the attacker fills its receive window with big
  messages nobody consumes, then says Hello with a new session id, again and
  again (before the fix each reset granted a fresh 4,096-message window, and
  the inbox was unbounded: 3.8 GB held after the attacker left). Bound
  asserted: what the victim holds for the attacker stays <= the per-sender
  byte cap (session.receive_bytes, 16 MiB) though the attacker sends 9x that,
  and the victim's RSS grows < 100 MB. Then an honest sender's acknowledged
  messages all reach the victim's application, in order.
"""

from __future__ import annotations

import os
import time

import pytest
import trio
from libp2p.custom_types import TProtocol

from agentp2p.messaging.config import PROTOCOL_ID
from agentp2p.messaging.wire import MAX_FRAME_BYTES, FrameError, FrameReader, encode_data, length_prefixed
from agentp2p.node import Node
from agentp2p.pb.msg_pb2 import Envelope, Frame, Hello
from agentp2p.security.signing import signing_bytes
from agentp2p.testing import local_config, wait_until

from tests.adversarial.benign import assert_serves, rss_mb

MiB = 1 << 20


class RawSender:
    """The attacker's side of one /agentp2p/msg/1.0.0 stream: frames written by hand."""

    def __init__(self, attacker: Node, victim: Node) -> None:
        self.attacker, self.victim = attacker, victim
        self.me = attacker.peer_id.to_bytes()
        self.key = attacker.identity.private_key
        self.stream = None

    async def open(self) -> None:
        self.stream = await self.attacker.host.new_stream(self.victim.peer_id, [TProtocol(PROTOCOL_ID)])

    def envelope(self, session_id: bytes, seq: int, payload: bytes) -> bytes:
        env = Envelope(
            id=os.urandom(16).hex(), sender=self.me, recipient=self.victim.peer_id.to_bytes(), type="flood",
            payload=payload, timestamp_ms=int(time.time() * 1000), session_id=session_id, seq=seq,
        )
        env.signature = self.key.sign(signing_bytes(env))  # a valid signature: only the size is wrong
        return env.SerializeToString()

    async def hello(self, session_id: bytes) -> None:
        frame = Frame(hello=Hello(session_id=session_id, low_seq=1, receive_window=4096)).SerializeToString()
        await self.stream.write(length_prefixed(frame))

    async def data(self, session_id: bytes, envelopes: list[bytes]) -> None:
        await self.stream.write(length_prefixed(encode_data(session_id, 1, envelopes, None)))


def test_frame_reader_refuses_a_39mb_length_prefix_before_buffering() -> None:
    reader = FrameReader()
    prefix = length_prefixed(b"\0" * 3_900_000)[:4]
    with pytest.raises(FrameError):
        reader.feed(prefix + b"x" * 100)
    assert MAX_FRAME_BYTES < 1 * MiB + 64 * 1024


@pytest.mark.parametrize(
    "payload_bytes, counter",
    [(3_900_000, "oversized_frames"), (MiB + 2048, "oversized_envelopes")],
    ids=["3.9MB-envelope", "just-over-1MiB-payload"],
)
async def test_oversized_envelope_is_refused_penalised_and_victim_serves(payload_bytes: int, counter: str) -> None:
    async with Node(local_config()) as victim, Node(local_config()) as attacker:
        svc = victim.messaging
        await attacker.connect(victim.addrs[0])
        raw = RawSender(attacker, victim)
        await raw.open()
        sid = os.urandom(16)
        await raw.hello(sid)
        try:
            await raw.data(sid, [raw.envelope(sid, 1, b"A" * payload_bytes)])
        except Exception:  # noqa: BLE001 - reset while we were still writing: refused before the rest arrived
            pass
        # The victim resets the stream: our next read ends.
        with trio.fail_after(20):
            while True:
                try:
                    if not await raw.stream.read(65536):
                        break
                except Exception:  # noqa: BLE001 - reset: what we wait for
                    break
        await wait_until(lambda: svc.stats().get(counter, 0) >= 1, 10, f"{counter} counted")
        assert svc.stats()["delivered"] == 0
        assert svc.stats()["inbox"]["bytes"] == 0
        # One offence of weight 5 (decaying since): four in a row would ban.
        assert victim.penalties.points(attacker.peer_id) > 4 or victim.penalties.is_banned(attacker.peer_id)
        await assert_serves(victim)


@pytest.mark.slow
async def test_hello_reset_flood_keeps_the_inbox_bounded_and_honest_messages_arrive() -> None:
    payload = b"F" * (48 * 1024)
    per_session, resets, per_frame = 384, 9, 16  # 9 sessions x 18 MiB = 162 MiB offered, 9x the cap
    async with Node(local_config()) as victim, Node(local_config()) as attacker, Node(local_config()) as honest:
        svc = victim.messaging
        cap = svc.config.session.receive_bytes
        await attacker.connect(victim.addrs[0])
        await honest.connect(victim.addrs[0])
        before = rss_mb()
        peak_held = 0
        raw = RawSender(attacker, victim)
        for _ in range(resets):
            sid = os.urandom(16)
            try:
                if raw.stream is None:
                    await raw.open()
                await raw.hello(sid)
                for first in range(1, per_session + 1, per_frame):
                    envs = [raw.envelope(sid, seq, payload) for seq in range(first, first + per_frame)]
                    await raw.data(sid, envs)
                    peak_held = max(peak_held, svc.stats()["inbox"]["bytes"])
            except Exception:  # noqa: BLE001 - the victim may reset or ban us: a new stream, or the end
                raw.stream = None
                if victim.penalties.is_banned(attacker.peer_id):
                    break
                continue
        await wait_until(lambda: svc.stats()["inbox"]["refused_full"] > 0, 20, "refusals once the cap is reached")
        held = svc.stats()["inbox"]["bytes"]
        peak_held = max(peak_held, held)
        grown = rss_mb() - before
        print(f"held {held / MiB:.1f} MiB (peak {peak_held / MiB:.1f}), cap {cap / MiB:.0f} MiB, "
              f"RSS +{grown:.0f} MB, refused {svc.stats()['inbox']['refused_full']}, "
              f"churn offences {svc.stats().get('session_churn', 0)}")
        assert peak_held <= cap
        assert grown < 100, f"RSS grew {grown:.0f} MB"
        await attacker.disconnect(victim.peer_id) if victim.is_connected(attacker.peer_id) else None

        # After the attacker left: an honest sender's acknowledged messages all
        # reach the application, in order (the victim's reader skips the flood).
        acked: list[str] = []
        got: list[str] = []

        async def read() -> None:
            async for msg in svc.incoming():
                if msg.sender == honest.peer_id:
                    got.append(msg.id)

        async def send_all() -> None:
            for i in range(50):
                acked.append(await honest.send(victim.peer_id, b"honest %d" % i, timeout=30))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await send_all()
                await wait_until(lambda: len(got) >= len(acked), 10, "acked messages in the victim's app")
                nursery.cancel_scope.cancel()
        assert got[: len(acked)] == acked and len(acked) == 50
        await assert_serves(victim)
