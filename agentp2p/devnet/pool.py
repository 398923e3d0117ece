"""The controller's side of the worker processes: start them, ask them things,
pause them, and make sure every one of them ends.

Each worker is ``python -m agentp2p.devnet.worker`` in a session of its own
(so a terminal's Ctrl-C reaches only the controller, which then stops the
workers in order), with its stdin and stdout as the request/reply pipes of
:mod:`agentp2p.devnet.wire` and its stderr in a log file (``--log-dir``)
or discarded.

Ending, in order: SIGCONT (a paused worker cannot read its stdin), close
its stdin (it stops its nodes and exits), wait up to ``grace`` seconds,
then SIGKILL its process group. A worker also ends by itself when the
controller dies, however it dies (see :mod:`agentp2p.devnet.worker`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import trio

from agentp2p.devnet.wire import LineReader, WireError, encode

__all__ = ["WorkerError", "WorkerGone", "WorkerHandle", "process_cpu_s"]

#: How long a worker may take to import everything and say it is ready.
READY_TIMEOUT = 120.0


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far, from
    ``/proc/PID/stat`` (a zombie's too; 0 if there is none or it is gone).
    The devnet's summaries read it for each worker; the benchmarks for the
    processes they start."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class WorkerError(Exception):
    """A worker answered a request with an error (the message is its own)."""


class WorkerGone(WorkerError):
    """The worker exited (or its pipes broke) before answering."""


class _Call:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: dict[str, Any] | None = None


class WorkerHandle:
    """One worker process holding the nodes ``nodes``."""

    def __init__(self, index: int, nodes: range, args: Sequence[str], log_file: Path | None = None) -> None:
        self.index = index
        self.nodes = nodes
        self._args = list(args)
        self._log_file = log_file
        self.proc: trio.Process | None = None
        self.pid: int | None = None
        self.paused = False
        self.gone = False
        self._calls: dict[int, _Call] = {}
        self._ids = itertools.count(1)
        self._send_lock = trio.Lock()

    def __repr__(self) -> str:
        return f"worker {self.index} (pid {self.pid}, nodes {self.nodes.start}-{self.nodes.stop - 1})"

    # -- starting -------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Spawn the worker and wait for its ready line; its reply reader runs in ``nursery``."""
        log: BinaryIO | int = subprocess.DEVNULL
        if self._log_file is not None:
            log = open(self._log_file, "ab")  # noqa: SIM115 — the child holds it; we close our copy below
        try:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "agentp2p.devnet.worker", *self._args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True,  # Ctrl-C in a terminal reaches the controller only
            )  # fmt: skip
        finally:
            if not isinstance(log, int):
                log.close()
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        reader = LineReader(self.proc.stdout)
        with trio.move_on_after(READY_TIMEOUT):
            first = await reader.next()
            if first is None or not first.get("ready"):
                raise WorkerGone(f"{self!r} exited before it was ready (exit status {self.proc.poll()})")
            nursery.start_soon(self._read_replies, reader, name=f"devnet worker {self.index} replies")
            return
        raise WorkerGone(f"{self!r} was not ready within {READY_TIMEOUT:g}s")

    async def _read_replies(self, reader: LineReader) -> None:
        try:
            while (reply := await reader.next()) is not None:
                call = self._calls.pop(int(reply.get("id", -1)), None)
                if call is not None:  # else: its caller gave up waiting
                    call.reply = reply
                    call.done.set()
        except (WireError, trio.ClosedResourceError, trio.BrokenResourceError, OSError):
            pass
        finally:
            self.gone = True
            for call in self._calls.values():
                call.done.set()
            self._calls.clear()

    # -- requests -------------------------------------------------------------------

    async def request(self, op: str, timeout: float | None = 30.0, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply (``ok`` true), at most ``timeout`` seconds.

        Raises :class:`WorkerError` with the worker's message, :class:`WorkerGone`,
        or ``trio.TooSlowError``.
        """
        if self.gone or self.proc is None or self.proc.stdin is None:
            raise WorkerGone(f"{self!r} is gone")
        if self.paused:
            raise WorkerError(f"{self!r} is paused (resume it first)")
        rid = next(self._ids)
        call = self._calls[rid] = _Call()
        try:
            with trio.fail_after(timeout if timeout is not None else float("inf")):
                async with self._send_lock:
                    await self.proc.stdin.send_all(encode({"id": rid, "op": op, **fields}))
                await call.done.wait()
        except (trio.ClosedResourceError, trio.BrokenResourceError, OSError) as exc:
            raise WorkerGone(f"{self!r}: {exc}") from None
        finally:
            self._calls.pop(rid, None)
        reply = call.reply
        if reply is None:
            raise WorkerGone(f"{self!r} exited before answering {op}")
        if not reply.get("ok"):
            raise WorkerError(str(reply.get("error", "failed")))
        return reply

    # -- pause, resume, CPU -----------------------------------------------------------

    def pause(self) -> None:
        """SIGSTOP: every node of the worker freezes (sockets stay open, nothing is read)."""
        if self.pid is not None and not self.gone:
            os.kill(self.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.pid is not None and self.paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def cpu_s(self) -> float:
        """User + system CPU seconds of the worker so far (0 once it is gone)."""
        return process_cpu_s(self.pid)

    def rss_mb(self) -> float:
        """The worker's resident memory now, in MiB (0 once it is gone)."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except (OSError, IndexError, ValueError, TypeError):
            pass
        return 0.0

    # -- stopping ---------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """End the worker (see the module doc); returns once it has exited. Shielded."""
        proc = self.proc
        if proc is None:
            return
        with trio.CancelScope(shield=True):
            self.resume()
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                await proc.stdin.aclose()
            with trio.move_on_after(grace):
                await proc.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # it, if it lingers, and anything it left in its group
            with trio.move_on_after(5):
                await proc.wait()
            with contextlib.suppress(Exception):
                await proc.aclose()
