"""Import py-libp2p without the third-party packages a TCP+Noise node never uses.

``import libp2p`` (0.8.1) imports every transport and feature eagerly: QUIC
(``aioquic``, which pulls ``service_identity`` and ``pyOpenSSL``), AutoTLS
(``httpx``, ``requests``), Prometheus metrics (``prometheus_client``) and mDNS
(``zeroconf``). An agentp2p node uses none of them — it builds a TCP (+ ``/ws``)
host that offers Noise only, with metrics off — yet each process pays about
20 MB of RSS and ~200 modules for them.

:func:`install` puts an import hook in front of ``sys.meta_path`` that answers
those packages (and any of their submodules) with *stub* modules. Every name
looked up on a stub is a placeholder class that

* can be imported (``from aioquic.quic.connection import QuicConnection``),
  subclassed, used in annotations and in ``isinstance`` checks (always
  False: no instance can exist), but
* raises :class:`LeanImportError` the moment anything *calls* it.

So code that really needs one of those packages fails loudly at the first
use, naming the package, instead of misbehaving quietly. Nothing in
site-packages is modified, and nothing changes for a process that does not
call :func:`install`.

Call it before the first ``import libp2p`` (the daemon can, since the CLI
imports the node lazily). It refuses — returns ``False`` and does nothing —
if libp2p is already imported, because stubbing a package after its users
loaded the real one would mix the two.

It also makes a few py-libp2p packages *hollow* (:data:`HOLLOW_PACKAGES`):
their ``__init__``, which eagerly imports whole features we never run, is
skipped, while the submodules py-libp2p really imports load normally.

Measured on py-libp2p 0.8.1 / CPython 3.11 (docs/benchmarks.md): RSS after
``import agentp2p.node`` drops from ~87 MB to ~67 MB with the stubs, and a
running daemon's by 4 MB more with the hollow packages.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Iterable, Sequence
from typing import Any

# The packages stubbed, and the only py-libp2p features that import them.
# (grep of libp2p 0.8.1: aioquic -> transport/quic, transport/webtransport;
# httpx, requests -> security/tls/autotls, observability/oso;
# prometheus_client -> metrics/*, rcmgr/prometheus_exporter;
# zeroconf -> discovery/mdns; service_identity, OpenSSL -> via aioquic.tls.)
UNUSED_PACKAGES: tuple[str, ...] = (
    "aioquic",
    "service_identity",
    "OpenSSL",
    "httpx",
    "requests",
    "prometheus_client",
    "zeroconf",
)

# py-libp2p packages whose ``__init__`` we never run: only the submodules
# someone imports by full name load, for real. ``libp2p.relay``'s init loads
# all of circuit relay v2, DCUtR and, through them, the library's Kademlia
# and bitswap (81 modules, 4 MB) — for one function: ``basic_host`` imports
# ``is_private_ip`` from ``libp2p.relay.circuit_v2.nat``, which still loads.
# A hollow package has no names of its own, so an import of a name its init
# would have defined fails at import time, loudly, never later.
HOLLOW_PACKAGES: tuple[str, ...] = (
    "libp2p.relay",
    "libp2p.relay.circuit_v2",
)

# Needed by py-libp2p's mDNS discovery, so kept when mDNS is on.
MDNS_PACKAGES: tuple[str, ...] = ("zeroconf",)

# Needed by the control API's /metrics endpoint, so kept when it is on.
METRICS_PACKAGES: tuple[str, ...] = ("prometheus_client",)
# What QUIC needs real (a /quic-v1 listen address: agentp2p/network/quic).
QUIC_PACKAGES: tuple[str, ...] = ("aioquic", "service_identity", "OpenSSL")


class LeanImportError(ImportError):
    """A stubbed package was actually used."""


class _AbsentMeta(type):
    """Metaclass of placeholders: attribute chains work, calls fail."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__module__}.{cls.__qualname__}.{name}")

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        root = cls.__module__.split(".")[0]
        # A class that merely subclasses a placeholder lives in a real module;
        # name the stubbed base so the message points at the real cause.
        for base in cls.__mro__:
            if isinstance(base, _AbsentMeta) and base.__module__.split(".")[0] in _installed_roots():
                root = base.__module__.split(".")[0]
                break
        raise LeanImportError(
            f"{cls.__module__}.{cls.__qualname__} is unavailable: package {root!r} was stubbed out "
            "by agentp2p._lean_import (start the process without it to use this feature)"
        )


def _placeholder(qualname: str) -> type:
    module, _, name = qualname.rpartition(".")
    return _AbsentMeta(name, (), {"__qualname__": name, "__module__": module})


class _StubModule(types.ModuleType):
    """A module whose every public attribute is a placeholder."""

    __lean_stub__ = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = _placeholder(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots: Iterable[str]) -> None:
        self.roots = frozenset(roots)

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname.partition(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []  # a package, so any submodule can be imported
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _HollowFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Packages whose ``__init__`` is skipped; their submodules import as usual."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname not in self.names:
            return None
        real = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if real is None or real.submodule_search_locations is None:
            return None  # not installed, or not a package: the normal error
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=real.origin, is_package=True)
        spec.submodule_search_locations = real.submodule_search_locations
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module, with __path__ from the spec

    def exec_module(self, module: types.ModuleType) -> None:
        module.__lean_hollow__ = True  # type: ignore[attr-defined]


def _finder() -> _StubFinder | None:
    for f in sys.meta_path:
        if isinstance(f, _StubFinder):
            return f
    return None


def _installed_roots() -> frozenset[str]:
    f = _finder()
    return f.roots if f is not None else frozenset()


def install(*, mdns: bool = False, metrics: bool = False, quic: bool = False) -> bool:
    """Stub the unused packages for the rest of this process.

    ``mdns=True`` keeps ``zeroconf`` real, ``metrics=True``
    ``prometheus_client``, ``quic=True`` ``aioquic`` and what it imports. Returns True if the hook is in place (now or
    already), False if it is too late (libp2p already imported).
    """
    if _finder() is not None:
        return True
    if "libp2p" in sys.modules:
        return False
    keep = (
        (set(MDNS_PACKAGES) if mdns else set())
        | (set(METRICS_PACKAGES) if metrics else set())
        | (set(QUIC_PACKAGES) if quic else set())
    )
    # A package already imported for real (by someone else) stays real.
    roots = [r for r in UNUSED_PACKAGES if r not in keep and r not in sys.modules]
    sys.meta_path.insert(0, _StubFinder(roots))
    sys.meta_path.insert(1, _HollowFinder(HOLLOW_PACKAGES))
    return True


def is_stub(module_name: str) -> bool:
    """True if ``module_name`` is (or would be) served by a stub in this process."""
    mod = sys.modules.get(module_name)
    if mod is not None:
        return bool(getattr(mod, "__lean_stub__", False))
    return module_name.partition(".")[0] in _installed_roots()
