"""Helpers for testing code that runs agentp2p nodes (our suite, the interop
tests and the benchmarks use them).

In-process nodes (:func:`local_config`, :func:`network`, :func:`wait_until`)
and the daemon and a devnet as subprocesses (:class:`DaemonProcess`,
:class:`DevnetProcess`, on the :class:`ChildProcess` harness). Everything binds to 127.0.0.1 with ports the
OS chooses, and waits on conditions with deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import trio
from multiaddr import Multiaddr

from agentp2p.config import NodeConfig
from agentp2p.node import Node

#: Listen address for test hosts: loopback, any free port.
LOOPBACK = Multiaddr("/ip4/127.0.0.1/tcp/0")

T = TypeVar("T")
C = TypeVar("C", bound="ChildProcess")


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition",
                     detail: Callable[[], str] | None = None) -> None:  # fmt: skip
    """Wait for ``predicate()`` to hold, failing the test after ``timeout`` seconds.

    libp2p state (routing tables, mesh membership) changes without events we
    can await, so we re-check on each scheduler tick batch; the deadline is
    what makes a hang a failure instead of a stuck CI job. ``detail``: what
    to add to the failure (the state the wait saw last), asked at the deadline.
    """
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
        return
    raise AssertionError(_timed_out(timeout, what, detail))


def _timed_out(timeout: float, what: str, detail: Callable[[], str] | None) -> str:
    message = f"timed out after {timeout}s waiting for {what}"
    return message if detail is None else f"{message}\n{detail()}"


def library_host(**kwargs: Any) -> Any:
    """A bare py-libp2p host: Noise and the library's own Yamux, none of our
    guards — for tests that show the library's behaviour next to ours, and
    for attackers that write raw frames. Listens on 127.0.0.1 (any port)."""
    from libp2p import new_host
    from libp2p.custom_types import TProtocol
    from libp2p.network.config import ConnectionConfig
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    from agentp2p.network.host import security_options
    from agentp2p.network.identity import Identity

    ident = Identity.generate()
    # one connection per peer: no 250 ms happy-eyeballs wait per dial
    kwargs.setdefault("connection_config", ConnectionConfig(max_connections_per_peer=1))
    return new_host(
        key_pair=ident.key_pair,
        sec_opt=security_options(ident),  # type: ignore[arg-type]
        muxer_opt={TProtocol(YAMUX_ID): Yamux},  # type: ignore[dict-item]
        listen_addrs=[LOOPBACK],
        **kwargs,
    )


def local_config(**kwargs) -> NodeConfig:  # type: ignore[no-untyped-def]
    kwargs.setdefault("listen", ["/ip4/127.0.0.1/tcp/0"])
    return NodeConfig(**kwargs)


@contextlib.asynccontextmanager
async def network(n: int, **kwargs) -> AsyncIterator[list[Node]]:  # type: ignore[no-untyped-def]
    """``n`` nodes: the first is the bootstrap node, the others bootstrap from it."""
    async with contextlib.AsyncExitStack() as stack:
        boot = await stack.enter_async_context(Node(local_config(**kwargs)))
        nodes = [boot]
        for _ in range(n - 1):
            cfg = local_config(bootstrap=[boot.addrs[0]], **kwargs)
            nodes.append(await stack.enter_async_context(Node(cfg)))
        await wait_until(lambda: all(len(x.peers()) >= 1 for x in nodes[1:]), what="bootstrap connections")
        yield nodes


# ---------------------------------------------------------------------------
# Subprocesses: the daemon as a user runs it, and other helper programs.
#
# One harness for the test suite, the interop tests and the benchmarks. It is
# synchronous at heart (threads read the child's stdout and stderr), so plain
# pytest tests, fixtures and benchmark scripts use it as is; trio code uses
# the ``*_async`` methods and ``async with``, which poll the same state on
# scheduler ticks. Every wait has a deadline and fails with the child's log.
# ---------------------------------------------------------------------------

#: ``python -m agentp2p`` with this interpreter.
CLI: tuple[str, ...] = (sys.executable, "-m", "agentp2p")
#: Where test daemons listen: loopback, a port chosen by the OS.
LOCAL_LISTEN = "/ip4/127.0.0.1/tcp/0"
#: The daemon's log line once its control API answers.
API_READY_LOG = "control API listening on"
#: The daemon's log line once it has printed all its addresses.
RUNNING_LOG = "running as"
#: Log lines kept in failure messages.
LOG_TAIL = 40


def cli_env(home: str | Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for an ``agentp2p`` subprocess: ``HOME=home`` (never the
    user's ``~/.agentp2p``) and none of this process's ``AGENTP2P_*``
    settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTP2P_")}
    env["HOME"] = str(home)
    env.update(extra or {})
    return env


def run_cli(home: str | Path, *args: str, timeout: float = 60.0, input: str | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``agentp2p *args`` to completion with ``HOME=home``; output captured as text."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, input=input,
        env=dict(env) if env is not None else cli_env(home),
    )  # fmt: skip


async def run_cli_async(home: str | Path, *args: str, timeout: float = 60.0,
                        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """:func:`run_cli` without blocking the trio loop."""
    return await trio.to_thread.run_sync(functools.partial(run_cli, home, *args, timeout=timeout, env=env))


def _flag_value(flags: Sequence[str], name: str) -> str | None:
    """The value of the last ``name VALUE`` or ``name=VALUE`` in ``flags``."""
    value = None
    for i, flag in enumerate(flags):
        if flag == name and i + 1 < len(flags):
            value = flags[i + 1]
        elif flag.startswith(name + "="):
            value = flag.split("=", 1)[1]
    return value


#: Every child started in this process, for failure reports (tests/conftest.py).
_children: weakref.WeakSet[ChildProcess] = weakref.WeakSet()


def children_since(t: float) -> list[ChildProcess]:
    """Children launched at or after ``time.monotonic()`` value ``t``, or still running."""
    found = [c for c in list(_children) if c.launched_at is not None and (c.launched_at >= t or c.alive())]
    return sorted(found, key=lambda c: c.launched_at or 0.0)


class ChildProcess:
    """A program in a subprocess, in a process group of its own.

    Threads collect its stdout lines (:attr:`lines`) and its stderr lines
    (:attr:`logs`: JSON objects where a line is one, else ``{"msg": line,
    "raw": True}``) as they come. Ready (:meth:`wait_ready`) is its first
    stdout line; subclasses say otherwise. Closing it stops it with SIGTERM,
    then SIGKILLs its process group if it does not exit in time.

    Use it as ``with`` (sync) or ``async with`` (trio): both start it, wait
    until it is ready and close it. A wait that fails says why with the
    tail of its log; tests/conftest.py adds the log of every child a failed
    test ran to its report.

    Its stdin is empty unless ``stdin=True``: then it is a pipe that
    :meth:`send_line` writes to and :meth:`close_stdin` ends (an interactive
    program, such as ``agentp2p devnet``).
    """

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str] | None = None, name: str | None = None,
                 stdin: bool = False) -> None:  # fmt: skip
        self.args = [str(a) for a in args]
        self.stdin = stdin
        self.env = dict(env) if env is not None else None
        self.name = name or Path(self.args[1] if len(self.args) > 1 else self.args[0]).name
        self.lines: list[str] = []
        self.logs: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.launched_at: float | None = None
        self._cond = threading.Condition()
        self._eof = {"stdout": False, "stderr": False}
        self._readers: list[threading.Thread] = []
        self._closed = False

    # -- starting ------------------------------------------------------------

    def launch(self) -> Self:
        """Start the process (without waiting for it to be ready)."""
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=self.env,
            start_new_session=True,  # its own process group: torn down as one, spared the terminal's Ctrl-C
        )  # fmt: skip
        self.launched_at = time.monotonic()
        _children.add(self)
        for stream, kind in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr")):
            t = threading.Thread(target=self._read, args=(stream, kind), name=f"{self.name} {kind}", daemon=True)
            t.start()
            self._readers.append(t)
        return self

    def _is_ready(self) -> bool:
        return bool(self.lines)

    def wait_ready(self, timeout: float = 30.0) -> Self:
        self._wait(lambda: True if self._is_ready() else None, timeout, "readiness", ("stdout", "stderr"))
        return self

    async def wait_ready_async(self, timeout: float = 30.0) -> Self:
        await self._wait_async(lambda: True if self._is_ready() else None, timeout, "readiness", ("stdout", "stderr"))
        return self

    def start(self, timeout: float = 30.0) -> Self:
        """Launch and wait until ready; a child that fails to get ready is closed."""
        self.launch()
        try:
            return self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise

    async def start_async(self, timeout: float = 30.0) -> Self:
        self.launch()
        try:
            return await self.wait_ready_async(timeout)
        except BaseException:
            await self.aclose()
            raise

    # -- input ---------------------------------------------------------------

    def send_line(self, text: str) -> None:
        """Write ``text`` and a newline to its stdin (``stdin=True``)."""
        assert self.proc is not None and self.proc.stdin is not None, "launched without stdin=True"
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        """End its input (it reads end of file)."""
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    # -- output --------------------------------------------------------------

    def _read(self, stream: Any, kind: str) -> None:
        try:
            for raw in stream:
                text = raw.decode(errors="replace").rstrip("\r\n")
                with self._cond:
                    if kind == "stdout":
                        if text.strip():
                            self.lines.append(text.strip())
                    else:
                        self.logs.append(_log_entry(text))
                    self._cond.notify_all()
        except (OSError, ValueError):  # the stream was closed under us
            pass
        finally:
            with self._cond:
                self._eof[kind] = True
                self._cond.notify_all()

    def log_count(self, text: str) -> int:
        """Log lines containing ``text`` so far."""
        with self._cond:
            return sum(text in str(e.get("msg", "")) for e in self.logs)

    def log_text(self, last: int | None = None) -> str:
        """The log as text (the last ``last`` lines)."""
        with self._cond:
            entries = self.logs if last is None else self.logs[-last:]
            return "\n".join(_format_entry(e) for e in entries)

    def describe(self) -> str:
        """Name, pid, exit status and log tail, for failure messages."""
        pid = self.proc.pid if self.proc is not None else None
        code = self.proc.poll() if self.proc is not None else None
        status = "running" if code is None else f"exited with {code}"
        return f"{self.name} (pid {pid}, {status}); last log lines:\n{self.log_text(LOG_TAIL) or '(no log)'}"

    # -- waiting -------------------------------------------------------------

    def _check(self, ready: Callable[[], T | None], what: str, streams: tuple[str, ...]) -> T | None:
        """``ready()`` under the lock; raises if it is not and one of ``streams`` has ended."""
        with self._cond:
            got = ready()
            ended = got is None and any(self._eof[s] for s in streams)
        if ended:
            self._reap_briefly()
            raise AssertionError(f"{self.name} ended before {what}: {self.describe()}")
        return got

    def _reap_briefly(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1)

    def _wait(self, ready: Callable[[], T | None], timeout: float, what: str, streams: tuple[str, ...] = ("stderr",)) -> T:
        deadline = time.monotonic() + timeout
        while True:
            got = self._check(ready, what, streams)
            if got is not None:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what} from {self.describe()}")
            with self._cond:
                self._cond.wait(min(remaining, 1.0))

    async def _wait_async(self, ready: Callable[[], T | None], timeout: float, what: str, streams: tuple[str, ...] = ("stderr",)) -> T:
        with trio.move_on_after(timeout):
            while True:
                got = self._check(ready, what, streams)
                if got is not None:
                    return got
                await trio.sleep(0.01)  # the readers are threads: re-check each tick
        raise AssertionError(f"timed out after {timeout}s waiting for {what} from {self.describe()}")

    def _log_ready(self, text: str, count: int) -> Callable[[], dict[str, Any] | None]:
        def ready() -> dict[str, Any] | None:
            hits = [e for e in self.logs if text in str(e.get("msg", ""))]
            return hits[count - 1] if len(hits) >= count else None

        return ready

    def wait_log(self, text: str, timeout: float = 30.0, count: int = 1) -> dict[str, Any]:
        """Wait until ``count`` log lines contain ``text``; returns the ``count``-th."""
        return self._wait(self._log_ready(text, count), timeout, f"log line {text!r} (x{count})")

    async def wait_log_async(self, text: str, timeout: float = 30.0, count: int = 1) -> dict[str, Any]:
        return await self._wait_async(self._log_ready(text, count), timeout, f"log line {text!r} (x{count})")

    def _line_ready(self, index: int) -> Callable[[], str | None]:
        return lambda: self.lines[index] if len(self.lines) > index else None

    def wait_line(self, index: int = 0, timeout: float = 30.0) -> str:
        """Wait for stdout line ``index`` (from 0)."""
        return self._wait(self._line_ready(index), timeout, f"stdout line {index}", ("stdout",))

    async def wait_line_async(self, index: int = 0, timeout: float = 30.0) -> str:
        return await self._wait_async(self._line_ready(index), timeout, f"stdout line {index}", ("stdout",))

    # -- stopping ------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not launched"
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)  # type: ignore[union-attr]

    def kill(self) -> int:
        """SIGKILL its whole process group (a crash: no goodbye); returns the exit status."""
        assert self.proc is not None, "not launched"
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit status; SIGKILL after ``timeout`` seconds."""
        assert self.proc is not None, "not launched"
        self.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    async def stop_async(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None, "not launched"
        self.send_signal(sig)
        with trio.move_on_after(timeout):
            while self.proc.poll() is None:
                await trio.sleep(0.01)
            return self.proc.wait()
        return self.kill()

    def close(self, timeout: float = 10.0) -> None:
        """Stop it if it runs (SIGTERM, then SIGKILL to its group), and release its pipes. Idempotent."""
        if self.proc is None or self._closed:
            return
        if self.proc.poll() is None:
            self.stop(signal.SIGTERM, timeout)
        self._finish()

    async def aclose(self, timeout: float = 10.0) -> None:
        """:meth:`close` for trio code; completes even in a cancelled scope."""
        if self.proc is None or self._closed:
            return
        with trio.CancelScope(shield=True):
            if self.proc.poll() is None:
                await self.stop_async(signal.SIGTERM, timeout)
            self._finish()

    def _finish(self) -> None:
        assert self.proc is not None
        self._closed = True
        # Anything it left behind in its group goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for t in self._readers:
            t.join(timeout=5)
        self.close_stdin()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    # -- context managers ----------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await self.start_async()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _log_entry(text: str) -> dict[str, Any]:
    try:
        entry = json.loads(text)
    except ValueError:
        entry = None
    return entry if isinstance(entry, dict) else {"msg": text, "raw": True}


def _format_entry(entry: dict[str, Any]) -> str:
    if entry.get("raw"):
        return str(entry.get("msg", ""))
    text = f"{entry.get('level', '?')} {entry.get('logger', '?')}: {entry.get('msg', '')}"
    return f"{text}\n{entry['exc']}" if entry.get("exc") else text


class DaemonProcess(ChildProcess):
    """``agentp2p daemon`` as a user runs it, in a subprocess with its own home.

    ``HOME`` is ``home`` (see :func:`cli_env`), the identity is
    ``home/<name>.key`` unless ``identity`` says otherwise, the node listens
    on 127.0.0.1 with a port chosen by the OS and the control API on
    ``127.0.0.1:0`` — never the default ports, which belong to whatever
    daemon the machine's user runs. ``api=None`` leaves ``--api`` out (the
    default address, with its fallback); ``api="off"`` turns the API off.
    ``flags`` are more daemon flags; ``extra_env`` more environment;
    ``wrap`` a command that runs it elsewhere (``ip netns exec NS``).

    Ready once it printed its addresses and logged that it runs and (with
    the API) that the API listens. Then :attr:`addrs`, :attr:`peer_id`,
    :attr:`api_addr`, :attr:`token` and :meth:`client` say how to reach it.

        async with DaemonProcess(tmp_path, "--swim") as d:       # trio
            async with d.client() as client: ...
        with DaemonProcess(tmp_path / "b", name="b") as d:       # plain
            assert d.run_cli("status").returncode == 0
    """

    def __init__(
        self,
        home: str | Path,
        *flags: str,
        name: str = "identity",
        identity: str | Path | None = None,
        listen: str | None = LOCAL_LISTEN,
        api: str | None = "127.0.0.1:0",
        json_logs: bool = True,
        extra_env: Mapping[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.identity = Path(identity) if identity is not None else self.home / f"{name}.key"
        self.flags = list(flags)
        args = [*CLI, "daemon", "--identity", str(self.identity)]
        if listen is not None:
            args += ["--listen", listen]
        if json_logs:
            args.append("--json-logs")
        if api is not None:
            args += ["--api", api]
        args += self.flags
        super().__init__([*wrap, *args], env=cli_env(self.home, extra_env), name=f"daemon {name}")
        self.api_enabled = _flag_value(args, "--api") != "off"
        # At warning level or above the daemon logs nothing when it starts.
        self._quiet = _flag_value(args, "--log-level") in ("warning", "error")

    def _is_ready(self) -> bool:
        if not self.lines:
            return False
        if self._quiet:
            return not self.api_enabled or self.api_files[0].exists()
        logged = " ".join(str(e.get("msg", "")) for e in self.logs)
        return RUNNING_LOG in logged and (not self.api_enabled or API_READY_LOG in logged)

    @property
    def addrs(self) -> list[str]:
        """The full addresses it printed (``.../p2p/<peer id>``)."""
        return list(self.lines)

    @property
    def addr(self) -> str:
        return self.lines[0]

    @property
    def peer_id(self) -> str:
        return self.lines[0].rsplit("/p2p/", 1)[1]

    @property
    def port(self) -> int:
        return int(self.lines[0].split("/tcp/", 1)[1].split("/", 1)[0])

    @property
    def api_files(self) -> tuple[Path, Path]:
        """``(api.addr, api.token)`` files, named after the identity as the daemon names them."""
        from agentp2p.client.discovery import api_files

        addr_file, token_file = api_files(self.identity)
        token_flag = _flag_value(self.flags, "--api-token-file")
        return addr_file, Path(token_flag).expanduser() if token_flag else token_file

    @property
    def api_addr(self) -> str:
        """The control API address it bound (``HOST:PORT`` or ``unix:/path``)."""
        return self.api_files[0].read_text().strip()

    @property
    def token(self) -> str:
        return self.api_files[1].read_text().strip()

    def client_args(self) -> list[str]:
        """CLI flags that pick this daemon (``agentp2p status *client_args()``)."""
        return ["--identity", str(self.identity)]

    def client(self, **kwargs: Any) -> Any:
        """An async :class:`agentp2p.client.Client` for its API (``async with d.client() as c``)."""
        from agentp2p.client import Client

        return Client(self.api_addr, token=self.token, **kwargs)

    def sync_client(self, **kwargs: Any) -> Any:
        """A blocking :class:`agentp2p.client.SyncClient` for its API."""
        from agentp2p.client import SyncClient

        return SyncClient(self.api_addr, token=self.token, **kwargs)

    def run_cli(self, *args: str, timeout: float = 60.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """``agentp2p *args`` talking to this daemon (its home, ``--identity``)."""
        return run_cli(self.home, *args, *self.client_args(), timeout=timeout, input=input, env=self.env)


class DevnetProcess(ChildProcess):
    """``agentp2p devnet --json`` in a subprocess, its workers' logs in ``home/logs``
    (the devnet tests and ``benchmarks/devnet_scale.py``).

    Interactive (``stdin=True``, the default): :meth:`command` types a command
    and returns its ``result`` event. Ready once the network is up and
    settled (the ``ready`` event, or the ``info`` event saying it is not).
    """

    def __init__(self, home: Path, *, nodes: int, procs: int, flags: Sequence[str] = (), stdin: bool = True,
                 ready_timeout: float = 180.0, env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        home.mkdir(parents=True, exist_ok=True)
        args = [*CLI, "devnet", "--nodes", str(nodes), "--procs", str(procs), "--json",
                "--log-dir", str(home / "logs"), *flags]  # fmt: skip
        env = cli_env(home) if env is None else env  # (cli_env: none of our own AGENTP2P_* settings)
        super().__init__(args, env=env, name=f"devnet {nodes}x{procs}", stdin=stdin)
        self.home = home
        self.ready_timeout = ready_timeout
        self._results_seen = 0

    def __enter__(self) -> Self:
        return self.start(self.ready_timeout)

    def events(self) -> list[dict[str, Any]]:
        """Every JSON object it printed so far, in order."""
        with self._cond:
            lines = list(self.lines)
        out = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def _is_ready(self) -> bool:
        return any(e["event"] == "ready" or (e["event"] == "info" and "no_mesh" in e) for e in self.events())

    def wait_event(self, match: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """The first event ``match`` accepts, once there is one."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events() if match(e)), None)

        return self._wait(found, timeout, what, ("stdout",))

    def event(self, name: str) -> dict[str, Any]:
        """The first ``name`` event printed so far (StopIteration if none)."""
        return next(e for e in self.events() if e["event"] == name)

    def command(self, line: str, timeout: float = 120.0) -> dict[str, Any]:
        """Type ``line``; its result (commands run one at a time, so results come in order)."""
        self.send_line(line)
        index = self._results_seen
        self._results_seen += 1

        def result() -> dict[str, Any] | None:
            results = [e for e in self.events() if e["event"] == "result"]
            return results[index] if len(results) > index else None

        got = self._wait(result, timeout, f"the result of {line!r}", ("stdout",))
        if got["command"] != line:
            raise AssertionError(f"the result of {got['command']!r} while waiting for {line!r}")
        return got

    def worker_pids(self) -> list[int]:
        return [int(w["pid"]) for w in self.event("workers")["workers"]]

    def finish(self, timeout: float = 90.0) -> int | None:
        """End its input, so that it stops every worker itself, and wait up
        to ``timeout`` seconds for it to exit; then :meth:`close` (SIGTERM,
        then SIGKILL). Its exit status (None if it was never launched)."""
        if self.proc is None:
            return None
        self.close_stdin()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        self.close()
        return self.proc.poll()


class started_together(Generic[C]):
    """Several children started in parallel (a start is mostly Python
    imports), all closed on exit: ``with started_together(a, b) as (a, b)``,
    or ``async with``."""

    def __init__(self, *children: C, timeout: float = 60.0) -> None:
        self.children = list(children)
        self.timeout = timeout

    def _close(self) -> None:
        for child in self.children:
            child.close()

    def __enter__(self) -> list[C]:
        try:
            for child in self.children:
                child.launch()
            for child in self.children:
                child.wait_ready(self.timeout)
        except BaseException:
            self._close()
            raise
        return self.children

    def __exit__(self, *exc: object) -> None:
        self._close()

    async def __aenter__(self) -> list[C]:
        try:
            for child in self.children:
                child.launch()
            for child in self.children:
                await child.wait_ready_async(self.timeout)
        except BaseException:
            for child in self.children:
                await child.aclose()
            raise
        return self.children

    async def __aexit__(self, *exc: object) -> None:
        for child in self.children:
            await child.aclose()


def poll_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition", interval: float = 0.05,
               detail: Callable[[], str] | None = None) -> None:  # fmt: skip
    """Blocking :func:`wait_until`, for plain tests polling another process's
    state (there is no event to wait on across processes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(timeout, what, detail))
        time.sleep(interval)
