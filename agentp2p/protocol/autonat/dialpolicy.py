"""Which addresses a server dials back for a request: the spec's safety rule.

AutoNAT v1 says a server MUST NOT dial an address that is not based on the
IP it observed the asker at; otherwise anyone could point many servers at
a victim (RFC 3489 §12.1.1, the reflection attack). So each claimed
address is dialed on the observed IP, keeping its transport and port: a
node behind a NAT claiming ``/ip4/10.1.0.2/tcp/4001`` is dialed at its
router's ``/ip4/<observed>/tcp/4001``, which fails unless the port is
forwarded — exactly the question asked.

Refused outright: a request over a relayed connection (no IP to trust), an
asker observed at a private, loopback or link-local address unless the
server allows those (a verdict from a LAN dial says nothing about the
internet). Claimed addresses that do not parse, name another peer, or use
a transport we cannot dial back are skipped; at most ``limit`` remain.

Pure functions on multiaddr strings; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from multiaddr import Multiaddr

from agentp2p.network.addresses import is_private_ip

__all__ = ["Refusal", "dial_targets", "is_private_ip"]

#: Transports a dial-back may use, after /ip4|ip6/<ip>/tcp/<port>.
_TCP_SUFFIXES = ((), ("ws",))

@dataclass(frozen=True, slots=True)
class Refusal:
    """The request is not served; ``reason`` goes back as the status text."""

    reason: str


def _parts(addr: str) -> list[str]:
    return addr.strip("/").split("/")


def dial_targets(
    claimed: Iterable[bytes | str],
    observed: str | None,
    asker: str,
    *,
    allow_private: bool = False,
    limit: int = 8,
) -> list[str] | Refusal:
    """The multiaddrs (as strings) to dial back, or why none will be.

    ``observed`` is the asker's address as our connection sees it
    (``/ip4/1.2.3.4/tcp/5678``); ``asker`` its peer ID (base58), which a
    claimed ``/p2p/`` suffix must match.
    """
    if observed is None:
        return Refusal("no observed address for this connection")
    obs = _parts(observed)
    if "p2p-circuit" in obs:
        return Refusal("not over a relayed connection")
    if len(obs) < 2 or obs[0] not in ("ip4", "ip6"):
        return Refusal(f"observed address {observed} has no IP")
    family, ip = obs[0], obs[1]
    if not allow_private and is_private_ip(ip):
        return Refusal("the asker is on a private address")
    out: list[str] = []
    for raw in claimed:
        if len(out) >= limit:
            break
        try:
            text = str(Multiaddr(raw))
        except Exception:  # noqa: BLE001 — the peer's bytes; skip what does not parse
            continue
        parts = _parts(text)
        if "p2p-circuit" in parts:
            continue
        if "p2p" in parts:
            i = parts.index("p2p")
            if parts[i + 1: i + 2] != [asker] or i + 2 != len(parts):
                continue
            parts = parts[:i]
        if len(parts) < 4 or parts[0] not in ("ip4", "ip6") or parts[0] != family or parts[2] != "tcp":
            continue
        try:
            port = int(parts[3])
        except ValueError:
            continue
        if not 0 < port < 65536 or tuple(parts[4:]) not in _TCP_SUFFIXES:
            continue
        target = "/" + "/".join([family, ip, "tcp", str(port), *parts[4:]])
        if target not in out:
            out.append(target)
    return out
