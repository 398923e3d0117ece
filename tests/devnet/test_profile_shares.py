"""benchmarks/profiling.py: reading py-spy's raw stacks into CPU shares."""

from __future__ import annotations

from pathlib import Path

from benchmarks.profiling import PySpy, node_shares

ROOT = "<module> (agentp2p/devnet/worker.py:424);main (agentp2p/devnet/worker.py:420);run (trio/_core/_run.py:2532);unrolled_run (trio/_core/_run.py:2866)"
SWIM_READ = (ROOT + ";SwimTransport._reader (agentp2p/protocol/swim/transport.py:399);_HeardStream.read (agentp2p/network/inbound.py:79)"
             ";YamuxStream.read (libp2p/stream_muxer/yamux/yamux.py:300)")
SWIM_VERIFY = (ROOT + ";SwimTransport._reader (agentp2p/protocol/swim/transport.py:399);SwimCore.handle (agentp2p/protocol/swim/core.py:531)"
               ";ed25519_verify (agentp2p/protocol/swim/crypto.py:34)")
SCHEDULER = ROOT + ";Runner.reschedule (trio/_core/_run.py:1919)"
IDLE = ROOT + ";EpollIOManager.get_events (trio/_core/_io_epoll.py:245)"


def test_shares_by_work_owner_and_task(tmp_path: Path) -> None:
    raw = tmp_path / "merge-worker0.txt"
    raw.write_text(f"{SWIM_READ} 6\n{SWIM_VERIFY} 2\n{SCHEDULER} 2\n{IDLE} 90\nnot a stack line\n")
    s = node_shares(raw, rate=100, seconds=1.0)
    assert s["busy_samples"] == 10 and s["busy_pct_of_a_core"] == 10.0  # idle samples are not CPU
    assert s["work"] == {"yamux": 60.0, "verify/sign": 20.0, "trio scheduling": 20.0}
    # Owner: the first agentp2p package from the leaf up, not the worker's
    # main above trio's run loop; the scheduler itself is its own.
    assert s["owner"] == {"network": 60.0, "swim": 20.0, "trio scheduling": 20.0}
    assert s["task"] == {"SwimTransport._reader (agentp2p/protocol/swim/transport.py)": 80.0, "trio scheduler": 20.0}


def test_no_file_and_no_py_spy_give_empty_results(tmp_path: Path) -> None:
    assert node_shares(tmp_path / "missing.txt", rate=100, seconds=2.0)["busy_samples"] == 0
    spy = PySpy(tmp_path, "idle")
    spy.py_spy = None  # as on a machine without py-spy
    spy.start({"worker0": 1})
    assert spy.stop() == {}


def test_a_recording_that_could_not_attach_says_why(tmp_path: Path) -> None:
    """py-spy that fails at once (here: a stand-in that complains and
    exits 1, as py-spy does when ptrace is refused) leaves no samples: the
    result carries its exit code and last line, not just a quiet zero."""
    fake = tmp_path / "py-spy"
    fake.write_text("#!/bin/sh\necho 'Permission denied (os error 13)' >&2\nexit 1\n")
    fake.chmod(0o755)
    spy = PySpy(tmp_path, "merge", py_spy=str(fake))
    spy.start({"worker0": 1})
    spy.procs[0][2].wait(10)  # it gave up before the window ended, as a refused attach does
    r = spy.stop()["worker0"]
    assert r["busy_samples"] == 0 and r["py_spy_rc"] == 1 and "Permission denied" in r["py_spy_said"]
