"""Where a running daemon's control API is, and the token it expects.

The daemon writes two files next to its identity key (by default in
``~/.agentp2p``): ``api.addr`` with the address it actually bound (so a port
chosen by the OS, or a fallback port, is still found) and ``api.token``
(mode 0600) with the bearer token every request must carry. They are named
after the identity file (:func:`api_files`): the default ``identity.key``
has ``api.addr`` and ``api.token``, ``alice.key`` beside it has
``alice.api.addr`` and ``alice.api.token`` — so two daemons sharing a
directory never overwrite each other's files. Anyone who can
read the token can read the identity key beside it, so file permissions are
the whole access-control story for local clients.

This module is shared by the client and the server and imports nothing
heavier than the standard library: agent programs that only talk to a daemon
never load libp2p.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from agentp2p.client.errors import ClientError, DaemonNotRunning, TokenError

DEFAULT_HOME = Path("~/.agentp2p")
DEFAULT_API_LISTEN = "127.0.0.1:5001"
TOKEN_FILE_NAME = "api.token"
ADDR_FILE_NAME = "api.addr"
UNIX_PREFIX = "unix:"


@dataclass(frozen=True)
class ApiAddress:
    """A parsed ``HOST:PORT`` or ``unix:/path`` API address."""

    host: str | None = None
    port: int | None = None
    unix_path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.unix_path is not None

    @property
    def base_url(self) -> str:
        if self.unix_path is not None:
            return "http://agentp2p"  # the host part is ignored over a Unix socket
        host = self.host
        # A daemon bound to every interface (0.0.0.0 in a container) is
        # reached, and its dashboard opened, through loopback: browsers
        # refuse 0.0.0.0 and [::] as destinations.
        if host == "0.0.0.0":
            host = "127.0.0.1"
        elif host in ("::", "[::]"):
            host = "::1"
        host = f"[{host}]" if host and ":" in host else host
        return f"http://{host}:{self.port}"

    def is_loopback(self) -> bool:
        if self.unix_path is not None:
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host or "").is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"{UNIX_PREFIX}{self.unix_path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_api_address(text: str) -> ApiAddress:
    """``127.0.0.1:5001``, ``[::1]:5001``, ``http://127.0.0.1:5001`` or ``unix:/path``."""
    text = text.strip()
    if text.startswith(UNIX_PREFIX):
        path = text[len(UNIX_PREFIX) :]
        if not path:
            raise ValueError("unix: address needs a socket path, e.g. unix:/run/agentp2p.sock")
        return ApiAddress(unix_path=path)
    if text.startswith("http://"):
        text = text[len("http://") :].rstrip("/")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"API address {text!r} must be HOST:PORT or unix:/path")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"API address {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"API address {text!r}: port out of range")
    return ApiAddress(host=host, port=port)


DEFAULT_IDENTITY_STEM = "identity"


def api_files(identity: str | Path | None = None) -> tuple[Path, Path]:
    """``(api.addr, api.token)`` of the daemon running on ``identity`` (a key file;
    default ``~/.agentp2p/identity.key``), beside that file and named after it."""
    path = Path(identity).expanduser() if identity is not None else DEFAULT_HOME.expanduser() / "identity.key"
    prefix = "" if path.stem == DEFAULT_IDENTITY_STEM else f"{path.stem}."
    return path.parent / f"{prefix}{ADDR_FILE_NAME}", path.parent / f"{prefix}{TOKEN_FILE_NAME}"


@dataclass(frozen=True)
class RunningDaemon:
    """A daemon whose ``api.addr`` is in a directory and answers there."""

    name: str  # the identity file's stem
    addr_file: Path
    address: ApiAddress


def _answers(address: ApiAddress, timeout: float = 0.5) -> bool:
    import socket

    try:
        if address.unix_path is not None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(address.unix_path)
        else:
            with socket.create_connection((address.host, address.port), timeout=timeout):
                pass
    except OSError:
        return False
    return True


def running_daemons(home: str | Path | None = None) -> list[RunningDaemon]:
    """The daemons with API files in ``home`` (default ``~/.agentp2p``) whose
    API answers, the default identity's first (stale files after a crash are skipped)."""
    base = Path(home).expanduser() if home is not None else DEFAULT_HOME.expanduser()
    try:
        names = sorted(p.name for p in base.iterdir())
    except OSError:
        return []
    out: list[RunningDaemon] = []
    for name in names:
        if name == ADDR_FILE_NAME:
            stem = DEFAULT_IDENTITY_STEM
        elif name.endswith("." + ADDR_FILE_NAME):
            stem = name[: -len(ADDR_FILE_NAME) - 1]
        else:
            continue
        try:
            address = parse_api_address((base / name).read_text().strip())
        except (OSError, ValueError):
            continue
        if _answers(address):
            out.append(RunningDaemon(stem, base / name, address))
    out.sort(key=lambda d: d.name != DEFAULT_IDENTITY_STEM)
    return out


def daemon_home(identity: str | Path | None = None) -> Path:
    """The directory holding the daemon's identity and API files."""
    if identity is not None:
        return Path(identity).expanduser().parent
    return DEFAULT_HOME.expanduser()


@dataclass(frozen=True)
class Endpoint:
    """Everything a client needs to reach one daemon."""

    address: ApiAddress
    token: str
    token_source: str  # where the token came from, for error messages


def read_token_file(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise TokenError(f"API token file {path} does not exist (is `agentp2p daemon` running with this home?)") from None
    except OSError as exc:
        raise TokenError(f"cannot read API token file {path}: {exc.strerror}") from None
    if not token:
        raise TokenError(f"API token file {path} is empty")
    return token


def locate(
    api: str | None = None,
    *,
    token: str | None = None,
    token_file: str | Path | None = None,
    home: str | Path | None = None,
    identity: str | Path | None = None,
) -> Endpoint:
    """Find the daemon: explicit arguments first, then its files.

    ``identity``: the daemon's identity key file; its API files are beside
    it, named after it (:func:`api_files`). Otherwise ``home`` (default
    ``~/.agentp2p``) and the default identity's ``api.addr``/``api.token``.
    """
    base = Path(home).expanduser() if home is not None else DEFAULT_HOME.expanduser()
    addr_file, default_token_file = base / ADDR_FILE_NAME, base / TOKEN_FILE_NAME
    if identity is not None:
        addr_file, default_token_file = api_files(identity)
    if api is not None:
        try:
            address = parse_api_address(api)
        except ValueError as exc:
            raise ClientError(str(exc)) from None
    else:
        try:
            text = addr_file.read_text().strip()
        except FileNotFoundError:
            raise DaemonNotRunning(
                f"no agentp2p daemon found: {addr_file} does not exist (start one with `agentp2p daemon`)"
            ) from None
        except OSError as exc:
            raise DaemonNotRunning(f"cannot read {addr_file}: {exc.strerror}") from None
        try:
            address = parse_api_address(text)
        except ValueError as exc:
            raise DaemonNotRunning(f"{addr_file} is corrupt: {exc}") from None
    if token is not None:
        return Endpoint(address, token, "the token argument")
    path = Path(token_file).expanduser() if token_file is not None else default_token_file
    return Endpoint(address, read_token_file(path), str(path))
