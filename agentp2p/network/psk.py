"""Pre-shared key files for libp2p private networks (pnet).

The format is libp2p's ``swarm.key`` (specs ``pnet/Private-Networks-PSK-V1.md``),
as go-libp2p and Kubo read it::

    /key/swarm/psk/1.0.0/
    /base16/
    <64 hex digits>

The first line names the codec, the second the encoding of the rest of the
file: ``/base16/`` (what we write), ``/base64/`` or ``/bin/`` (32 raw bytes).
The key is exactly 32 bytes. Lines may end in ``\\r\\n``; whitespace around
a base16/base64 key is ignored. Unlike go-libp2p, which reads the first 32
bytes and ignores the rest, anything else after the key is an error: a key
file that holds more than one key is a mistake worth hearing about.

This module does no networking and imports nothing from libp2p (the CLI's
``agentp2p psk new`` uses it without loading the network stack); the
connection protector is :mod:`agentp2p.network.pnet`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from pathlib import Path

from agentp2p.errors import ConfigError

__all__ = [
    "DEFAULT_PSK_FILE",
    "KEY_SIZE",
    "PSKError",
    "decode_psk",
    "encode_psk",
    "fingerprint",
    "generate_psk",
    "read_psk_file",
    "write_psk_file",
]

#: Where ``agentp2p psk new`` writes when no file is named (beside the
#: default identity). The daemon never reads it unless told to (``--psk``).
DEFAULT_PSK_FILE = Path("~/.agentp2p/swarm.key")

KEY_SIZE = 32
CODEC = b"/key/swarm/psk/1.0.0/"
_ENCODINGS = (b"/base16/", b"/base64/", b"/bin/")


class PSKError(ConfigError):
    """A private network key (file) is missing, malformed or unsafe."""


def generate_psk() -> bytes:
    """A fresh 32-byte key from the OS's CSPRNG."""
    return secrets.token_bytes(KEY_SIZE)


def fingerprint(key: bytes) -> str:
    """A short, non-secret name for a key, to check that two nodes share one.

    The first 8 bytes of SHA-256 over a label and the key, in hex: it says
    whether two keys are equal without revealing anything usable about them.
    """
    return hashlib.sha256(b"agentp2p psk fingerprint\0" + key).hexdigest()[:16]


def encode_psk(key: bytes, encoding: str = "base16") -> bytes:
    """The key file's contents for ``key`` (``encoding``: base16, base64 or bin)."""
    if len(key) != KEY_SIZE:
        raise PSKError(f"a private network key is {KEY_SIZE} bytes, not {len(key)}")
    if encoding == "base16":
        body = key.hex().encode() + b"\n"
    elif encoding == "base64":
        body = base64.b64encode(key) + b"\n"
    elif encoding == "bin":
        body = key
    else:
        raise PSKError(f"unknown key encoding {encoding!r} (base16, base64 or bin)")
    return CODEC + b"\n/" + encoding.encode() + b"/\n" + body


def _line(data: bytes, start: int) -> tuple[bytes, int]:
    """The line at ``start`` without its ``\\r\\n`` (as go's TrimRight), and where the next begins."""
    end = data.find(b"\n", start)
    if end < 0:
        return data[start:].rstrip(b"\r\n"), len(data)
    return data[start:end].rstrip(b"\r\n"), end + 1


def _show(raw: bytes, limit: int = 40) -> str:
    text = raw[:limit].decode("ascii", errors="replace")
    return repr(text + ("..." if len(raw) > limit else ""))


def decode_psk(data: bytes) -> bytes:
    """The 32-byte key in a key file's contents; :class:`PSKError` saying what is wrong."""
    header, pos = _line(data, 0)
    if header != CODEC:
        raise PSKError(f"not a private network key: the first line must be {CODEC.decode()!r}, not {_show(header)}")
    if pos >= len(data):
        raise PSKError("the key file ends after its first line (expected an encoding line such as '/base16/')")
    encoding, pos = _line(data, pos)
    body = data[pos:]
    if encoding not in _ENCODINGS:
        names = ", ".join(repr(e.decode()) for e in _ENCODINGS)
        raise PSKError(f"unknown key encoding {_show(encoding)} on the second line (expected one of {names})")
    if encoding == b"/bin/":
        # Raw bytes: a trailing newline is tolerated only beyond the 32 key bytes.
        key = body[:KEY_SIZE] if body[KEY_SIZE:] in (b"\n", b"\r\n") else body
        if len(key) != KEY_SIZE:
            raise PSKError(f"the /bin/ key must be {KEY_SIZE} raw bytes, got {len(body)}")
        return bytes(key)
    text = b"".join(body.split())  # whitespace (line breaks included) is not part of the key
    if encoding == b"/base16/":
        if len(text) != 2 * KEY_SIZE:
            raise PSKError(f"the /base16/ key must be {2 * KEY_SIZE} hex digits ({KEY_SIZE} bytes), got {len(text)}")
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise PSKError("the /base16/ key has a character that is not a hex digit") from None
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PSKError("the /base64/ key is not valid base64 (standard alphabet, with padding)") from None
    if len(key) != KEY_SIZE:
        raise PSKError(f"the /base64/ key must decode to {KEY_SIZE} bytes, got {len(key)}")
    return key


def read_psk_file(path: Path | str) -> bytes:
    """Load a key file, refusing one that anyone on the machine may read or change.

    Group access is allowed (a service group may share the key); access by
    others is not, as for the identity file.
    """
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise PSKError(f"private network key file {path} does not exist (create one with `agentp2p psk new {path}`)") from None
    except OSError as exc:
        raise PSKError(f"cannot read private network key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise PSKError(f"private network key file {path} is not a regular file")
    if st.st_mode & stat.S_IRWXO:
        raise PSKError(
            f"private network key file {path} is accessible by others "
            f"(mode {stat.S_IMODE(st.st_mode):o}); run `chmod 600 {path}`"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PSKError(f"cannot read private network key file {path}: {exc.strerror}") from None
    try:
        return decode_psk(data)
    except PSKError as exc:
        raise PSKError(f"private network key file {path}: {exc}") from None


def write_psk_file(path: Path | str, key: bytes | None = None) -> bytes:
    """Write a key file (a fresh key unless ``key``) with mode 0600; never overwrite.

    Returns the key written.
    """
    path = Path(path).expanduser()
    key = generate_psk() if key is None else key
    data = encode_psk(key)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise PSKError(f"cannot create the directory of key file {path}: {exc.strerror}") from None
    try:
        # O_EXCL: an existing file (or one created meanwhile) is never replaced;
        # a network whose key is overwritten by mistake is cut in two.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PSKError(f"{path} already exists; refusing to overwrite a key file") from None
    except OSError as exc:
        raise PSKError(f"cannot create key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return key
