"""The collector settings of a node process (agentp2p/gc_policy.py): the startup heap is
frozen and full collections are spaced out — in the daemon, and nowhere the library runs
on its own. Each check runs in a fresh interpreter: the policy is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agentp2p.testing import DaemonProcess

_PROBE = """
import gc, json
before = {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}
import agentp2p.node
from agentp2p import gc_policy
from agentp2p.testing import local_config
agentp2p.node.Node(local_config())  # building a node leaves the collector alone
built = {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}
n = gc_policy.apply()
after = {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(), "returned": n,
         "tracked": len(gc.get_objects())}
print(json.dumps({"before": before, "built": built, "after": after}))
"""


def test_apply_freezes_the_imported_heap_and_spaces_out_full_collections() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout)
    default = list(got["before"]["threshold"])
    assert got["before"]["frozen"] == 0
    assert got["built"] == got["before"], "the library must not touch the collector by itself"
    after = got["after"]
    assert after["returned"] == after["frozen"]
    # The imports alone leave tens of thousands of containers; none is walked again.
    assert after["frozen"] > 20_000 > after["tracked"]
    assert after["threshold"] == [default[0], default[1], 100]


async def test_the_daemon_applies_it_before_the_node_starts(tmp_path: Path) -> None:
    async with DaemonProcess(tmp_path, "--log-level", "debug", api="off") as daemon:
        await daemon.wait_log_async("startup objects frozen", 20)
        entry = next(e for e in daemon.logs if "startup objects frozen" in str(e.get("msg", "")))
        frozen = int(str(entry["msg"]).split("garbage collector: ", 1)[1].split()[0])
        assert frozen > 20_000
        assert await daemon.stop_async(timeout=10) == 0
