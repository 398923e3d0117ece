"""Where a whole node's CPU goes: py-spy attached to running processes.

``PySpy`` samples some processes (``py-spy record --format raw``) for a
window of a benchmark; ``read_raw`` reads such a file (pubsub_compare.py
classifies its stacks its own way), and ``node_shares`` reads it into three
views:

* **work**: what the CPU was doing, decided by the first frame from the leaf
  up that matches (signature checks, Noise, Yamux, protobuf, logging, trio's
  scheduler, ...);
* **owner**: the innermost agentp2p package on the stack (SWIM, pub/sub,
  Kademlia, records, messaging, network, the devnet worker), or py-libp2p's
  host when the task has no agentp2p frame. Wrappers claim their callers'
  work: SWIM's reader reading through ``agentp2p/network/`` counts as
  network;
* **task**: the task it ran in, by its entry function (the twelve largest):
  so the stream plumbing a SWIM reader runs counts for that reader.

py-spy counts a sample while a thread is not asleep, so on a machine whose
cores are taken by others its shares lean towards whatever waited for a CPU.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: (label, file path fragments) in the order they are tried on one frame.
_WORK = (
    ("verify/sign", ("nacl/", "ed25519", "/signature.py", "/crypto.py")),
    ("noise", ("security/noise", "cryptography/", "/noise/")),
    ("yamux", ("yamux", "stream_muxer")),
    ("protobuf", ("google/protobuf", "_pb2.py")),
    ("logging", ("/logging/",)),
    ("tcp", ("transport/tcp", "libp2p/io/", "trio/_socket", "trio/_highlevel_socket")),
    ("multistream/identify", ("multiselect", "identity/identify", "multistream")),
)

#: agentp2p packages that own work, most specific first.
_OWNERS = (
    ("swim", "agentp2p/protocol/swim/"),
    ("pub/sub", "agentp2p/protocol/gossipsub/"),
    ("pub/sub", "agentp2p/protocol/pubsub"),
    ("kademlia", "agentp2p/protocol/kademlia/"),
    ("records", "agentp2p/application/records/"),
    ("messaging", "agentp2p/messaging/"),
    ("devnet worker", "agentp2p/devnet/"),
    ("network", "agentp2p/network/"),
    ("security", "agentp2p/security/"),
    ("other agentp2p", "agentp2p/"),
)


def _split(frame: str) -> tuple[str, str]:
    fn, _, where = frame.rpartition(" (")
    return fn, where.rsplit(":", 1)[0]


def work_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        fn, file = _split(frame)
        if fn == "EpollIOManager.get_events":
            return "idle"  # epoll_wait: py-spy does not always see the thread sleep
        for label, parts in _WORK:
            if any(p in file for p in parts):
                return label
        if "trio/" in file and fn not in ("run", "unrolled_run"):
            return "trio scheduling"
        if "agentp2p/" in file or "libp2p/" in file:
            return "python (ours or the host's)"
    return "other"


def _task(frames: list[str]) -> list[str]:
    # The task's own frames: the ones above trio's run loop are the
    # process's entry point (the devnet worker's main), not who asked.
    start = max((i + 1 for i, f in enumerate(frames) if _split(f)[0] == "unrolled_run"), default=0)
    return frames[start:]


def task_of(frames: list[str]) -> str:
    """The task the sample ran in, by its entry function: the first frame
    under trio's run loop (a Yamux connection's reader, SWIM's stream
    reader, a gossipsub peer's loop...), or the scheduler itself."""
    task = _task(frames)
    fn, file = _split(task[0]) if task else ("", "trio/_core/")
    if "trio/_core/" in file:  # deadlines expiring, tasks rescheduled: the run loop itself
        return "trio scheduler"
    return f"{fn} ({file})"


def owner_of(frames: list[str]) -> str:
    task = _task(frames)
    for frame in reversed(task):
        _, file = _split(frame)
        for label, part in _OWNERS:
            if part in file:
                return label
    if any("libp2p/" in _split(f)[1] for f in task):
        return "py-libp2p host"
    if not task or all("trio/" in _split(f)[1] for f in task):
        return "trio scheduling"
    return "other"


def read_raw(path: Path) -> Iterator[tuple[list[str], int]]:
    """The stacks of a ``py-spy record --format raw`` file (root first,
    ``function (file:line)`` frames) with their sample counts; nothing if
    the file is missing (py-spy could not attach)."""
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                yield stack.split(";"), int(count)


def node_shares(path: Path, rate: float, seconds: float) -> dict[str, Any]:
    """Shares (%) of the busy samples by work, owner and task, and the busy
    samples as a share of one core over the window (py-spy records no
    sample while the process sleeps; one that waits for a core counts)."""
    work: Counter[str] = Counter()
    owner: Counter[str] = Counter()
    task: Counter[str] = Counter()
    for frames, k in read_raw(path):
        w = work_of(frames)
        if w == "idle":
            continue
        work[w] += k
        owner[owner_of(frames)] += k
        task[task_of(frames)] += k
    busy = sum(work.values())
    out: dict[str, Any] = {"seconds": round(seconds, 1), "busy_samples": busy,
                           "busy_pct_of_a_core": round(100 * busy / max(rate * seconds, 1e-9), 1)}
    if busy:
        out["work"] = {k: round(100 * v / busy, 1) for k, v in work.most_common()}
        out["owner"] = {k: round(100 * v / busy, 1) for k, v in owner.most_common()}
        out["task"] = {k: round(100 * v / busy, 1) for k, v in task.most_common(12)}
    return out


class PySpy:
    """``py-spy record`` on some processes until ``stop()``; no-op without py-spy."""

    def __init__(self, out_dir: Path, label: str, py_spy: str | None = None) -> None:
        beside = Path(sys.executable).parent / "py-spy"  # a venv's, run without activating it
        self.py_spy = py_spy or shutil.which("py-spy") or (str(beside) if beside.exists() else None)
        self.out_dir, self.label = out_dir, label
        self.procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        self.rate, self.t0 = 100, 0.0

    def start(self, targets: dict[str, int], rate: int = 100) -> None:
        if not self.py_spy:
            return
        self.rate, self.t0 = rate, time.monotonic()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in targets.items():
            out = self.out_dir / f"{self.label}-{name}.txt"
            with (self.out_dir / f"{self.label}-{name}.err").open("wb") as err:  # why it could not attach, say
                proc = subprocess.Popen(
                    [self.py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--format", "raw",
                     "--output", str(out)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
            self.procs.append((name, out, proc))

    def stop(self) -> dict[str, Any]:
        """End every recording (all at once: one window for all) and read them."""
        seconds = time.monotonic() - self.t0
        for _, _, proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        result: dict[str, Any] = {}
        for name, out, proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            shares = node_shares(out, self.rate, seconds)
            if not shares["busy_samples"]:  # attached at all? (ptrace rules, a process gone)
                err = out.with_suffix(".err")
                lines = err.read_text(errors="replace").strip().splitlines() if err.exists() else []
                shares.update(py_spy_rc=proc.returncode, py_spy_said=lines[-1] if lines else "")
            result[name] = {"file": str(out), **shares}
        self.procs = []
        return result

    def kill(self) -> None:
        """Stop whatever still records, without reading it (cleanup)."""
        for _, _, proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        self.procs = []
