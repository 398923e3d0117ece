"""A raw py-libp2p host that speaks /meshsub/1.1.0 to a victim, for the pub/sub attack tests.

No Pubsub of its own: it writes hand-made RPCs (``libp2p.pubsub.pb.rpc_pb2``)
on a stream it opens, so nothing on our side validates or signs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import trio
from multiaddr import Multiaddr

from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.utils import encode_varint_prefixed

from agentp2p.network.host import build_host
from agentp2p.network.identity import Identity

#: A sha2-256 multihash peer ID: no public key can be extracted from it.
HASHED_FROM = b"\x12\x20" + hashlib.sha256(b"not a key").digest()


def killer_message(topic: str, seqno: int = 1) -> rpc_pb2.Message:
    """Finding 1: ``from`` a hashed peer ID, ``key`` garbage, signature 64 zero bytes."""
    return rpc_pb2.Message(
        from_id=HASHED_FROM,
        data=b"boom",
        seqno=seqno.to_bytes(8, "big"),
        topicIDs=[topic],
        signature=b"\x00" * 64,
        key=b"garbage key bytes",
    )


def bogus_signature_message(topic: str, origin: ID, seqno: int) -> rpc_pb2.Message:
    """A well-formed message from ``origin`` (inlined Ed25519 key) with a wrong signature."""
    return rpc_pb2.Message(
        from_id=origin.to_bytes(),
        data=b"x" * 32,
        seqno=seqno.to_bytes(8, "big"),
        topicIDs=[topic],
        signature=os.urandom(64),
    )


class RawMeshsub:
    """An open /meshsub/1.1.0 stream from the attacker's host to the victim."""

    def __init__(self, host: Any, stream: Any) -> None:
        self.host = host
        self.stream = stream

    @property
    def peer_id(self) -> ID:
        return self.host.get_id()

    async def send(self, rpc: rpc_pb2.RPC) -> None:
        await self.stream.write(encode_varint_prefixed(rpc.SerializeToString()))

    async def subscribe(self, topic: str) -> None:
        await self.send(rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=topic)]))

    async def publish(self, *msgs: rpc_pb2.Message) -> None:
        await self.send(rpc_pb2.RPC(publish=list(msgs)))


@contextlib.asynccontextmanager
async def raw_meshsub(victim_peer: ID, victim_addrs: list[Multiaddr], *, read: bool = True) -> AsyncIterator[RawMeshsub]:
    """Connect a bare host to the victim and open a meshsub stream.

    The host also accepts the victim's meshsub stream back; with ``read``
    False it never reads from it (a peer that does not drain its queue).
    """
    addr = Multiaddr("/ip4/127.0.0.1/tcp/0")
    host = build_host(Identity.generate(), [addr])
    held: list[Any] = []

    async def inbound(stream: Any) -> None:
        held.append(stream)
        if read:
            while await stream.read(65536):
                pass
        else:
            await trio.sleep_forever()

    host.set_stream_handler(PROTOCOL_ID_V11, inbound)
    async with host.run([addr]):
        await host.connect(PeerInfo(victim_peer, victim_addrs))
        stream = await host.new_stream(victim_peer, [PROTOCOL_ID_V11])
        yield RawMeshsub(host, stream)
