"""SWIM is running when ``async with Node(...)`` returns.

The service loads its incarnation from disk in a worker thread before it
builds its core; until then frames are dropped (``frames_before_start``).
When the node's ``async with`` returned before that, a peer's first frames
could be lost and ``incarnation`` read 0: the race behind a flaky
tests/adversarial/test_swim_poison.py run in CI. The service now reports
readiness (``task_status``) and the node waits for it.
"""

from __future__ import annotations

from pathlib import Path

import trio

from agentp2p.node import Node
from agentp2p.protocol.swim.persist import incarnation_path
from agentp2p.protocol.swim.service import SwimService
from agentp2p.testing import local_config

from tests.adversarial.swim_attacker import FAST


class SlowDiskSwim(SwimService):
    """Loads its incarnation as a slow disk would (the delay stands in for
    the thread hop under load; it makes the old race certain)."""

    async def _load_incarnation(self, node):  # type: ignore[no-untyped-def]
        await trio.sleep(0.3)
        return await super()._load_incarnation(node)


async def test_node_returns_with_swim_running_and_its_incarnation_loaded(tmp_path: Path) -> None:
    ident = tmp_path / "identity.key"
    async with Node(local_config(identity_path=ident), services=[SwimService(FAST)]):
        pass
    stored = int(incarnation_path(ident).read_text())
    svc = SlowDiskSwim(FAST)
    async with Node(local_config(identity_path=ident), services=[svc]):
        assert svc.started
        assert svc.incarnation == stored + 1
        assert svc.stats()["frames_before_start"] == 0
