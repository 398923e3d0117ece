"""py-libp2p's routine peer failures reach a library user's logs only at DEBUG.

The library's behaviour: its module loggers emit WARNING/ERROR records per
peer event (here: a dial to an address where nothing listens). Ours: once a
node is built, those records are demoted — invisible at INFO, shown as DEBUG
when the application asks for libp2p's debug output.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from agentp2p.network.identity import Identity
from agentp2p.network.library_logs import LibraryLogDemotion, demote_library_logs
from agentp2p.node import Node
from agentp2p.testing import local_config


def _libp2p_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("libp2p")]


async def _failed_dial(node: Node) -> None:
    ghost = Identity.generate().peer_id
    # The library's own dial path (not our dialer): its TCP layer logs the failure.
    node.host.get_peerstore().add_addrs(ghost, [Multiaddr("/ip4/127.0.0.1/tcp/9")], 60)
    with pytest.raises(Exception):
        await node.host.connect(PeerInfo(ghost, [Multiaddr("/ip4/127.0.0.1/tcp/9")]))


async def test_library_failure_lines_are_demoted(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBP2P_DEBUG", raising=False)
    # As a fresh process has it after ``import libp2p`` (see the test below);
    # building a node turns propagation on, so caplog (at the root) hears it.
    monkeypatch.setattr(logging.getLogger("libp2p"), "propagate", False)
    caplog.set_level(logging.INFO)
    async with Node(local_config(swim=False)) as node:
        # What py-libp2p does on its own: remove our filter from its loggers.
        demoted = [logging.getLogger(n) for n in logging.Logger.manager.loggerDict if n.startswith("libp2p")]
        filters = {lg.name: [f for f in lg.filters if isinstance(f, LibraryLogDemotion)] for lg in demoted}
        for lg in demoted:
            for f in filters[lg.name]:
                lg.removeFilter(f)
        try:
            await _failed_dial(node)
            library = [r for r in _libp2p_records(caplog) if r.levelno >= logging.WARNING]
            assert library, "no py-libp2p WARNING/ERROR for a failed dial reached the root: the premise changed, or propagation is off"
        finally:
            demote_library_logs()
        caplog.clear()
        await _failed_dial(node)
        assert [r for r in _libp2p_records(caplog) if r.levelno >= logging.INFO] == []
        # Asked for libp2p's debug output: the same lines, as DEBUG.
        caplog.set_level(logging.DEBUG, logger="libp2p")
        caplog.clear()
        await _failed_dial(node)
        lines = _libp2p_records(caplog)
        assert lines and all(r.levelno == logging.DEBUG for r in lines)


def test_the_library_keeps_its_records_from_the_applications_handlers_and_a_node_does_not() -> None:
    """py-libp2p's import leaves its root logger with no handler and
    propagate False: the application's handlers never see its lines, so
    asking for libp2p's debug output showed nothing. A node turns
    propagation back on; the demotion filter still decides what passes."""
    probe = (
        "import logging\n"
        "import libp2p\n"
        "lg = logging.getLogger('libp2p')\n"
        "print(lg.propagate, len(lg.handlers))\n"
        "from agentp2p.network.library_logs import demote_library_logs\n"
        "demote_library_logs()\n"
        "print(lg.propagate, len(lg.handlers))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LIBP2P_DEBUG"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env, check=True)
    assert out.stdout.split("\n")[:2] == ["False 0", "True 0"], out
