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


def lab_daemon(lab: NatLab, tmp: Path, name: str, *flags: str, env: dict[str, str] | None = None) -> DaemonProcess:
    """``agentp2p daemon`` inside ``name``'s namespace, listening on its address."""
    host = lab.hosts[name]
    return DaemonProcess(
        tmp / name, *flags, name=name, listen=f"/ip4/{host.ip}/tcp/4001", api=f"unix:{tmp / name}.sock",
        extra_env={**FAST_AUTONAT, **(env or {})}, wrap=lab.exec_args(host),
    )


def stats(d: DaemonProcess) -> dict:
    with d.sync_client() as c:
        return c.stats()
