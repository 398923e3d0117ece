"""DHT keys, re-publish timing, the record cache and find_agents ranking."""

from __future__ import annotations

import dataclasses

import cid
import pytest
from libp2p.kad_dht.kad_dht import _encode_key
from libp2p.peer.id import ID
from tests.application.records_fixtures import HOUR, NOW, TRANSLATE, keypair, make_record

from agentp2p.application.records import (
    Capability,
    InvalidRecord,
    Liveness,
    RecordCache,
    capability_cid,
    capability_multihash,
    record_key_matches,
    rank_agents,
    record_key,
    repub_at_ms,
    repub_due,
)

# --- keys -----------------------------------------------------------------------


def test_provider_key_fixed_vector() -> None:
    # CIDv1(raw, sha2-256("agentp2p/cap/translate")), base32.
    assert capability_cid("translate") == "bafkreihyvykaux2u7mpq7qlsc2cdhrdakqhqadspvhymmzpv3avsfccbtu"
    assert capability_cid("Translate") != capability_cid("translate")  # exact match


def test_provider_key_agrees_with_py_cid_and_kad_dht() -> None:
    key = capability_cid("summarize")
    parsed = cid.from_string(key)
    assert (parsed.version, parsed.codec) == (1, "raw")
    assert parsed.multihash == capability_multihash("summarize")
    # KadDHT.provide/find_providers use the CID's multihash as the DHT key.
    assert _encode_key(key) == capability_multihash("summarize")


def test_record_key_fits_py_libp2p_find_node_limit() -> None:
    peer = ID.from_pubkey(keypair(1).public_key)
    key = record_key(peer)
    # py-libp2p peers ignore FIND_NODE for non-multihash keys over 50 bytes.
    assert key.startswith("/agentrec/") and len(key.encode()) == 50
    assert key != record_key(ID.from_pubkey(keypair(2).public_key))
    record_key_matches(key, peer)
    for bad in ("/pk/" + key[10:], "/agentrec/", key[:-1] + ("a" if key[-1] != "a" else "b")):
        with pytest.raises(InvalidRecord):
            record_key_matches(bad, peer)


def test_repub_due_after_two_thirds_of_lifetime() -> None:
    record = make_record(keypair(1), ttl_ms=3 * HOUR)
    assert repub_at_ms(record) == NOW + 2 * HOUR
    assert not repub_due(record, NOW + 2 * HOUR - 1)
    assert repub_due(record, NOW + 2 * HOUR)


# --- cache ----------------------------------------------------------------------


def test_cache_keeps_newest_per_peer() -> None:
    kp = keypair(1)
    cache = RecordCache()
    r1, r2 = make_record(kp, seq=1), make_record(kp, seq=2)
    assert cache.put(r2, b"env2", NOW)
    assert not cache.put(r1, b"env1", NOW)  # replayed older record
    assert not cache.put(r2, b"env2", NOW)  # same record is not news
    entry = cache.get(r2.peer_id, NOW)
    assert entry is not None and entry.record.seq == 2 and entry.envelope == b"env2"


def test_cache_expiry_and_ttl() -> None:
    cache = RecordCache(ttl_ms=HOUR // 2)
    a, b = make_record(keypair(1), ttl_ms=HOUR), make_record(keypair(2), ttl_ms=HOUR // 4)
    cache.put(a, b"a", NOW)
    cache.put(b, b"b", NOW)
    assert cache.next_expiry_ms() == NOW + HOUR // 4
    assert len(cache.with_capability("translate", NOW + HOUR // 4)) == 1  # b lapsed
    assert cache.get(a.peer_id, NOW + HOUR // 2 - 1) is not None
    assert cache.get(a.peer_id, NOW + HOUR // 2) is None  # cache TTL before record expiry
    assert len(cache) == 0
    assert not cache.put(a, b"a", NOW + HOUR)  # already expired: not stored


def test_cache_full_evicts_soonest_lapsing() -> None:
    cache = RecordCache(max_entries=2)
    short = make_record(keypair(1), ttl_ms=HOUR)
    long1 = make_record(keypair(2), ttl_ms=3 * HOUR)
    long2 = make_record(keypair(3), ttl_ms=2 * HOUR)
    cache.put(short, b"", NOW)
    cache.put(long1, b"", NOW)
    assert cache.put(long2, b"", NOW)
    assert cache.get(short.peer_id, NOW) is None and len(cache) == 2
    assert not cache.put(make_record(keypair(4), ttl_ms=HOUR), b"", NOW)  # would go first


# --- ranking ------------------------------------------------------------------------


def _agents():  # type: ignore[no-untyped-def]
    fr = dataclasses.replace(TRANSLATE, tags=("nlp", "French"))
    return {
        n: make_record(keypair(n), capabilities=caps, now_ms=NOW - n)
        for n, caps in {
            1: (TRANSLATE,),
            2: (fr,),
            3: (Capability(name="summarize", tags=("nlp",)),),
            4: (fr,),
            5: (TRANSLATE,),
            6: (TRANSLATE,),
        }.items()
    }


def test_ranking_filters_and_orders() -> None:
    agents = _agents()
    pid = {n: r.peer_id for n, r in agents.items()}
    state = {pid[1]: Liveness.UNKNOWN, pid[2]: Liveness.ALIVE, pid[4]: Liveness.ALIVE,
             pid[5]: Liveness.DEAD, pid[6]: Liveness.SUSPECT}
    rtt = {pid[4]: 5.0, pid[2]: 50.0}
    ranked = rank_agents(agents.values(), capability="translate", now_ms=NOW,
                         liveness=lambda p: state.get(p, Liveness.UNKNOWN), rtt_ms=rtt.get)
    # 3 lacks the capability, 5 is dead; alive by RTT, then unknown, then suspect.
    assert [r.record.peer_id for r in ranked] == [pid[4], pid[2], pid[1], pid[6]]
    assert ranked[0].capability.name == "translate" and ranked[0].rtt_ms == 5.0

    tagged = rank_agents(agents.values(), capability="translate", tags=["french", "NLP"], now_ms=NOW,
                         liveness=lambda p: Liveness.ALIVE, limit=1)
    # All tags required (case-insensitive); no RTT known -> fresher issued_at first.
    assert [r.record.peer_id for r in tagged] == [pid[2]]

    any_cap = rank_agents(agents.values(), capability=None, tags=["nlp"], now_ms=NOW,
                          liveness=lambda p: Liveness.ALIVE)
    assert len(any_cap) == 6


def test_ranking_drops_expired_and_dedupes_by_newest() -> None:
    kp = keypair(1)
    old = make_record(kp, seq=1)
    new = make_record(kp, seq=2, capabilities=(Capability(name="other"),))
    expired = make_record(keypair(2), now_ms=NOW - 2 * HOUR)
    ranked = rank_agents([old, new, expired], capability="translate", now_ms=NOW,
                         liveness=lambda p: Liveness.ALIVE)
    assert ranked == []  # newest record of peer 1 no longer offers translate


def test_ranking_is_deterministic() -> None:
    recs = [make_record(keypair(n)) for n in range(1, 8)]  # identical issue times
    live = lambda p: Liveness.ALIVE  # noqa: E731
    a = rank_agents(recs, capability="translate", now_ms=NOW, liveness=live)
    b = rank_agents(reversed(recs), capability="translate", now_ms=NOW, liveness=live)
    assert [r.record.peer_id for r in a] == [r.record.peer_id for r in b]
    assert [r.record.peer_id.to_bytes() for r in a] == sorted(r.peer_id.to_bytes() for r in recs)


def test_distrusted_agents_come_last_whatever_else() -> None:
    agents = _agents()
    pid = {n: r.peer_id for n, r in agents.items()}
    rtt = {pid[1]: 1.0, pid[2]: 50.0, pid[4]: 9.0}
    ranked = rank_agents(agents.values(), capability="translate", now_ms=NOW, liveness=lambda p: Liveness.ALIVE,
                         rtt_ms=rtt.get, distrusted=lambda p: p == pid[1])
    # 1 has the best RTT but the node distrusts it (trust below deprioritize_below).
    assert ranked[-1].record.peer_id == pid[1]
