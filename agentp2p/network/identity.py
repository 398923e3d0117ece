"""Node identity: the Ed25519 key pair and the peer ID derived from it.

The key file holds a libp2p ``PrivateKey`` protobuf (``Type = Ed25519``,
``Data = seed || public key``, 64 bytes) exactly as go-libp2p marshals it, so
the same file gives the same peer ID in every libp2p implementation.

The file is the node's identity: losing it silently would make the node a
different peer. So we never overwrite an existing file, refuse files that
other users can read (a leaked key lets anyone impersonate the node), and
turn every malformed variant into one clear :class:`IdentityError`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.crypto.pb import crypto_pb2
from libp2p.peer.id import ID

from agentp2p.errors import IdentityError

DEFAULT_HOME = Path("~/.agentp2p")
DEFAULT_IDENTITY_FILE = DEFAULT_HOME / "identity.key"

_SEED_LEN = 32
_PUB_LEN = 32


@dataclass(frozen=True)
class Identity:
    """A node's key pair and the peer ID derived from its public key."""

    key_pair: KeyPair

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self.key_pair.private_key  # type: ignore[return-value]

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.key_pair.public_key  # type: ignore[return-value]

    @property
    def peer_id(self) -> ID:
        # Ed25519 public keys marshal to 36 bytes (<= 42), so per the peer-id
        # spec the ID is an identity multihash of the marshalled public key.
        return ID.from_pubkey(self.public_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls.from_seed(os.urandom(_SEED_LEN))

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Deterministic identity from a 32-byte seed (tests, reproducible setups)."""
        if len(seed) != _SEED_LEN:
            raise IdentityError(f"an Ed25519 seed is {_SEED_LEN} bytes, got {len(seed)}")
        priv = Ed25519PrivateKey.from_bytes(seed)
        return cls(KeyPair(priv, priv.get_public_key()))

    def marshal(self) -> bytes:
        """The libp2p protobuf encoding of the private key (go-libp2p compatible)."""
        pb = crypto_pb2.PrivateKey(
            key_type=crypto_pb2.KeyType.Ed25519,
            data=self.private_key.to_bytes() + self.public_key.to_bytes(),
        )
        return pb.SerializeToString()

    @classmethod
    def unmarshal(cls, data: bytes) -> Identity:
        """Parse a libp2p protobuf private key; accept the 64- and legacy 96-byte forms."""
        pb = crypto_pb2.PrivateKey()
        try:
            pb.ParseFromString(data)
        except Exception as exc:  # protobuf raises DecodeError and friends
            raise IdentityError(f"not a libp2p private key protobuf: {exc}") from None
        if not pb.HasField("key_type") or not pb.HasField("data"):
            raise IdentityError("not a libp2p private key protobuf: missing type or data")
        if pb.key_type != KeyType.Ed25519.value:
            name = crypto_pb2.KeyType.Name(pb.key_type) if pb.key_type in crypto_pb2.KeyType.values() else pb.key_type
            raise IdentityError(f"identity key must be Ed25519, found {name}")
        raw = pb.data
        if len(raw) == 96:  # [seed][pub][pub]: accepted only if both copies agree
            if raw[32:64] != raw[64:96]:
                raise IdentityError("legacy 96-byte Ed25519 key has mismatched public keys")
            raw = raw[:64]
        if len(raw) != _SEED_LEN + _PUB_LEN:
            raise IdentityError(f"Ed25519 private key must be 64 bytes, found {len(raw)} (truncated?)")
        ident = cls.from_seed(raw[:_SEED_LEN])
        if ident.public_key.to_bytes() != raw[_SEED_LEN:]:
            raise IdentityError("Ed25519 private key does not match its embedded public key (corrupt)")
        return ident


def load_identity(path: Path) -> Identity:
    """Read an existing identity file, refusing unsafe permissions."""
    path = path.expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IdentityError(f"identity file {path} does not exist") from None
    except OSError as exc:
        raise IdentityError(f"cannot read identity file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise IdentityError(f"identity file {path} is not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(
            f"identity file {path} is accessible by group/others "
            f"(mode {stat.S_IMODE(st.st_mode):o}); run `chmod 600 {path}`"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read identity file {path}: {exc.strerror}") from None
    try:
        return Identity.unmarshal(data)
    except IdentityError as exc:
        raise IdentityError(f"identity file {path}: {exc}") from None


def create_identity(path: Path) -> Identity:
    """Create a new identity file with mode 0600; never replaces an existing file."""
    path = path.expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    ident = Identity.generate()
    try:
        # O_EXCL: if another process created the file meanwhile, we fail
        # rather than clobber its key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise IdentityError(f"identity file {path} already exists; refusing to overwrite") from None
    except OSError as exc:
        raise IdentityError(f"cannot create identity file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(ident.marshal())
        f.flush()
        os.fsync(f.fileno())
    return ident


def load_or_create_identity(path: Path) -> Identity:
    """Load the identity at ``path``, creating it only if no file exists there."""
    path = path.expanduser()
    if os.path.lexists(path):
        return load_identity(path)
    return create_identity(path)
