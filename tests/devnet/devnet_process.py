"""``agentp2p devnet --json`` as a child process, for the devnet tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentp2p.testing import CLI, ChildProcess, cli_env


class DevnetProcess(ChildProcess):
    """A devnet with ``--json`` output, its workers' logs in ``home/logs``.

    Interactive (``stdin=True``, the default): :meth:`command` types a command
    and returns its ``result`` event. Ready once the network is up and
    settled (the ``ready`` event, or the ``info`` event saying it is not).
    """

    def __init__(self, home: Path, *, nodes: int, procs: int, flags: Sequence[str] = (), stdin: bool = True,
                 ready_timeout: float = 180.0) -> None:  # fmt: skip
        home.mkdir(parents=True, exist_ok=True)
        args = [*CLI, "devnet", "--nodes", str(nodes), "--procs", str(procs), "--json",
                "--log-dir", str(home / "logs"), *flags]  # fmt: skip
        super().__init__(args, env=cli_env(home), name=f"devnet {nodes}x{procs}", stdin=stdin)
        self.home = home
        self.ready_timeout = ready_timeout
        self._results_seen = 0

    def __enter__(self) -> DevnetProcess:
        return self.start(self.ready_timeout)

    def events(self) -> list[dict[str, Any]]:
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
        def found() -> dict[str, Any] | None:
            return next((e for e in self.events() if match(e)), None)

        return self._wait(found, timeout, what, ("stdout",))

    def event(self, name: str) -> dict[str, Any]:
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
        assert got["command"] == line, (got, line)
        return got

    def worker_pids(self) -> list[int]:
        return [int(w["pid"]) for w in self.event("workers")["workers"]]
