"""Real NATs on one machine: Linux network namespaces, veth pairs, iptables.

A :class:`NatLab` builds a small internet inside the kernel and tears it
down again:

* an "internet" namespace holding a bridge; every public host and every
  router's outside interface is a veth port on it, with an address in
  203.0.113.0/24 (TEST-NET-3: never routed anywhere, so nothing here can
  leak to or collide with a real network, and it is not a private range,
  so dial policies that skip private addresses treat it as public);
* public hosts: one namespace each, one address on the bridge;
* NATed hosts: a router namespace (outside address on the bridge, inside
  10.K.0.1/24) masquerading for one host namespace behind it (10.K.0.2),
  whose default route is the router. The router forwards replies to
  connections the host opened and drops everything else from outside
  (also what is addressed to itself), as a home router does.

NAT kinds (what hole punching cares about, RFC 4787):

* ``"cone"``: plain MASQUERADE. Linux keeps the source port when it is
  free, so the mapping is endpoint-independent in practice;
* ``"symmetric"``: MASQUERADE ``--random-fully``: every new connection
  gets a random outside port, so a port learned from one peer is useless
  to another.

Processes run inside a namespace with ``ip netns exec`` (:meth:`NatLab.exec_args`).
Names carry a per-lab prefix, so two labs (or two test runs) never clash;
:meth:`NatLab.close` deletes every namespace it made, and deleting a
namespace kills its interfaces and iptables rules with it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field

__all__ = ["Host", "NatLab", "NatLabUnavailable", "available"]

PUBLIC_NET = "203.0.113"  # TEST-NET-3 (RFC 5737)


class NatLabUnavailable(RuntimeError):
    """This machine cannot build namespaces (not root, no ``ip``, no iptables, ...)."""


@dataclass
class Host:
    """One namespace with an address; ``public_ip`` is how the internet sees it."""

    name: str
    netns: str
    ip: str
    public_ip: str
    router: str | None = None  # the router's namespace, for NATed hosts
    nat: str | None = None


@dataclass
class NatLab:
    """A throwaway internet of namespaces (see the module doc)."""

    prefix: str = field(default_factory=lambda: "ap2p" + uuid.uuid4().hex[:6])
    #: The first three octets of the lab's internet (a /24). TEST-NET-3 unless
    #: a test needs addresses every libp2p calls public: go-libp2p hole-punches
    #: only to addresses ``manet.IsPublicAddr`` accepts, and it counts the
    #: documentation ranges out. Any range is safe here: it exists only inside
    #: the lab's namespaces, which have no route to the machine's network.
    public_net: str = PUBLIC_NET
    hosts: dict[str, Host] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _next_public: int = 10
    _next_router: int = 1

    def __post_init__(self) -> None:
        try:
            self._inet = self._netns("inet")
            self._run(self._inet, "ip", "link", "add", "br0", "type", "bridge")
            self._run(self._inet, "ip", "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    # -- building ------------------------------------------------------
    def add_public(self, name: str) -> Host:
        """A host with a public address of its own."""
        ns = self._netns(name)
        ip = f"{self.public_net}.{self._take_public()}"
        self._plug(ns, "eth0", ip)
        host = Host(name, ns, ip, ip)
        self.hosts[name] = host
        return host

    def add_natted(self, name: str, nat: str = "cone") -> Host:
        """A host behind its own NAT router (``nat``: "cone" or "symmetric")."""
        if nat not in ("cone", "symmetric"):
            raise ValueError(f"unknown NAT kind {nat!r}")
        k = self._next_router
        self._next_router += 1
        router = self._netns(f"{name}r")
        wan = f"{self.public_net}.{self._take_public()}"
        self._plug(router, "wan", wan)
        ns = self._netns(name)
        inside = f"10.{k}.0"
        # The LAN link: router side "lan", host side "eth0".
        a, b = f"{self.prefix}l{k}a", f"{self.prefix}l{k}b"
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", a, "netns", router)
        _ip("link", "set", b, "netns", ns)
        self._run(router, "ip", "link", "set", a, "name", "lan")
        self._run(router, "ip", "addr", "add", f"{inside}.1/24", "dev", "lan")
        self._run(router, "ip", "link", "set", "lan", "up")
        self._run(ns, "ip", "link", "set", b, "name", "eth0")
        self._run(ns, "ip", "addr", "add", f"{inside}.2/24", "dev", "eth0")
        self._run(ns, "ip", "link", "set", "eth0", "up")
        self._run(ns, "ip", "route", "add", "default", "via", f"{inside}.1")
        self._run(router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        masquerade = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
        if nat == "symmetric":
            masquerade.append("--random-fully")
        self._run(router, *masquerade)
        # Replies to what the inside opened come in; nothing else does.
        self._run(router, "iptables", "-A", "FORWARD", "-i", "wan", "-o", "lan", "-m", "conntrack",
                  "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
        self._run(router, "iptables", "-A", "FORWARD", "-i", "wan", "-o", "lan", "-j", "DROP")
        # Nor is anything addressed to the router itself answered: a home
        # router drops an unsolicited SYN. (Linux would answer it with a RST
        # and keep its conntrack entry, which takes the port a hole punch
        # from inside is about to map to — a NAT no real router is.)
        self._run(router, "iptables", "-A", "INPUT", "-i", "wan", "-m", "conntrack",
                  "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
        self._run(router, "iptables", "-A", "INPUT", "-i", "wan", "-j", "DROP")
        host = Host(name, ns, f"{inside}.2", wan, router=router, nat=nat)
        self.hosts[name] = host
        return host

    def exec_args(self, host: Host | str, *argv: str) -> list[str]:
        """The command line that runs ``argv`` inside ``host``'s namespace."""
        ns = host.netns if isinstance(host, Host) else self.hosts[host].netns
        return ["ip", "netns", "exec", ns, *argv]

    def run(self, host: Host | str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run a short command inside ``host``'s namespace (checked)."""
        return subprocess.run(self.exec_args(host, *argv), check=True, capture_output=True, text=True,
                              timeout=timeout)

    def close(self) -> None:
        """Delete every namespace this lab made (their links and rules go with them)."""
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._namespaces.clear()

    def __enter__(self) -> NatLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------
    def _netns(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        self._run(ns, "ip", "link", "set", "lo", "up")
        return ns

    def _take_public(self) -> int:
        n = self._next_public
        if n > 250:
            raise RuntimeError("NatLab: out of public addresses")
        self._next_public += 1
        return n

    def _plug(self, ns: str, ifname: str, ip: str) -> None:
        """A veth from ``ns`` (named ``ifname``, address ``ip``) to the internet's bridge."""
        n = ip.rsplit(".", 1)[1]
        a, b = f"{self.prefix}p{n}a", f"{self.prefix}p{n}b"
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", a, "netns", self._inet)
        _ip("link", "set", b, "netns", ns)
        self._run(self._inet, "ip", "link", "set", a, "master", "br0")
        self._run(self._inet, "ip", "link", "set", a, "up")
        self._run(ns, "ip", "link", "set", b, "name", ifname)
        self._run(ns, "ip", "addr", "add", f"{ip}/24", "dev", ifname)
        self._run(ns, "ip", "link", "set", ifname, "up")

    def _run(self, ns: str, *argv: str) -> None:
        _check(["ip", "netns", "exec", ns, *argv])


def _ip(*argv: str) -> None:
    _check(["ip", *argv])


def _check(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NatLabUnavailable(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")


@functools.cache
def available() -> str | None:
    """None when a lab can be built here, else why not (the reason to skip with;
    asked once per process)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    try:
        with NatLab() as lab:
            lab.add_natted("probe", "symmetric")
    except NatLabUnavailable as exc:
        return f"cannot build namespaces here: {exc}"
    return None
