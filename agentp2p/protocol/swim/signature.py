"""Signed self-updates: what a member signs about itself, and a bounded verifier.

Only member M may raise M's incarnation (a refutation) or say that M left. A
frame M sends us itself is authenticated by the transport (Noise), but
gossip relayed by others is not; so M signs the updates it announces about
itself (``alive`` and ``left``) with its libp2p identity key, and relays
forward the signature unchanged. The signature covers an explicit byte string,
not the protobuf encoding (protobuf has no canonical form)::

    DOMAIN || u32(len(peer_id)) || peer_id || u64(incarnation) || u32(state)
           || u32(len(addrs)) || for each addr: u32(len(addr)) || addr

(big-endian). The domain string keeps these signatures from being valid for
any other purpose (e.g. a messaging envelope).

The core stays pure: it is handed a ``sign(data) -> signature`` function for
its own key and a ``verify(peer_id, data, signature) -> bool`` function (for
Ed25519 peer IDs the public key is inlined in the ID: see crypto.py). Each
distinct signed update is verified at most once (:class:`SignatureCache`), and
the core only asks when the answer matters (the update would raise a known
member's incarnation or mark it left), within a per-frame budget.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Final

from .member import PeerId, State
from .messages import MemberUpdate

DOMAIN: Final = b"agentp2p/swim/1.0.0 self-update\x00"

#: ``sign(data) -> signature`` with the local member's key.
Signer = Callable[[bytes], bytes]
#: ``verify(peer_id, data, signature) -> bool`` with peer_id's public key.
Verifier = Callable[[PeerId, bytes, bytes], bool]

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def signing_bytes(peer_id: PeerId, incarnation: int, state: State, addrs: Iterable[bytes]) -> bytes:
    """The canonical byte string a self-update's signature covers."""
    addrs = tuple(addrs)
    parts = [DOMAIN, _U32.pack(len(peer_id)), peer_id, _U64.pack(incarnation), _U32.pack(int(state)),
             _U32.pack(len(addrs))]
    for a in addrs:
        parts += (_U32.pack(len(a)), a)
    return b"".join(parts)


def signed_update(
    sign: Signer | None, peer_id: PeerId, state: State, incarnation: int, addrs: tuple[bytes, ...] = ()
) -> MemberUpdate:
    """``peer_id``'s own update, signed when a signer is available."""
    sig = sign(signing_bytes(peer_id, incarnation, state, addrs)) if sign is not None else b""
    return MemberUpdate(peer_id, state, incarnation, addrs, b"", sig)


class SignatureCache:
    """Verify each distinct signed update once; remember the verdict (bounded).

    The key is the whole signed content plus the signature, so a forged copy
    of a genuine update (other bytes) gets its own (negative) entry, and
    repeating a forgery costs nothing after the first time.
    """

    __slots__ = ("_verify", "_cache", "max_entries", "verified", "hits")

    def __init__(self, verify: Verifier | None, max_entries: int = 4096) -> None:
        self._verify = verify
        self._cache: dict[tuple[bytes, int, int, tuple[bytes, ...], bytes], bool] = {}
        self.max_entries = max_entries
        self.verified = 0  # signature verifications actually run
        self.hits = 0

    def cached(self, u: MemberUpdate) -> bool | None:
        """The remembered verdict for ``u``, or None if it was never checked."""
        return self._cache.get((u.peer_id, u.incarnation, int(u.state), u.addrs, u.signature))

    def check(self, u: MemberUpdate) -> bool:
        """True if ``u`` carries a valid signature by ``u.peer_id``."""
        if not u.signature or self._verify is None:
            return False
        key = (u.peer_id, u.incarnation, int(u.state), u.addrs, u.signature)
        hit = self._cache.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.verified += 1
        try:
            ok = bool(self._verify(u.peer_id, signing_bytes(u.peer_id, u.incarnation, u.state, u.addrs), u.signature))
        except Exception:  # noqa: BLE001 - an unverifiable key is the sender's problem
            ok = False
        if len(self._cache) >= self.max_entries:
            del self._cache[next(iter(self._cache))]  # oldest first
        self._cache[key] = ok
        return ok
