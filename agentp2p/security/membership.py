"""What we know of peers' group memberships, and the certificates we present.

Sans-IO: every method takes the time; nothing here fetches. The
:class:`~agentp2p.security.authorizer.Authorizer` asks
:mod:`agentp2p.protocol.membership` to fetch a peer's certificates and hands
the result to :meth:`MembershipBook.learn`.

A certificate is kept only if it is valid now and names the peer that
presented it (the Noise-authenticated end of the stream), so a member's
certificate replayed by someone else proves nothing. Which issuer counts for
which group is *not* decided here: the policy can change at run time, so
:meth:`groups_of` matches the certificates against the policy it is given.
Bounded: at most ``max_peers`` peers (least recently learned forgotten first)
and :data:`~agentp2p.security.certificates.MAX_CERTIFICATES` each.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from libp2p.peer.id import ID

from agentp2p.security.certificates import MAX_CERTIFICATES, Certificate, CertificateError, open_certificate
from agentp2p.security.policy import Policy

__all__ = ["MembershipBook"]

#: Ask a peer again after this long, even if its certificates last longer
#: (it may have been given new ones).
REFRESH_MS = 5 * 60 * 1000
#: After a failed fetch (peer unreachable, no protocol, garbage), or one that
#: proved no membership, ask again after this long.
RETRY_MS = 30 * 1000


@dataclass
class _Entry:
    certs: tuple[Certificate, ...]
    refresh_at_ms: int
    refused: tuple[str, ...] = ()
    failed: bool = False


class MembershipBook:
    def __init__(self, me: ID, *, max_peers: int = 10_000) -> None:
        self.me = me
        self.max_peers = max_peers
        self._peers: OrderedDict[ID, _Entry] = OrderedDict()
        self._failures: OrderedDict[ID, int] = OrderedDict()  # never-reached peer -> ask again at (ms)
        self._own: list[Certificate] = []

    # ------------------------------------------------------------ peers
    def learn(self, peer: ID, presented: list[bytes], now_ms: int) -> list[str]:
        """Keep ``peer``'s valid certificates; return why each other one was refused."""
        self._failures.pop(peer, None)
        certs: list[Certificate] = []
        refused: list[str] = []
        for raw in presented[:MAX_CERTIFICATES]:
            try:
                cert = open_certificate(raw, now_ms)
            except CertificateError as exc:
                refused.append(str(exc))
                continue
            if cert.subject != peer:
                refused.append(f"certificate for group {cert.group!r} names another peer ({cert.subject})")
                continue
            certs.append(cert)
        # A peer that proved nothing is asked again sooner: it may just have
        # been given its first certificate.
        refresh = now_ms + (REFRESH_MS if certs else RETRY_MS)
        for cert in certs:
            refresh = min(refresh, cert.not_after_ms)
        self._put(peer, _Entry(tuple(certs), max(refresh, now_ms + 1000), tuple(refused)))
        return refused

    def failed(self, peer: ID, now_ms: int) -> None:
        """A fetch from ``peer`` failed: it is in no group until we ask again.

        A peer we knew keeps its still-valid certificates; one we never heard
        from goes to a list of its own, so that a flood of made-up peers
        (fresh keys cost nothing) cannot push real members out of the book.
        """
        old = self._peers.get(peer)
        if old is None:
            self._failures[peer] = now_ms + RETRY_MS
            self._failures.move_to_end(peer)
            while len(self._failures) > self.max_peers:
                self._failures.popitem(last=False)
            return
        keep = tuple(c for c in old.certs if c.valid_at(now_ms))
        self._put(peer, _Entry(keep, now_ms + RETRY_MS, failed=True))

    def known(self, peer: ID, now_ms: int) -> bool:
        """Are ``peer``'s certificates known and fresh enough to decide on?"""
        if peer == self.me:
            return True
        entry = self._peers.get(peer)
        if entry is not None:
            return now_ms < entry.refresh_at_ms
        retry = self._failures.get(peer)
        return retry is not None and now_ms < retry

    def groups_of(self, peer: ID, policy: Policy, now_ms: int) -> frozenset[str]:
        """The policy's groups whose issuer certified ``peer``, valid now."""
        if not policy.groups:
            return frozenset()
        if peer == self.me:
            certs: tuple[Certificate, ...] | list[Certificate] = self._own
        else:
            entry = self._peers.get(peer)
            if entry is None:
                return frozenset()
            certs = entry.certs
        return frozenset(
            c.group for c in certs if policy.groups.get(c.group) == c.issuer and c.valid_at(now_ms)
        )

    def forget(self, peer: ID) -> None:
        self._peers.pop(peer, None)
        self._failures.pop(peer, None)

    def describe(self, peer: ID) -> dict[str, object] | None:
        entry = self._peers.get(peer)
        if entry is None:
            if peer in self._failures:
                return {"certificates": [], "refused": [], "fetch_failed": True}
            return None
        return {
            "certificates": [c.describe() for c in entry.certs],
            "refused": list(entry.refused),
            "fetch_failed": entry.failed,
        }

    def __len__(self) -> int:
        return len(self._peers)

    def _put(self, peer: ID, entry: _Entry) -> None:
        self._peers[peer] = entry
        self._peers.move_to_end(peer)
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)

    # ------------------------------------------------------------ our own
    def add_own(self, raw: bytes, now_ms: int) -> Certificate:
        """Hold a certificate of ours to present; CertificateError if it is not ours or not valid."""
        cert = open_certificate(raw, now_ms)
        if cert.subject != self.me:
            raise CertificateError(f"this certificate is for {cert.subject}, not for this node ({self.me})")
        # Replaces one for the same group and issuer (a renewal), else adds.
        kept = [c for c in self._own if (c.group, c.issuer) != (cert.group, cert.issuer) and c.valid_at(now_ms)]
        if len(kept) >= MAX_CERTIFICATES:
            raise CertificateError(f"this node already holds {MAX_CERTIFICATES} certificates")
        self._own = [*kept, cert]
        return cert

    def own(self, now_ms: int) -> list[Certificate]:
        """Our certificates still valid (expired ones are dropped)."""
        self._own = [c for c in self._own if c.valid_at(now_ms)]
        return list(self._own)
