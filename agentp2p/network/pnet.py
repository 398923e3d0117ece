"""libp2p private networks: the pre-shared key connection protector.

Per libp2p's ``pnet/Private-Networks-PSK-V1.md`` (what go-libp2p and Kubo
speak): on every raw connection, before multistream-select and Noise, each
side sends 24 random bytes (its nonce) and then everything it writes XORed
with the XSalsa20 keystream of (PSK, its nonce); it decrypts what it reads
with the keystream of (PSK, the other side's nonce). Two directions, two
nonces, two keystreams. Nodes without the same key read noise, and no
libp2p handshake can complete.

How it is wired into py-libp2p 0.8.1 (nothing in site-packages is patched):
:func:`install_pnet` wraps the host's ``upgrader.upgrade_security``, which
both directions go through (outbound from ``Swarm.dial_addr``, inbound from
our :class:`~agentp2p.network.inbound.InboundGate`), and hands the security
negotiation a :class:`PnetConn` around the raw connection. The secured
connection keeps reading and writing through it for its whole life.

py-libp2p has a ``psk=`` option of its own (``Swarm.psk``,
``libp2p.security.pnet``), but it is not the spec: it uses Salsa20 with an
8-byte nonce, so it cannot talk to go-libp2p. :func:`build_host` leaves it
unset.

Clear failures, not garbage: the first thing any libp2p peer sends is
multistream-select's header ``\\x13/multistream/1.0.0\\n``. A protected
connection compares the first plaintext bytes it decrypts with that header,
so a peer with another key is recognised at its first bytes (not after a
parser has choked on noise), and a peer that sends the header in clear is
recognised as not being in a private network at all. The security upgrade
then fails with a :class:`SecurityUpgradeFailure` saying so, the connection
is closed, and until the header has arrived the handshake is bounded by a
deadline, so a peer that says nothing cannot hold a dial. Without a key,
outbound dials get the converse hint: when the upgrade fails and the peer's
first bytes were not the header (or it sent none), the error says the peer
may be in a private network.

XSalsa20 comes from libsodium (``crypto_stream_xsalsa20_xor_ic``): the copy
PyNaCl bundles (a dependency already), or the system's ``libsodium``.
PyNaCl's Python API does not expose the raw stream cipher, ``cryptography``
has no Salsa20, and pycryptodome's Salsa20 takes 8-byte nonces only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import IRawConnection
from libp2p.io.exceptions import ConnectionClosedError, IOException
from libp2p.transport.exceptions import SecurityUpgradeFailure

from agentp2p.network.psk import KEY_SIZE
from agentp2p.network.raw_wrapper import RawConnectionWrapper

__all__ = ["NONCE_SIZE", "PnetConn", "PnetError", "PrivateNetworkFailure", "XSalsa20", "install_pnet"]

NONCE_SIZE = 24
# After a failed write, how long to read the peer's first bytes for a better reason.
EXPLAIN_WAIT = 1.0
#: What every libp2p peer sends first (multistream-select 1.0.0, varint-length-prefixed).
MULTISTREAM_HEADER = b"\x13/multistream/1.0.0\n"
_BLOCK = 64


class PnetError(IOException):
    """The private network layer refused a connection (another key, no key, silence)."""


class PrivateNetworkFailure(SecurityUpgradeFailure):
    """A security upgrade that failed at the private network layer; ``reason`` says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- XSalsa20 from libsodium ---------------------------------------------------


def _load_xor_ic() -> Any:
    """libsodium's ``crypto_stream_xsalsa20_xor_ic``: PyNaCl's copy, else the system's."""
    candidates: list[str] = []
    with contextlib.suppress(ImportError):
        import nacl._sodium as bundled  # noqa: PLC0415 — PyNaCl statically links libsodium

        if getattr(bundled, "__file__", None):
            candidates.append(bundled.__file__)
    system = ctypes.util.find_library("sodium")
    if system:
        candidates.append(system)
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
            fn = lib.crypto_stream_xsalsa20_xor_ic
            init = lib.sodium_init
        except (OSError, AttributeError):
            continue
        init.restype = ctypes.c_int
        if init() < 0:
            continue
        fn.restype = ctypes.c_int
        fn.argtypes = [
            ctypes.c_char_p,  # out
            ctypes.c_char_p,  # in
            ctypes.c_ulonglong,  # length
            ctypes.c_char_p,  # 24-byte nonce
            ctypes.c_uint64,  # initial block counter
            ctypes.c_char_p,  # 32-byte key
        ]
        return fn
    return None


_xor_ic = _load_xor_ic()


class XSalsa20:
    """One direction's keystream: XORs successive chunks as one continuous stream."""

    __slots__ = ("_key", "_nonce", "_offset")

    def __init__(self, key: bytes, nonce: bytes) -> None:
        if _xor_ic is None:
            raise PnetError("private networks need libsodium (PyNaCl's bundled copy or the system's libsodium)")
        if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
            raise ValueError("XSalsa20 takes a 32-byte key and a 24-byte nonce")
        self._key = bytes(key)
        self._nonce = bytes(nonce)
        self._offset = 0

    def xor(self, data: bytes) -> bytes:
        n = len(data)
        if n == 0:
            return b""
        block, skip = divmod(self._offset, _BLOCK)
        # libsodium starts at a block boundary: pad the front to our position.
        buf = bytes(skip) + bytes(data) if skip else bytes(data)
        out = ctypes.create_string_buffer(len(buf))
        if _xor_ic(out, buf, len(buf), self._nonce, block, self._key) != 0:
            raise PnetError("XSalsa20 failed")
        self._offset += n
        return out.raw[skip:]


# -- the protected connection --------------------------------------------------


class PnetConn(RawConnectionWrapper):
    """A raw connection, encrypted with the private network's key in both directions.

    ``failure`` says why the private network handshake failed (None while it
    has not); ``on_verified`` is called once the peer's first bytes proved it
    holds the key.

    ``hold_writes`` (the responder's side): nothing leaves, not even our
    nonce, until the peer has proved it holds the key. A libp2p dialer
    always speaks first, so this costs no round trip, and a scanner, a
    plain node or one with another key hears nothing at all from us.
    """

    def __init__(
        self,
        inner: IRawConnection,
        psk: bytes,
        on_verified: Callable[[], None] | None = None,
        *,
        hold_writes: bool = False,
    ) -> None:
        if len(psk) != KEY_SIZE:
            raise ValueError(f"a private network key is {KEY_SIZE} bytes")
        super().__init__(inner)
        self._psk = bytes(psk)
        self._writer: XSalsa20 | None = None
        self._reader: XSalsa20 | None = None
        self._write_lock = trio.Lock()
        self._held: list[bytes] | None = [] if hold_writes else None
        self._checked = 0  # plaintext bytes compared with MULTISTREAM_HEADER so far
        self._eof = False
        self.failure: str | None = None
        self._provisional = False  # failure came from a write: the peer's first bytes may say more
        self.on_verified = on_verified

    @property
    def verified(self) -> bool:
        return self._checked >= len(MULTISTREAM_HEADER)

    def _fail(self, reason: str, cause: BaseException | None = None, *, provisional: bool = False) -> PnetError:
        if self.failure is None or self._provisional:
            self.failure = reason
            self._provisional = provisional
        err = PnetError(reason)
        err.__cause__ = cause
        return err

    async def write(self, data: bytes) -> None:
        async with self._write_lock:  # keystream order must be wire order
            if self._held is not None:
                self._held.append(bytes(data))
                return
            await self._send(data)

    async def _send(self, data: bytes) -> None:
        if self._writer is None:
            nonce = os.urandom(NONCE_SIZE)
            self._writer = XSalsa20(self._psk, nonce)
            out = nonce + self._writer.xor(data)
        else:
            out = self._writer.xor(data)
        try:
            await self._inner.write(out)
        except IOException as exc:
            # A dialer writes on without waiting (its multistream proposal, then
            # Noise's first message: network/multistream.py), so a peer with
            # another key has often closed before our second write.
            if not self.verified:
                reason = "the peer closed the connection in the private network handshake (it uses another key, or none)"
                raise self._fail(reason, exc, provisional=True) from exc
            raise

    async def explain(self, wait: float) -> None:
        """After a failed write, read what the peer sent first (for ``wait`` s at most) to say why.

        A plain libp2p listener sends its multistream header at once and closes
        on our nonce; our second write can fail before anyone reads, and the
        header already received tells the better reason. Call it only once the
        handshake is over (nobody else reads then).
        """
        if not self._provisional or self._reader is not None or self._eof:
            return
        with trio.move_on_after(wait):
            try:
                await self._read_nonce()
            except IOException:  # PnetError included: _read_nonce recorded what it learned
                pass

    async def _release(self) -> None:
        """The peer proved the key: send what was held, in order."""
        async with self._write_lock:
            held, self._held = self._held, None
            if held:
                await self._send(b"".join(held))

    async def _read_nonce(self) -> None:
        buf = b""
        while len(buf) < NONCE_SIZE:
            try:
                chunk = await self._inner.read(NONCE_SIZE - len(buf))
            except IOException as exc:
                reason = "the connection broke before the peer sent its nonce (it uses another key, or none)"
                raise self._fail(reason, exc) from exc
            if not chunk:
                self._eof = True
                raise self._fail(
                    "the peer closed the connection before sending its nonce (it uses another key, or none)"
                    if not buf
                    else "the peer closed the connection in the middle of its nonce (it is not in this private network)"
                )
            buf += chunk
            if buf[: len(MULTISTREAM_HEADER)] == MULTISTREAM_HEADER:
                raise self._fail("the peer is not in a private network (it speaks plain libp2p)")
        self._reader = XSalsa20(self._psk, buf)

    def _check(self, plain: bytes) -> None:
        want = MULTISTREAM_HEADER[self._checked :]
        got = plain[: len(want)]
        if got != want[: len(got)]:
            raise self._fail("the peer's first bytes do not decrypt with our key (it is in another private network)")
        self._checked += len(got)
        if self.verified and self.on_verified is not None:
            self.on_verified()

    async def read(self, n: int | None = None) -> bytes:
        if self._eof:
            raise ConnectionClosedError("connection closed", transport="pnet")
        if self._reader is None:
            await self._read_nonce()
        assert self._reader is not None
        try:
            data = await self._inner.read(n)
        except IOException as exc:
            if not self.verified:
                reason = "the connection broke in the private network handshake (the peer uses another key, or none)"
                raise self._fail(reason, exc) from exc
            raise
        if not data:
            if n != 0:
                self._eof = True
                if not self.verified:
                    reason = "the peer closed the connection in the private network handshake (another key, or none)"
                    raise self._fail(reason)
            return b""
        plain = self._reader.xor(data)
        if not self.verified:
            self._check(plain)
            if self.verified and self._held is not None:
                await self._release()
        return plain


class _FirstBytes(RawConnectionWrapper):
    """A raw connection that remembers the first bytes the peer sent (no key: a hint on failure)."""

    def __init__(self, inner: IRawConnection) -> None:
        super().__init__(inner)
        self.first = b""
        self.eof = False

    async def read(self, n: int | None = None) -> bytes:
        try:
            data = await self._inner.read(n)
        except Exception:
            # Reset before a word: a private-network peer that choked on our
            # header and proposal (sent together, network/multistream.py)
            # closes with them unread, and the kernel turns that into a reset.
            if not self.first:
                self.eof = True
            raise
        if len(self.first) < len(MULTISTREAM_HEADER):
            if data:
                self.first += data[: len(MULTISTREAM_HEADER) - len(self.first)]
                if len(self.first) >= len(MULTISTREAM_HEADER):
                    # Nothing more to watch: later reads go straight to the inner connection.
                    self.read = self._inner.read  # type: ignore[method-assign]
            elif n != 0:
                self.eof = True
        return data

    async def write(self, data: bytes) -> None:
        try:
            await self._inner.write(data)
        except Exception:
            if not self.first:  # as a reset on read: the peer went without a word
                self.eof = True
            raise

    def hint(self) -> str | None:
        """Why the upgrade may have failed, if the peer's first bytes suggest a private network."""
        if not self.first:
            if self.eof:
                return (
                    "the peer closed or reset the connection without a word: "
                    "it may be in a private network (see --psk), or refusing us"
                )
            return None  # nothing heard yet, and no EOF: a failure of our own side
        if not MULTISTREAM_HEADER.startswith(self.first):
            return (
                "the peer's first bytes are not libp2p's multistream-select: "
                "it is likely in a private network (see --psk)"
            )
        return None


# -- installing it -------------------------------------------------------------


async def _close_quietly(conn: Any) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(2):
        with contextlib.suppress(Exception):
            await conn.close()


def _who(raw_conn: Any, peer_id: Any) -> str:
    if peer_id is not None:
        return f"peer {peer_id}"
    with contextlib.suppress(Exception):
        addr = raw_conn.get_remote_address()
        if addr:
            return f"{addr[0]}:{addr[1]}"
    return "peer"


def install_pnet(host: Any, psk: bytes | None, *, timeout: float) -> None:
    """Protect every connection of ``host`` with ``psk`` (or, with None, hint at pnet on failures).

    Wraps the upgrader's ``upgrade_security`` on the host's instance.
    ``timeout`` bounds the wait for the peer's first bytes (its nonce and
    multistream header); after them the library's and the inbound gate's own
    deadlines apply.
    """
    upgrader = host.get_network().upgrader
    inner = upgrader.upgrade_security
    if getattr(inner, "_agentp2p_pnet", False):
        return
    if psk is not None and len(psk) != KEY_SIZE:
        raise ValueError(f"a private network key is {KEY_SIZE} bytes")
    if psk is not None and _xor_ic is None:
        raise PnetError("private networks need libsodium (PyNaCl's bundled copy or the system's libsodium)")

    async def protected(raw_conn: Any, is_initiator: bool, peer_id: Any = None) -> Any:
        assert psk is not None
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        conn = PnetConn(
            raw_conn, psk, on_verified=lambda: setattr(scope, "deadline", math.inf), hold_writes=not is_initiator
        )
        error: BaseException | None = None
        with scope:
            try:
                return await inner(conn, is_initiator, peer_id)
            except Exception as exc:
                if conn.failure is None:
                    raise  # past the private network layer (Noise, ...): not ours to explain
                error = exc
        try:
            if conn.failure is not None:
                await conn.explain(EXPLAIN_WAIT)
        finally:
            # Our deadline, or a failure of the private network handshake
            # (closed even when a cancellation lands in explain).
            await _close_quietly(conn)
        reason = conn.failure or f"no answer from the peer within {timeout:g}s (it uses another key, or none)"
        reason = f"private network handshake failed: {reason}"
        raise PrivateNetworkFailure(f"{reason} ({_who(raw_conn, peer_id)})", reason) from error

    async def plain(raw_conn: Any, is_initiator: bool, peer_id: Any = None) -> Any:
        # No deadline of our own here: the public network's dials keep theirs.
        if not is_initiator:
            return await inner(raw_conn, is_initiator, peer_id)
        conn = _FirstBytes(raw_conn)
        try:
            return await inner(conn, is_initiator, peer_id)
        except Exception as exc:
            hint = conn.hint()
            if hint is None:
                raise
            await _close_quietly(conn)
            raise PrivateNetworkFailure(f"{exc or type(exc).__name__}: {hint}", hint) from exc

    wrapper = protected if psk is not None else plain
    wrapper._agentp2p_pnet = True  # type: ignore[attr-defined]
    upgrader.upgrade_security = wrapper
    _explain_dial_failures(host.get_network())


def _pnet_reason(exc: BaseException | None, depth: int = 0) -> str | None:
    """The reason of the first :class:`PrivateNetworkFailure` behind ``exc`` (causes, exception groups)."""
    if exc is None or depth > 8:
        return None
    if isinstance(exc, PrivateNetworkFailure):
        return exc.reason
    # ExceptionGroup's ``exceptions``; py-libp2p's MultiError keeps them in ``errors``.
    for sub in list(getattr(exc, "exceptions", None) or ()) + list(getattr(exc, "errors", None) or ()):
        if (found := _pnet_reason(sub, depth + 1)) is not None:
            return found
    return _pnet_reason(exc.__cause__ or exc.__context__, depth + 1)


def _explain_dial_failures(swarm: Any) -> None:
    """Put the private network's reason into the swarm's dial errors.

    ``Swarm.dial_peer`` reports "no addresses established a successful
    connection" and keeps each address's error in its cause; callers (our
    dialer, the CLI) show the message only. The same exception is re-raised
    with the reason appended, so its type and attributes are unchanged.
    """
    dial_peer = swarm.dial_peer
    if getattr(dial_peer, "_agentp2p_pnet", False):
        return

    async def explained(peer_id: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await dial_peer(peer_id, *args, **kwargs)
        except Exception as exc:
            reason = _pnet_reason(exc.__cause__)
            if reason is not None and exc.args and isinstance(exc.args[0], str) and reason not in exc.args[0]:
                exc.args = (f"{exc.args[0]}: {reason}", *exc.args[1:])
            raise

    explained._agentp2p_pnet = True  # type: ignore[attr-defined]
    swarm.dial_peer = explained
