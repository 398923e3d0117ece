"""This machine's interface addresses, and a wildcard bind advertised as them.

Why: py-libp2p reports a listener bound to ``/ip4/0.0.0.0`` (the daemon's
default) or ``/ip6/::`` as it is, and advertises it so, in identify and its
signed peer record. Nobody can dial a wildcard. A peer that identified such
a node kept only that address (the record replaces the one it dialed), and
SWIM, which leaves out what nobody can dial, signed no address at all. So
the node advertises each local interface's address instead
(:func:`expand_wildcards`; the node context's ``listen_addrs()``, the host's
``get_addrs``, ``Node.addrs``).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterable

from multiaddr import Multiaddr

__all__ = ["INTERFACES_TTL", "expand_wildcards", "ip_of", "is_loopback", "is_wildcard", "local_ips"]

log = logging.getLogger(__name__)

#: Interfaces are listed again at most this often (they rarely change, and
#: the addresses are asked for on every identify and record re-sign).
INTERFACES_TTL = 30.0
_interfaces: tuple[float, tuple[tuple[str, ...], tuple[str, ...]]] | None = None


def _keep(ip: str) -> bool:
    """Not loopback (added last, once), nor link-local (dialing those needs
    a zone for IPv6, and neither leaves the link), nor unspecified."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_link_local or addr.is_unspecified)


def local_ips() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """This machine's IPv4 and IPv6 interface addresses, loopback last in
    each. Best effort: at least the loopback addresses."""
    global _interfaces
    now = time.monotonic()
    if _interfaces is not None and now - _interfaces[0] < INTERFACES_TTL:
        return _interfaces[1]
    v4: list[str] = []
    v6: list[str] = []
    try:
        import ifaddr  # installed with py-libp2p (zeroconf)

        adapters = ifaddr.get_adapters()
    except Exception:  # noqa: BLE001 — interface enumeration is best effort
        log.debug("listing interfaces failed", exc_info=True)
        adapters = []
    for adapter in adapters:
        try:
            ips = list(adapter.ips or ())
        except Exception:  # noqa: BLE001 — one odd adapter leaves the others
            continue
        for ip in ips:
            raw = getattr(ip, "ip", None)
            text = raw if isinstance(raw, str) else raw[0] if isinstance(raw, tuple) and raw else None
            if not isinstance(text, str) or not _keep(text):
                continue
            bucket = v4 if ipaddress.ip_address(text).version == 4 else v6
            if text not in bucket:
                bucket.append(text)
    found = ((*v4, "127.0.0.1"), (*v6, "::1"))
    _interfaces = (now, found)
    return found


def ip_of(addr: Multiaddr | str) -> str | None:
    """The IP an ``/ip4/…`` or ``/ip6/…`` address starts with (None for any other)."""
    parts = str(addr).split("/")
    return parts[2] if len(parts) > 2 and parts[1] in ("ip4", "ip6") else None


def is_loopback(addr: Multiaddr | str) -> bool:
    """``/ip4/127.…`` or ``/ip6/::1`` (a circuit through a loopback relay too)."""
    ip = ip_of(addr)
    try:
        return ip is not None and ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


_WILDCARDS = {"/ip4/0.0.0.0/": 0, "/ip6/::/": 1}


def is_wildcard(addr: Multiaddr | str) -> bool:
    """A wildcard bind (``/ip4/0.0.0.0/…``, ``/ip6/::/…``): nobody can dial it."""
    text = str(addr)
    return any(text.startswith(w) for w in _WILDCARDS)


def expand_wildcards(addrs: Iterable[Multiaddr],
                     ips: tuple[Iterable[str], Iterable[str]] | None = None) -> list[Multiaddr]:
    """``addrs`` with each wildcard bind (``/ip4/0.0.0.0``, ``/ip6/::``)
    replaced by the same address on each local interface (``ips``: IPv4
    and IPv6 lists, default :func:`local_ips`), loopback last. Order kept,
    no duplicates; never raises for an address it cannot rebuild (left out)."""
    out: list[Multiaddr] = []
    seen: set[str] = set()
    for addr in addrs:
        text = str(addr)
        prefix = next((w for w in _WILDCARDS if text.startswith(w)), None)
        if prefix is None:
            texts = [text]
        else:
            found = (ips if ips is not None else local_ips())[_WILDCARDS[prefix]]
            kind = prefix.split("/")[1]
            texts = [f"/{kind}/{ip}/{text[len(prefix):]}" for ip in found]
        for t in texts:
            if t in seen:
                continue
            seen.add(t)
            if t == text:
                out.append(addr)
                continue
            try:
                out.append(Multiaddr(t))
            except Exception:  # noqa: BLE001 — an interface address multiaddr will not take
                log.debug("cannot advertise %s", t, exc_info=True)
    return out
