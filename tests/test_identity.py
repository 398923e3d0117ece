"""Identity files: spec-compatible peer IDs, safe storage, clear errors, nothing lost."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agentp2p.errors import IdentityError
from agentp2p.network.identity import Identity, create_identity, load_identity, load_or_create_identity

# Test vector from the libp2p peer-id spec (Ed25519).
SPEC_SEED = bytes.fromhex("7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d")
SPEC_PUBKEY_PB = bytes.fromhex("080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
SPEC_PEER_ID = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"


def test_peer_id_matches_spec_vector() -> None:
    ident = Identity.from_seed(SPEC_SEED)
    assert ident.public_key.serialize() == SPEC_PUBKEY_PB
    assert str(ident.peer_id) == SPEC_PEER_ID


def test_key_file_is_go_libp2p_format() -> None:
    data = Identity.from_seed(SPEC_SEED).marshal()
    # PrivateKey{Type=Ed25519(1), Data=seed||pub (64 bytes)}
    assert data[:4] == bytes.fromhex("08011240")
    assert data[4:36] == SPEC_SEED and data[36:] == SPEC_PUBKEY_PB[4:]
    legacy = data[:3] + bytes([96]) + data[4:] + SPEC_PUBKEY_PB[4:]
    assert str(Identity.unmarshal(legacy).peer_id) == SPEC_PEER_ID


def test_created_with_0600_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "id.key"
    first = load_or_create_identity(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_identity(path).peer_id == first.peer_id


def test_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    create_identity(path)
    before = path.read_bytes()
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        create_identity(path)
    assert path.read_bytes() == before


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff\xff\xff garbage", "not a libp2p private key"),
        (Identity.from_seed(SPEC_SEED).marshal()[:40], "private key"),
        (bytes.fromhex("0800120400010203"), "must be Ed25519"),  # RSA type
        (b"", "missing type or data"),
        (bytes.fromhex("08011240") + SPEC_SEED + bytes(32), "does not match"),
    ],
    ids=["garbage", "truncated", "wrong-type", "empty", "mismatched-pubkey"],
)
def test_bad_key_files_fail_clearly_and_survive(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "id.key"
    _write(path, data)
    with pytest.raises(IdentityError, match=message):
        load_or_create_identity(path)
    assert path.read_bytes() == data  # never replaced


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "id.key"
    _write(path, Identity.generate().marshal(), mode)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_identity(path)
