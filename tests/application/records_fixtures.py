"""Deterministic keys and records shared by the record tests."""

from __future__ import annotations

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from multiaddr import Multiaddr

from agentp2p.application.records import AgentRecord, Capability

NOW = 1_700_000_000_000  # a fixed "now" in ms
HOUR = 3_600_000


def keypair(n: int) -> KeyPair:
    return create_new_key_pair(bytes([n]) * 32)


TRANSLATE = Capability(
    name="translate",
    version="1.2.0",
    description="Translate text between languages",
    tags=("nlp", "translation"),
    input_schema_json='{"type":"object","properties":{"text":{"type":"string"}}}',
    output_schema_json='{"type":"object"}',
    title="Translator",
    examples=("translate 'hello' to French",),
    input_modes=("text/plain",),
    output_modes=("text/plain",),
)


def make_record(kp: KeyPair, *, seq: int = 1, now_ms: int = NOW, ttl_ms: int = HOUR,
                capabilities: tuple[Capability, ...] = (TRANSLATE,), name: str = "agent") -> AgentRecord:
    return AgentRecord.new(
        kp.public_key,
        name=name,
        description="a test agent",
        addrs=[Multiaddr("/ip4/127.0.0.1/tcp/4001")],
        capabilities=capabilities,
        metadata={"owner": "tests"},
        now_ms=now_ms,
        seq=seq,
        ttl_ms=ttl_ms,
    )
