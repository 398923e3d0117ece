"""Record and provider stores: validation, selection, expiry, quotas, bounds, republish."""

from __future__ import annotations

from agentp2p.protocol.kademlia.providers import LocalProvides, ProviderStore
from agentp2p.protocol.kademlia.records import NamespacedValidator, PerPeerQuota, Put, RecordStore

from .kadhelpers import SeqValidator, pid

A, B = pid("a"), pid("b")


def store(**kw: object) -> RecordStore:
    args = {"max_records": 10, "ttl": 100.0, **kw}
    return RecordStore(NamespacedValidator({"v": SeqValidator()}), **args)  # type: ignore[arg-type]


def test_validation_and_namespaces() -> None:
    s = store()
    assert s.put(b"/v/x", b"1:a", 0.0, A) is Put.STORED
    assert s.put(b"/v/x", b"junk", 0.0, A) is Put.INVALID
    assert s.put(b"/other/x", b"1:a", 0.0, A) is Put.INVALID  # unknown namespace
    assert s.put(b"plain", b"1:a", 0.0, A) is Put.INVALID


def test_select_keeps_the_better_record() -> None:
    s = store()
    s.put(b"/v/x", b"5:new", 0.0, A)
    assert s.put(b"/v/x", b"3:old", 1.0, B) is Put.OUTDATED
    assert s.put(b"/v/x", b"7:newer", 2.0, B) is Put.STORED
    assert s.get(b"/v/x", 2.0).value == b"7:newer"  # type: ignore[union-attr]


def test_expiry() -> None:
    s = store()
    s.put(b"/v/x", b"1:a", 0.0, A)
    s.put(b"/v/y", b"1:a", 50.0, A)
    assert s.get(b"/v/x", 99.0) is not None and s.get(b"/v/x", 100.0) is None
    assert s.expire(200.0) == 1 and len(s) == 0


def test_node_wide_cap_and_per_peer_quota() -> None:
    q = PerPeerQuota(max_items=2, max_bytes=1000)
    s = store(max_records=3, quota=q)
    assert [s.put(b"/v/%d" % i, b"1:x", 0.0, A) for i in range(3)] == [Put.STORED, Put.STORED, Put.QUOTA]
    assert s.put(b"/v/b", b"1:x", 0.0, B) is Put.STORED
    assert s.put(b"/v/c", b"1:x", 0.0, None) is Put.FULL
    assert s.put(b"/v/0", b"2:x", 1.0, A) is Put.STORED  # replacing its own record is within quota
    assert q.used(A) == (2, 2 * len(b"/v/0" + b"1:x"))
    s.expire(500.0)
    assert q.used(A) == (0, 0) and q.used(B) == (0, 0)  # expiry gives the quota back


def test_a_raising_validator_refuses_instead_of_crashing() -> None:
    class Broken:
        def validate(self, key: bytes, value: bytes) -> None:
            raise RuntimeError("bug")

        def select(self, key: bytes, values: object) -> int:
            raise RuntimeError("bug")

    s = RecordStore(Broken(), max_records=10, ttl=10.0)
    assert s.put(b"k", b"v", 0.0, A) is Put.INVALID


def test_providers_expire_after_ttl_and_refresh_on_reannounce() -> None:
    p = ProviderStore(ttl=48 * 3600.0, max_keys=10, max_per_key=5)
    assert p.add(b"k", A, (b"/a",), 0.0)
    assert p.add(b"k", B, (b"/b",), 10 * 3600.0)
    assert [r.peer for r in p.get(b"k", 47 * 3600.0, 10)] == [B, A]
    assert p.add(b"k", A, (), 40 * 3600.0)  # re-announce: new expiry, addresses kept
    assert [r.peer for r in p.get(b"k", 59 * 3600.0, 10)] == [A]
    assert p.get(b"k", 59 * 3600.0, 10)[0].addrs == (b"/a",)
    assert p.get(b"k", 88 * 3600.0, 10) == [] and p.key_count() == 0


def test_provider_bounds_refuse_newcomers() -> None:
    q = PerPeerQuota(max_items=3, max_bytes=10**9)
    p = ProviderStore(ttl=100.0, max_keys=2, max_per_key=2, quota=q)
    assert p.add(b"k1", pid(1), (), 0.0) and p.add(b"k1", pid(2), (), 0.0)
    assert not p.add(b"k1", pid(3), (), 0.0)  # key full: the honest two stay
    assert p.add(b"k2", pid(1), (), 0.0)
    assert not p.add(b"k3", pid(1), (), 0.0)  # store full
    assert p.add(b"k2", pid(2), (), 0.0) and not p.add(b"k2", A, (), 0.0)
    assert p.add(b"k1", pid(3), (), 150.0)  # the old ones expired: room again
    assert p.expire(150.0) == 2  # k2's, swept
    assert p.record_count() == 1 and q.used(pid(1)) == (0, 0)


def test_republish_due_every_22_hours() -> None:
    lp = LocalProvides(republish=22 * 3600.0, max_keys=2)
    assert lp.add(b"a", 0.0) and lp.add(b"b", 3600.0) and not lp.add(b"c", 0.0)
    assert lp.due(21 * 3600.0) == []
    assert lp.due(22 * 3600.0) == [b"a"]
    assert lp.next_due() == 23 * 3600.0
    lp.remove(b"b")
    assert lp.due(100 * 3600.0) == [b"a"]
