"""What the devnet prints, and where its commands come from.

Output: text for people (a progress line that rewrites itself on a
terminal, then summary lines and command results), or with ``--json`` one
JSON object per line, each with an ``event``: ``workers``, ``progress``,
``up``, ``converged``, ``summary``, ``result``, ``info``, ``error``,
``stopped``, ``dashboard``. A script reads the second without parsing prose.

Input: stdin lines, read in a thread (a terminal's stdin must stay
blocking for the shell afterwards); end of input is ``quit``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, TextIO

import trio

__all__ = ["Console", "stdin_lines"]

#: On a pipe, a progress line at most this often (a terminal gets every change).
PROGRESS_EVERY = 2.0


class Console:
    def __init__(self, *, json_mode: bool, out: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.tty = self.out.isatty() and not json_mode
        self._progress_at = 0.0
        self._progress_open = False

    def _write(self, text: str) -> None:
        if self._progress_open:  # end the rewritten progress line first
            text = "\n" + text
            self._progress_open = False
        self.out.write(text + "\n")
        self.out.flush()

    def event(self, event: str, text: str, **data: Any) -> None:
        """One line: ``text`` for people, ``{"event": event, **data}`` with --json."""
        if self.json_mode:
            self._write(json.dumps({"event": event, **data}, default=str))
        else:
            self._write(text)

    def progress(self, up: int, total: int, failed: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and not self.tty and now - self._progress_at < PROGRESS_EVERY:
            return
        self._progress_at = now
        text = f"nodes up {up}/{total}" + (f" ({failed} failed)" if failed else "")
        if self.json_mode:
            self._write(json.dumps({"event": "progress", "up": up, "total": total, "failed": failed}))
        elif self.tty and not final:
            self.out.write("\r" + text)
            self.out.flush()
            self._progress_open = True
        else:
            if self.tty:
                self.out.write("\r")
                self._progress_open = False
            self._write(text)

    def result(self, line: str, ok: bool, text: str, **data: Any) -> None:
        """A command's outcome."""
        if self.json_mode:
            self._write(json.dumps({"event": "result", "command": line, "ok": ok, **data}, default=str))
        else:
            self._write(("" if ok else "error: ") + text)


async def stdin_lines() -> AsyncIterator[str]:
    """Lines typed (or piped) on stdin, until end of input."""
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        if not line:
            return
        yield line
