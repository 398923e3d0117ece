"""Messaging security and request/response on real sockets.

The attacker is a plain node speaking /agentp2p/msg/1.0.0 by hand (frames
built with the wire API), so it can send what an honest service never would:
a tampered signature, a replayed message, a message "from" someone else.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from libp2p.custom_types import TProtocol

from agentp2p.messaging.config import PROTOCOL_ID
from agentp2p.messaging.errors import RemoteHandlerError, RequestTimeout
from agentp2p.messaging.message import IncomingMessage
from agentp2p.messaging.service import MessagingService
from agentp2p.messaging.wire import encode_data, length_prefixed
from agentp2p.network.identity import Identity
from agentp2p.node import Node
from agentp2p.pb.msg_pb2 import Envelope, Frame, Hello
from agentp2p.security.sealing import seal_envelope
from agentp2p.security.signing import sign_envelope
from agentp2p.testing import local_config, wait_until


@contextlib.asynccontextmanager
async def pair() -> AsyncIterator[tuple[Node, MessagingService, Node, MessagingService]]:
    sa, sb = MessagingService(), MessagingService()
    async with Node(local_config(), services=[sa]) as a, Node(local_config(), services=[sb]) as b:
        await a.connect(b.addrs[0])
        yield a, sa, b, sb


class RawSender:
    """Speaks the wire protocol by hand over one stream to ``target``."""

    def __init__(self, node: Node, target: Node) -> None:
        self.node, self.target = node, target
        self.stream: Any = None
        self.session = os.urandom(16)

    async def open(self, session: bytes | None = None) -> None:
        # The old stream is left to the receiver, which resets it when the new
        # one arrives (closing it here as well races that reset in py-libp2p's
        # yamux and can break the next stream's negotiation).
        self.session = session or os.urandom(16)
        self.stream = await self.node.host.new_stream(self.target.peer_id, [TProtocol(PROTOCOL_ID)])
        hello = Frame(hello=Hello(session_id=self.session, low_seq=1, receive_window=64))
        await self.stream.write(length_prefixed(hello.SerializeToString()))

    def envelope(self, seq: int, payload: bytes, *, signer: Identity | None = None, msg_id: str | None = None) -> Envelope:
        signer = signer or self.node.identity
        env = Envelope(
            id=msg_id or os.urandom(8).hex(),
            sender=signer.peer_id.to_bytes(),
            recipient=self.target.peer_id.to_bytes(),
            type="message",
            payload=payload,
            timestamp_ms=int(time.time() * 1000),
            session_id=self.session,
            seq=seq,
        )
        sign_envelope(env, signer.private_key)
        return env

    async def data(self, *envs: Envelope) -> None:
        frame = encode_data(self.session, 1, [e.SerializeToString() for e in envs], None)
        await self.stream.write(length_prefixed(frame))


async def test_tampered_replayed_and_forged_messages_are_rejected_and_counted() -> None:
    sb = MessagingService()
    async with Node(local_config(), services=[sb]) as b, Node(local_config()) as mallory:
        await mallory.connect(b.addrs[0])
        raw = RawSender(mallory, b)
        got: list[IncomingMessage] = []

        async def collect() -> None:
            async for msg in sb.incoming():
                got.append(msg)

        def rejected(reason: str) -> int:
            return sb.stats()["rejected"][reason]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            await raw.open()
            first = raw.envelope(1, b"genuine")
            await raw.data(first)
            await wait_until(lambda: len(got) == 1, what="the genuine message")

            # 1. Tampered: payload changed after signing.
            bad = raw.envelope(2, b"pay 10")
            bad.payload = b"pay 99"
            await raw.data(bad)
            await wait_until(lambda: rejected("tampered") == 1, what="tampered rejected")

            # 2. Claims another sender: validly signed by that sender's own key,
            # but the stream is authenticated as mallory.
            alice = Identity.generate()
            await raw.data(raw.envelope(3, b"from alice, honest", signer=alice))
            await wait_until(lambda: rejected("forged") == 1, what="forged rejected")

            # The session goes on: a genuine message after the bad ones arrives.
            await raw.data(raw.envelope(4, b"still here"))
            await wait_until(lambda: len(got) == 2, what="message after the rejected ones")

            # 3. Replay: the very first message, byte for byte, on a fresh stream
            # after the receiver forgot its session (4 newer sessions evict it).
            # Each stream's message is in before the next stream opens: the
            # receiver resets the stream a new one replaces, and a reset racing
            # the next stream's negotiation made new_stream fail about once in
            # 30 runs under load (py-libp2p yamux; replacement is not what this
            # test is about).
            old_session = raw.session
            for i in range(4):
                await raw.open()
                await raw.data(raw.envelope(1, b"filler"))
                await wait_until(lambda: len(got) == 3 + i, what=f"filler message {i + 1}")
            await raw.open(old_session)
            await raw.data(first)
            await wait_until(lambda: rejected("replayed") == 1, what="replay rejected")
            nursery.cancel_scope.cancel()

        assert [m.payload for m in got[:2]] == [b"genuine", b"still here"]
        assert [m.payload for m in got].count(b"genuine") == 1
        assert all(m.sender == mallory.peer_id for m in got)
        st = sb.stats()["rejected"]
        assert st == {"malformed": 0, "forged": 1, "tampered": 1, "replayed": 1, "stale": 0}


async def test_garbage_on_the_stream_resets_it_without_harm() -> None:
    async with pair() as (a, sa, b, sb), Node(local_config()) as mallory:
        await mallory.connect(b.addrs[0])
        stream = await mallory.host.new_stream(b.peer_id, [TProtocol(PROTOCOL_ID)])
        await stream.write(b"\xff\xff\xff\xff\xff\xff\x01garbage")
        await wait_until(lambda: sb.stats().get("bad_frames", 0) == 1, what="bad frame counted")
        # The node is unharmed: honest traffic flows.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sb.receive)
            with trio.fail_after(10):
                await sa.send(b.peer_id, b"ok")


async def test_sealed_message_round_trip() -> None:
    async with pair() as (a, sa, b, sb):
        got: list[IncomingMessage] = []
        async with trio.open_nursery() as nursery:

            async def take() -> None:
                got.append(await sb.receive())

            nursery.start_soon(take)
            with trio.fail_after(10):
                await sa.send(b.peer_id, b"for your eyes only", type="secret", seal=True)
        (msg,) = got
        assert msg.payload == b"for your eyes only" and msg.sealed and msg.type == "secret"
        assert msg.sender == a.peer_id


async def test_sealed_payload_altered_in_transit_is_rejected() -> None:
    """Re-signed by the (authenticated) sender but with ciphertext that does not open."""
    sb = MessagingService()
    async with Node(local_config(), services=[sb]) as b, Node(local_config()) as mallory:
        await mallory.connect(b.addrs[0])
        raw = RawSender(mallory, b)
        await raw.open()
        env = Envelope(
            id="sealed-1", sender=mallory.peer_id.to_bytes(), recipient=b.peer_id.to_bytes(), type="message",
            payload=b"secret", timestamp_ms=int(time.time() * 1000),
        )
        seal_envelope(env)
        env.type = "other"  # header is AAD: the box no longer opens
        env.session_id, env.seq = raw.session, 1
        sign_envelope(env, mallory.identity.private_key)
        await raw.data(env)
        await wait_until(lambda: sb.stats()["rejected"]["tampered"] == 1, what="sealed tamper rejected")


async def test_request_response_handler_error_and_missing_handler() -> None:
    async with pair() as (a, sa, b, sb):

        async def upper(msg: IncomingMessage) -> bytes:
            assert msg.is_request and msg.sender == a.peer_id
            return msg.payload.upper()

        async def broken(msg: IncomingMessage) -> bytes:
            raise RuntimeError("model overloaded")

        async def never(msg: IncomingMessage) -> bytes:
            await trio.sleep_forever()
            return b""

        sb.set_handler("upper", upper)
        sb.set_handler("broken", broken)
        sb.set_handler("never", never)
        with trio.fail_after(15):
            assert await sa.request(b.peer_id, b"hello", type="upper", timeout=5) == b"HELLO"
            assert await sa.request(b.peer_id, b"sealed", type="upper", timeout=5, seal=True) == b"SEALED"
            # Many at once: each response goes to its own request.
            results: dict[int, bytes] = {}

            async def one(i: int) -> None:
                results[i] = await sa.request(b.peer_id, b"r%d" % i, type="upper", timeout=10)

            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(one, i)
            assert results == {i: b"R%d" % i for i in range(50)}

            with pytest.raises(RemoteHandlerError, match="model overloaded"):
                await sa.request(b.peer_id, b"x", type="broken", timeout=5)
            with pytest.raises(RemoteHandlerError, match="no handler"):
                await sa.request(b.peer_id, b"x", type="nobody-home", timeout=5)
            with pytest.raises(RequestTimeout):
                await sa.request(b.peer_id, b"x", type="never", timeout=0.5)
        # The failing handler did not hurt the node: it still answers.
        assert await sa.request(b.peer_id, b"again", type="upper", timeout=5) == b"AGAIN"
        assert sb.stats()["handler_errors"] == 1


async def test_one_way_messages_to_a_handler_and_both_directions_at_once() -> None:
    async with pair() as (a, sa, b, sb):
        seen_b: list[bytes] = []
        seen_a: list[bytes] = []

        async def on_b(msg: IncomingMessage) -> None:
            seen_b.append(msg.payload)

        async def on_a(msg: IncomingMessage) -> None:
            seen_a.append(msg.payload)

        sb.set_handler("note", on_b)
        sa.set_handler("note", on_a)
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(lambda i=i: sa.send(b.peer_id, b"%d" % i, type="note"))
                    nursery.start_soon(lambda i=i: sb.send(a.peer_id, b"%d" % i, type="note"))
        assert sorted(seen_b) == sorted(b"%d" % i for i in range(100))
        assert sorted(seen_a) == sorted(b"%d" % i for i in range(100))


async def test_bad_arguments_are_refused_clearly() -> None:
    async with pair() as (a, sa, b, sb):
        with pytest.raises(ValueError):
            await sa.send(b.peer_id, b"x", type="~res:forged")
        with pytest.raises(TypeError):
            await sa.send(b.peer_id, "text")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await sa.send("not-a-peer-id", b"x")
        from agentp2p.messaging.errors import DeliveryError

        with pytest.raises(DeliveryError):
            await sa.send(a.peer_id, b"to myself")
