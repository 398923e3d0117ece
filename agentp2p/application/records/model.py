"""Agent records as Python values, their protobuf encoding, and field rules.

An :class:`AgentRecord` says who an agent is (peer ID, public key, addresses),
what it can do (:class:`Capability` list, which maps onto A2A skills) and for
how long the statement holds (``seq``, ``issued_at_ms``, ``expires_at_ms``).
This module knows nothing of signatures: ``signed.py`` wraps the bytes
produced here in an envelope. Decoding here is total: any input either yields
a record that satisfies every rule below or raises :class:`InvalidRecord`.

Rules (why): every text field is bounded so a record stays well inside one
DHT value and one pubsub message; names and tags carry no control characters
and no surrounding blanks because they are matched exactly and shown to
people; capability names are unique within a record because they are
discovery keys; JSON Schema fields, when present, must be JSON objects so a
consumer can hand them to a schema validator without guessing; the peer ID
must be the one derived from the public key (libp2p peer-id spec), so the
record cannot claim someone else's identity.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from libp2p.crypto.keys import PublicKey
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.pb import record_pb2

from .errors import InvalidRecord, Reason

__all__ = [
    "AgentRecord",
    "Capability",
    "DEFAULT_TTL_MS",
    "MAX_PAYLOAD_BYTES",
    "MAX_TTL_MS",
]

# --- limits -----------------------------------------------------------------
MAX_PAYLOAD_BYTES = 48 * 1024  # encoded AgentRecord; envelope cap is 64 KiB
MAX_TTL_MS = 48 * 3600 * 1000  # a record may claim to hold for at most 48 h
DEFAULT_TTL_MS = 3600 * 1000  # what AgentRecord.new uses unless told
NAME_MAX = 256
DESCRIPTION_MAX = 4096
CAPABILITIES_MAX = 64
CAPABILITY_NAME_MAX = 128
VERSION_MAX = 64
TAGS_MAX = 32
TAG_MAX = 64
EXAMPLES_MAX = 16
EXAMPLE_MAX = 1024
MODES_MAX = 16
MODE_MAX = 128
SCHEMA_JSON_MAX = 16 * 1024
EXTRA_JSON_MAX = 8 * 1024
METADATA_MAX = 64
METADATA_KEY_MAX = 128
METADATA_VALUE_MAX = 8 * 1024
ADDRS_MAX = 32
ADDR_BYTES_MAX = 256
UINT64_MAX = 2**64 - 1


def _fail(detail: str) -> InvalidRecord:
    return InvalidRecord(Reason.FIELD, detail)


def _check_text(what: str, value: str, limit: int, *, identifier: bool = False) -> None:
    if not isinstance(value, str):
        raise _fail(f"{what} must be a string")
    if len(value) > limit:
        raise _fail(f"{what} longer than {limit} characters")
    if identifier:
        if not value or value != value.strip():
            raise _fail(f"{what} {value!r} is empty or has surrounding blanks")
        if any(unicodedata.category(c).startswith("C") for c in value):
            raise _fail(f"{what} {value!r} contains control characters")


def _check_list(what: str, values: tuple[str, ...], count: int, limit: int, identifier: bool) -> None:
    if len(values) > count:
        raise _fail(f"more than {count} {what}")
    for v in values:
        _check_text(what, v, limit, identifier=identifier)
    if identifier and len(set(values)) != len(values):
        raise _fail(f"duplicate {what}")


def _check_json_object(what: str, text: str, limit: int) -> None:
    if not text:
        return
    _check_text(what, text, limit)
    try:
        value = json.loads(text)
    except Exception as exc:  # ValueError, RecursionError
        raise _fail(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise _fail(f"{what} must be a JSON object")


def _json_or_none(text: str) -> dict[str, Any] | None:
    return json.loads(text) if text else None


@dataclass(frozen=True)
class Capability:
    """One thing an agent can do; maps onto an A2A AgentSkill.

    Sequences given as lists are stored as tuples. JSON Schema fields hold
    the schema's JSON text ("" when absent); see :attr:`input_schema`.
    """

    name: str
    version: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    input_schema_json: str = ""
    output_schema_json: str = ""
    title: str = ""
    examples: tuple[str, ...] = ()
    input_modes: tuple[str, ...] = ()
    output_modes: tuple[str, ...] = ()
    extra_json: str = ""

    def __post_init__(self) -> None:
        for name in ("tags", "examples", "input_modes", "output_modes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def input_schema(self) -> dict[str, Any] | None:
        return _json_or_none(self.input_schema_json)

    @property
    def output_schema(self) -> dict[str, Any] | None:
        return _json_or_none(self.output_schema_json)

    def validate(self) -> None:
        """Raise :class:`InvalidRecord` (reason FIELD) if a rule is broken."""
        _check_text("capability name", self.name, CAPABILITY_NAME_MAX, identifier=True)
        _check_text("capability version", self.version, VERSION_MAX)
        _check_text("capability description", self.description, DESCRIPTION_MAX)
        _check_text("capability title", self.title, NAME_MAX)
        _check_list("tags", self.tags, TAGS_MAX, TAG_MAX, identifier=True)
        _check_list("examples", self.examples, EXAMPLES_MAX, EXAMPLE_MAX, identifier=False)
        _check_list("input modes", self.input_modes, MODES_MAX, MODE_MAX, identifier=True)
        _check_list("output modes", self.output_modes, MODES_MAX, MODE_MAX, identifier=True)
        _check_json_object("input schema", self.input_schema_json, SCHEMA_JSON_MAX)
        _check_json_object("output schema", self.output_schema_json, SCHEMA_JSON_MAX)
        _check_json_object("extra fields", self.extra_json, EXTRA_JSON_MAX)

    def to_protobuf(self) -> record_pb2.Capability:
        return record_pb2.Capability(
            name=self.name,
            version=self.version,
            description=self.description,
            tags=self.tags,
            input_schema_json=self.input_schema_json,
            output_schema_json=self.output_schema_json,
            title=self.title,
            examples=self.examples,
            input_modes=self.input_modes,
            output_modes=self.output_modes,
            extra_json=self.extra_json,
        )

    @classmethod
    def from_protobuf(cls, msg: record_pb2.Capability) -> Capability:
        return cls(
            name=msg.name,
            version=msg.version,
            description=msg.description,
            tags=tuple(msg.tags),
            input_schema_json=msg.input_schema_json,
            output_schema_json=msg.output_schema_json,
            title=msg.title,
            examples=tuple(msg.examples),
            input_modes=tuple(msg.input_modes),
            output_modes=tuple(msg.output_modes),
            extra_json=msg.extra_json,
        )


@dataclass(frozen=True, eq=True)
class AgentRecord:
    """What an agent publishes about itself. Build with :meth:`new`.

    ``metadata`` is copied into a plain dict; records compare by value but
    are not hashable (key them by ``peer_id``).
    """

    peer_id: ID
    public_key: PublicKey
    addrs: tuple[Multiaddr, ...]
    name: str
    description: str
    capabilities: tuple[Capability, ...]
    metadata: Mapping[str, str]
    seq: int
    issued_at_ms: int
    expires_at_ms: int
    __hash__ = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "addrs", tuple(self.addrs))
        object.__setattr__(self, "capabilities", tuple(self.capabilities))
        object.__setattr__(self, "metadata", dict(self.metadata))

    @classmethod
    def new(
        cls,
        public_key: PublicKey,
        *,
        name: str,
        now_ms: int,
        seq: int,
        description: str = "",
        addrs: Iterable[Multiaddr] = (),
        capabilities: Iterable[Capability] = (),
        metadata: Mapping[str, str] | None = None,
        ttl_ms: int = DEFAULT_TTL_MS,
    ) -> AgentRecord:
        """Make and validate a record for ``public_key`` valid for ``ttl_ms``.

        ``seq`` must grow with every record the agent publishes; using the
        wall-clock milliseconds (``now_ms``) is a fine choice across restarts.
        """
        record = cls(
            peer_id=ID.from_pubkey(public_key),
            public_key=public_key,
            addrs=tuple(addrs),
            name=name,
            description=description,
            capabilities=tuple(capabilities),
            metadata=dict(metadata or {}),
            seq=seq,
            issued_at_ms=now_ms,
            expires_at_ms=now_ms + ttl_ms,
        )
        record.validate()
        return record

    # --- queries ---------------------------------------------------------------
    @property
    def lifetime_ms(self) -> int:
        return self.expires_at_ms - self.issued_at_ms

    def is_expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_at_ms

    def capability(self, name: str) -> Capability | None:
        for cap in self.capabilities:
            if cap.name == name:
                return cap
        return None

    def newer_than(self, other: AgentRecord) -> bool:
        """The replacement order used by the DHT validator and the cache:
        higher ``seq`` wins; on equal ``seq`` the later expiry wins."""
        return (self.seq, self.expires_at_ms) > (other.seq, other.expires_at_ms)

    # --- rules -----------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`InvalidRecord` if any field rule is broken.

        Time is not checked here (see ``signed.open``): a record is
        well-formed regardless of when you look at it.
        """
        for what, v in (("seq", self.seq), ("issued_at_ms", self.issued_at_ms),
                        ("expires_at_ms", self.expires_at_ms)):
            if not isinstance(v, int) or not 0 <= v <= UINT64_MAX:
                raise _fail(f"{what} must be an unsigned 64-bit integer")
        if self.expires_at_ms <= self.issued_at_ms:
            raise _fail("expires_at_ms must be after issued_at_ms")
        if self.lifetime_ms > MAX_TTL_MS:
            raise _fail(f"lifetime {self.lifetime_ms} ms exceeds {MAX_TTL_MS} ms")
        try:
            derived = ID.from_pubkey(self.public_key)
        except Exception as exc:
            raise _fail(f"unusable public key: {exc}") from exc
        if derived != self.peer_id:
            raise InvalidRecord(Reason.PEER_ID_MISMATCH, "peer_id is not derived from public_key")
        _check_text("name", self.name, NAME_MAX, identifier=True)
        _check_text("description", self.description, DESCRIPTION_MAX)
        if len(self.addrs) > ADDRS_MAX:
            raise _fail(f"more than {ADDRS_MAX} addresses")
        if len(self.capabilities) > CAPABILITIES_MAX:
            raise _fail(f"more than {CAPABILITIES_MAX} capabilities")
        for cap in self.capabilities:
            if not isinstance(cap, Capability):
                raise _fail("capabilities must be Capability values")
            cap.validate()
        names = [c.name for c in self.capabilities]
        if len(set(names)) != len(names):
            raise _fail("duplicate capability names")
        if len(self.metadata) > METADATA_MAX:
            raise _fail(f"more than {METADATA_MAX} metadata entries")
        for k, v in self.metadata.items():
            _check_text("metadata key", k, METADATA_KEY_MAX, identifier=True)
            _check_text(f"metadata value for {k!r}", v, METADATA_VALUE_MAX)

    # --- encoding --------------------------------------------------------------
    def to_protobuf(self) -> record_pb2.AgentRecord:
        return record_pb2.AgentRecord(
            peer_id=self.peer_id.to_bytes(),
            public_key=self.public_key.serialize(),
            addrs=[a.to_bytes() for a in self.addrs],
            name=self.name,
            description=self.description,
            capabilities=[c.to_protobuf() for c in self.capabilities],
            metadata=self.metadata,
            seq=self.seq,
            issued_at_ms=self.issued_at_ms,
            expires_at_ms=self.expires_at_ms,
        )

    def to_bytes(self) -> bytes:
        """Validate, then encode deterministically (map entries sorted)."""
        self.validate()
        data = self.to_protobuf().SerializeToString(deterministic=True)
        if len(data) > MAX_PAYLOAD_BYTES:
            raise InvalidRecord(Reason.TOO_LARGE, f"record is {len(data)} bytes (max {MAX_PAYLOAD_BYTES})")
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> AgentRecord:
        """Decode and validate; raises only :class:`InvalidRecord`."""
        if len(data) > MAX_PAYLOAD_BYTES:
            raise InvalidRecord(Reason.TOO_LARGE, f"record is {len(data)} bytes (max {MAX_PAYLOAD_BYTES})")
        msg = record_pb2.AgentRecord()
        try:
            msg.ParseFromString(bytes(data))
        except Exception as exc:
            raise InvalidRecord(Reason.MALFORMED, f"undecodable record: {exc}") from exc
        try:
            public_key = deserialize_public_key(msg.public_key)
        except Exception as exc:
            raise InvalidRecord(Reason.MALFORMED, f"undecodable public key: {exc}") from exc
        if len(msg.addrs) > ADDRS_MAX:
            raise _fail(f"more than {ADDRS_MAX} addresses")
        record = cls(
            peer_id=ID(msg.peer_id),
            public_key=public_key,
            addrs=tuple(_decode_addr(a) for a in msg.addrs),
            name=msg.name,
            description=msg.description,
            capabilities=tuple(Capability.from_protobuf(c) for c in msg.capabilities),
            metadata=dict(msg.metadata),
            seq=msg.seq,
            issued_at_ms=msg.issued_at_ms,
            expires_at_ms=msg.expires_at_ms,
        )
        record.validate()
        return record


def _decode_addr(data: bytes) -> Multiaddr:
    """Accept only canonical binary multiaddrs (py-multiaddr parses some
    truncated input leniently, so re-encode and compare)."""
    if not data or len(data) > ADDR_BYTES_MAX:
        raise _fail("address empty or too long")
    try:
        addr = Multiaddr(data)
        canonical = Multiaddr(str(addr)).to_bytes()
    except Exception as exc:
        raise _fail(f"bad multiaddr: {exc}") from exc
    if canonical != data:
        raise _fail("non-canonical multiaddr encoding")
    return addr
