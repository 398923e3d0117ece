"""Drive the go-libp2p reference peer (interop/go-peer) from trio tests.

The Go program speaks a line protocol (see interop/go-peer/README.md): we
write ``<n> <verb> <args>`` lines to its stdin, it answers each with one JSON
line carrying the same ``id``, and it emits ``{"event": ...}`` lines for
asynchronous happenings (ready, pubsub messages). Replies can arrive out of
order because the Go side runs commands concurrently, so one reader task
routes every line: replies to the waiting caller, messages into a memory
channel.

:class:`GoPeer` is an async context manager that owns the process and its
reader tasks; leaving the block always ends the process (``quit`` if it is
responsive, kill otherwise), so a failing test leaves no orphan behind.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, AsyncIterator, Awaitable, Callable

import trio

GO_PEER_DIR = Path(__file__).resolve().parents[2] / "interop" / "go-peer"
BINARY = GO_PEER_DIR / "bin" / "go-peer"
AGENT_VERSION = "go-peer/interop"
#: The DHT protocol agentp2p and the Go peer speak by default...
DHT_PROTOCOL = "/agentp2p/kad/1.0.0"
#: ...and the public IPFS one, when both are configured for it.
IPFS_DHT_PROTOCOL = "/ipfs/kad/1.0.0"

# The Go side bounds network operations by 10 s; allow for its reply to land.
DEFAULT_COMMAND_TIMEOUT = 20.0


class GoPeerError(Exception):
    """The Go peer answered a command with ``ok: false`` (or died)."""


class GoBuildError(Exception):
    """``go build`` failed or timed out."""


def find_go() -> str | None:
    """The ``go`` executable on PATH, or None."""
    return shutil.which("go")


def _sources() -> list[Path]:
    return [
        p
        for p in GO_PEER_DIR.iterdir()
        if p.suffix == ".go" or p.name in ("go.mod", "go.sum")
    ]


def binary_is_stale(binary: Path = BINARY) -> bool:
    """True if the binary is missing or older than any Go source file."""
    if not binary.exists():
        return True
    built = binary.stat().st_mtime
    return any(src.stat().st_mtime > built for src in _sources())


def build_go_peer(go: str, *, timeout: float = 600.0, binary: Path = BINARY) -> Path:
    """Build the Go peer unless an up-to-date binary exists; return its path.

    Builds into a temporary name and renames, so a killed build never leaves
    a truncated binary that looks fresh. A cold build downloads modules from
    the Go module proxy and compiles go-libp2p (about a minute on 2 cores);
    a warm one takes seconds.
    """
    if not binary_is_stale(binary):
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(binary.name + f".tmp{os.getpid()}")
    try:
        result = subprocess.run(
            [go, "build", "-o", str(tmp), "./"],
            cwd=GO_PEER_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        tmp.unlink(missing_ok=True)
        raise GoBuildError(f"go build timed out after {timeout:.0f} s") from exc
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise GoBuildError(f"go build failed ({result.returncode}):\n{result.stderr}")
    os.replace(tmp, binary)
    return binary


def expected_peer_id(seed: int) -> str:
    """The peer ID ``--seed seed`` yields, computed independently in Python.

    Mirrors main.go: Ed25519 key from SHA-256("go-peer/interop seed <n>").
    """
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.peer.id import ID

    digest = hashlib.sha256(f"go-peer/interop seed {seed}".encode()).digest()
    return str(ID.from_pubkey(Ed25519PrivateKey.new(digest).get_public_key()))


@dataclass(frozen=True)
class GoMessage:
    """One pubsub message the Go peer received."""

    topic: str
    from_peer: str
    received_from: str
    data: bytes
    seqno: bytes


@dataclass
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    reply: dict[str, Any] | None = None


class GoPeer:
    """A running go-peer process, as an async context manager.

    >>> async with GoPeer(binary, seed=1) as a, GoPeer(binary) as b:
    ...     await b.connect(a.addr)
    """

    def __init__(
        self,
        binary: Path = BINARY,
        *,
        seed: int | None = None,
        listen: list[str] | None = None,
        bootstrap: list[str] | None = None,
        ready_timeout: float = 30.0,
        debug: bool = False,
        dht_protocol: str | None = None,
        flags: tuple[str, ...] = (),
        wrap: tuple[str, ...] = (),
    ) -> None:
        """``flags``: more go-peer flags (``--relay-service``, ``--reserve ADDR``...);
        ``wrap``: a command line to run it under (``ip netns exec NS`` in the NAT lab)."""
        self._argv = [*wrap, str(binary), *flags]
        if seed is not None:
            self._argv += ["--seed", str(seed)]
        for addr in listen or []:
            self._argv += ["--listen", addr]
        for addr in bootstrap or []:
            self._argv += ["--bootstrap", addr]
        env: dict[str, str] = {}
        if debug:
            env["GO_PEER_DEBUG"] = "1"
        if dht_protocol is not None:  # DHT_PROTOCOL (the default) or IPFS_DHT_PROTOCOL
            env["GO_PEER_DHT_PROTOCOL"] = dht_protocol
        self._env = dict(os.environ, **env) if env else None
        self._ready_timeout = ready_timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._write_lock = trio.Lock()
        self._ready = trio.Event()
        self._started = trio.Event()
        self._closed = False
        self._protocol_errors: list[str] = []
        self.stderr_tail: deque[str] = deque(maxlen=200)
        self._msg_send, self.messages = trio.open_memory_channel[GoMessage](math.inf)
        self.peer_id = ""
        self.addrs: list[str] = []
        self._proc: trio.Process | None = None
        self._nursery_cm: Any = None

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> GoPeer:
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        try:
            self._proc = await trio.lowlevel.open_process(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
            )
            nursery.start_soon(self._read_stdout)
            nursery.start_soon(self._read_stderr)
            with trio.move_on_after(self._ready_timeout):
                await self._started.wait()  # ready, or stdout closed
            if not self._ready.is_set():
                if self._closed:
                    with trio.move_on_after(5):
                        await self._proc.wait()
                    problem = "go-peer exited before it was ready"
                else:
                    problem = f"go-peer not ready after {self._ready_timeout} s"
                raise GoPeerError(problem + self._diagnostics())
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        await self._shutdown()
        # The reader tasks end by themselves once the pipes are closed. The
        # nursery is told nothing about the body's exception, so that one
        # propagates as is instead of wrapped in an ExceptionGroup.
        await self._nursery_cm.__aexit__(None, None, None)

    async def _shutdown(self) -> None:
        """Ask the process to quit, kill it if it does not, reap it."""
        proc = self._proc
        if proc is None:
            return
        with trio.CancelScope(shield=True):
            if proc.returncode is None and self._ready.is_set() and not self._closed:
                with trio.move_on_after(5):
                    try:
                        await self.command("quit", timeout=5)
                    except (GoPeerError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    await stream.aclose()

    @property
    def pid(self) -> int | None:
        """The Go process's ID (benchmarks read its CPU time), None before start."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    def _diagnostics(self) -> str:
        parts = []
        if self._proc is not None and self._proc.returncode is not None:
            parts.append(f"exit status {self._proc.returncode}")
        if self._protocol_errors:
            parts.append("unparseable stdout: " + "; ".join(self._protocol_errors[-3:]))
        if self.stderr_tail:
            parts.append("stderr tail:\n" + "\n".join(list(self.stderr_tail)[-20:]))
        return ("\n" + "\n".join(parts)) if parts else ""

    # -- reader tasks ------------------------------------------------------

    async def _lines(self, stream: trio.abc.ReceiveStream) -> AsyncIterator[bytes]:
        buf = b""
        async for chunk in stream:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                yield line
        if buf:
            yield buf

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            async for raw in self._lines(self._proc.stdout):
                self._dispatch(raw)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            # The process is gone (or going): nobody will answer any more.
            self._closed = True
            self._started.set()
            for pending in self._pending.values():
                pending.done.set()
            self._msg_send.close()

    def _dispatch(self, raw: bytes) -> None:
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            self._protocol_errors.append(raw.decode(errors="replace")[:200])
            return
        event = obj.get("event")
        if event == "ready":
            self.peer_id = obj["peer_id"]
            self.addrs = list(obj["addrs"])
            self._ready.set()
            self._started.set()
        elif event == "message":
            self._msg_send.send_nowait(
                GoMessage(
                    topic=obj["topic"],
                    from_peer=obj["from"],
                    received_from=obj.get("received_from", ""),
                    data=bytes.fromhex(obj["data"]),
                    seqno=bytes.fromhex(obj["seqno"]),
                )
            )
        elif "id" in obj:
            pending = self._pending.get(obj["id"]) if obj["id"] is not None else None
            if pending is None:
                self._protocol_errors.append(f"reply to unknown id: {obj}")
                return
            pending.reply = obj
            pending.done.set()
        else:
            self._protocol_errors.append(f"unknown line: {obj}")

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        try:
            async for raw in self._lines(self._proc.stderr):
                line = raw.decode(errors="replace")
                self.stderr_tail.append(line)
                # Shown by pytest for failing tests only.
                print(f"[go-peer {self.peer_id[-6:]}] {line}", file=sys.stderr)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    # -- commands ----------------------------------------------------------

    async def command(
        self, verb: str, *args: str | int, timeout: float = DEFAULT_COMMAND_TIMEOUT
    ) -> dict[str, Any]:
        """Send one command, return its reply; raise GoPeerError if not ok."""
        assert self._proc is not None and self._proc.stdin is not None
        if self._closed:
            raise GoPeerError(f"{verb}: go-peer has exited" + self._diagnostics())
        n = next(self._ids)
        line = " ".join([str(n), verb, *map(str, args)])
        if "\n" in line:
            raise ValueError("command arguments must not contain newlines")
        pending = self._pending[n] = _Pending()
        try:
            async with self._write_lock:
                await self._proc.stdin.send_all(line.encode() + b"\n")
            with trio.fail_after(timeout):
                await pending.done.wait()
        finally:
            del self._pending[n]
        reply = pending.reply
        if reply is None:
            raise GoPeerError(f"{verb}: go-peer exited before replying" + self._diagnostics())
        if not reply.get("ok"):
            raise GoPeerError(f"{verb}: {reply.get('error')}")
        return reply

    async def wait_until(
        self,
        check: Callable[[], Awaitable[bool]],
        *,
        timeout: float = 10.0,
        interval: float = 0.02,
        what: str = "condition",
    ) -> None:
        """Poll an async predicate (typically a query command) until true."""
        with trio.move_on_after(timeout):
            while not await check():
                await trio.sleep(interval)
            return
        raise trio.TooSlowError(f"{what} not reached within {timeout} s")

    @property
    def addr(self) -> str:
        """The first full multiaddr (ending in /p2p/<id>)."""
        return self.addrs[0]

    async def connect(self, multiaddr: str) -> str:
        return (await self.command("connect", multiaddr))["peer_id"]

    async def peers(self) -> list[str]:
        return (await self.command("peers"))["peers"]

    async def identify(self, peer_id: str) -> dict[str, Any]:
        return await self.command("identify", peer_id)

    async def ping(self, peer_id: str) -> float:
        return (await self.command("ping", peer_id))["rtt_ms"]

    async def put(self, key: str, value: bytes) -> None:
        await self.command("put", key, value.hex())

    async def get(self, key: str) -> bytes:
        return bytes.fromhex((await self.command("get", key))["value"])

    async def provide(self, key: str) -> str:
        return (await self.command("provide", key))["cid"]

    async def find_providers(self, key: str, count: int) -> list[str]:
        return (await self.command("findprovs", key, count))["providers"]

    async def find_peer(self, peer_id: str) -> list[str]:
        return (await self.command("findpeer", peer_id))["addrs"]

    async def subscribe(self, topic: str) -> None:
        await self.command("subscribe", topic)

    async def publish(self, topic: str, data: bytes) -> None:
        await self.command("publish", topic, data.hex())

    async def topic_peers(self, topic: str) -> list[str]:
        return (await self.command("topicpeers", topic))["peers"]

    async def mesh_peers(self, topic: str) -> list[str]:
        return (await self.command("meshpeers", topic))["peers"]

    async def bootstrap(self) -> int:
        return (await self.command("bootstrap"))["size"]

    async def rt_size(self) -> int:
        return (await self.command("rtsize"))["size"]

    async def rt_wait(self, minimum: int) -> int:
        """Wait (Go side, up to 10 s) for the routing table to hold >= minimum."""
        return (await self.command("rtwait", minimum))["size"]

    async def wait_mesh(self, topic: str, peer_id: str, timeout: float = 10.0) -> None:
        """Wait until peer_id is in our gossipsub mesh for topic."""

        async def grafted() -> bool:
            return peer_id in await self.mesh_peers(topic)

        await self.wait_until(grafted, timeout=timeout, what=f"{peer_id} in mesh for {topic}")

    async def next_message(self, timeout: float = 10.0) -> GoMessage:
        with trio.fail_after(timeout):
            return await self.messages.receive()
