"""The collector settings of a node process (agentp2p/gc_policy.py): the startup heap is
frozen, young collections and full ones are spaced out — in the daemon, and nowhere the library runs
on its own. Each check runs in a fresh interpreter: the policy is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agentp2p import gc_policy
from agentp2p.testing import RUNNING_LOG, DaemonProcess

_PROBE = """
import gc, json, trio
before = {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}
from agentp2p.node import Node
from agentp2p import gc_policy
from agentp2p.testing import local_config

async def run_a_node():
    async with Node(local_config()):
        pass

trio.run(run_a_node)  # a node started and stopped leaves the collector alone
ran = {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}
n = gc_policy.apply()
after = {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(), "returned": n,
         "tracked": len(gc.get_objects())}
print(json.dumps({"before": before, "ran": ran, "after": after}))
"""


def test_apply_freezes_the_imported_heap_and_spaces_out_full_collections() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout)
    default = list(got["before"]["threshold"])
    assert got["before"]["frozen"] == 0
    assert got["ran"] == got["before"], "the library must not touch the collector by itself"
    after = got["after"]
    assert after["returned"] == after["frozen"]
    # The imports alone leave tens of thousands of containers; none is walked again.
    assert after["frozen"] > 20_000 > after["tracked"]
    if default[2] > 0:  # a generational collector (CPython's incremental one has no third threshold)
        assert after["threshold"] == [max(default[0], gc_policy.YOUNG_COLLECTION_SPACING), default[1],
                                      gc_policy.FULL_COLLECTION_SPACING]


def _frozen_log(daemon: DaemonProcess) -> int | None:
    """Index in the daemon's log of the "startup objects frozen" line (None: absent)."""
    return next((k for k, e in enumerate(daemon.logs) if "startup objects frozen" in str(e.get("msg", ""))), None)


async def test_the_daemon_applies_it_before_the_node_starts(tmp_path: Path) -> None:
    async with DaemonProcess(tmp_path, "--log-level", "debug", api="off") as daemon:
        at = _frozen_log(daemon)
        assert at is not None, "the daemon did not freeze its startup heap"
        running = next(k for k, e in enumerate(daemon.logs) if RUNNING_LOG in str(e.get("msg", "")))
        assert at < running
        frozen = int(str(daemon.logs[at]["msg"]).split("garbage collector: ", 1)[1].split()[0])
        assert frozen > 20_000
        assert await daemon.stop_async(timeout=10) == 0


async def test_the_daemon_leaves_the_defaults_when_told(tmp_path: Path) -> None:
    env = {"AGENTP2P_GC_POLICY": "false"}
    async with DaemonProcess(tmp_path, "--log-level", "debug", api="off", extra_env=env) as daemon:
        assert _frozen_log(daemon) is None
        assert any("CPython's defaults" in str(e.get("msg", "")) for e in daemon.logs)
        assert await daemon.stop_async(timeout=10) == 0
