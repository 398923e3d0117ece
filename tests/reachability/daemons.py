"""Daemons in the NAT lab: one per namespace, its control API on a unix socket
(which crosses namespaces), settings that keep a test short."""

from __future__ import annotations

from pathlib import Path

from agentp2p.testing import DaemonProcess
from tests.reachability.natlab import NatLab

#: Faster than the defaults, same behaviour: a quick first question, a short
#: dial-back deadline, one agreeing server (tests say otherwise where it matters).
FAST_AUTONAT = {
    "AGENTP2P_AUTONAT__CONFIRMATIONS": "1",
    "AGENTP2P_AUTONAT__BOOT_DELAY": "0.2",
    "AGENTP2P_AUTONAT__DIAL_TIMEOUT": "3",
    "AGENTP2P_AUTONAT__REQUEST_TIMEOUT": "8",
    "AGENTP2P_SWIM": "false",
}


def lab_daemon(lab: NatLab, tmp: Path, name: str, *flags: str, env: dict[str, str] | None = None,
               host: str | None = None, port: int = 4001) -> DaemonProcess:
    """``agentp2p daemon`` ``name`` inside the namespace of lab host ``host``
    (default: the host called ``name``), listening on its address at ``port``."""
    where = lab.hosts[host or name]
    return DaemonProcess(
        tmp / name, *flags, name=name, listen=f"/ip4/{where.ip}/tcp/{port}", api=f"unix:{tmp / name}.sock",
        extra_env={**FAST_AUTONAT, **(env or {})}, wrap=lab.exec_args(where),
    )


def stats(d: DaemonProcess) -> dict:
    with d.sync_client() as c:
        return c.stats()
