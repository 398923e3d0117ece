"""AutoNAT's pure parts on virtual time: codec, dial policy, verdict, schedule."""

from __future__ import annotations

import pytest

from agentp2p.errors import ConfigError
from agentp2p.pb import autonat_pb2 as pb
from agentp2p.protocol.autonat.codec import (
    MAX_MESSAGE_BYTES, MAX_REQUEST_ADDRS, CodecError, Status, decode_request, decode_response, encode_request,
    encode_response,
)
from agentp2p.protocol.autonat.config import AutoNATConfig
from agentp2p.protocol.autonat.core import (
    AddressesChanged, Answered, Ask, AutoNATCore, Outcome, ReachabilityChanged, Servers, Tick,
)
from agentp2p.protocol.autonat.dialpolicy import Refusal, dial_targets, is_private_ip
from agentp2p.protocol.autonat.verdict import MAX_VOICES, Answer, Reachability, Verdict

ASKER = "12D3KooWBEd8kN6hH6rPVEJRgXBNaTaxtcoNKJUv5p47n7bqDgYY"
OTHER = "12D3KooWMecAx9SFPjPfqtR5jqU4Rj7dYfT8BSHu9qrS6Yza3CNH"


# -------------------------------------------------------------------- codec
def test_request_and_response_round_trip() -> None:
    req = decode_request(encode_request(b"peer", [b"\x04\x7f\x00\x00\x01\x06\x0f\xa1"]))
    assert req.peer_id == b"peer" and req.addrs == (b"\x04\x7f\x00\x00\x01\x06\x0f\xa1",)
    resp = decode_response(encode_response(Status.OK, "fine", b"addr"))
    assert (resp.status, resp.text, resp.addr) == (Status.OK, "fine", b"addr")


def test_codec_refuses_what_is_not_the_expected_message() -> None:
    with pytest.raises(CodecError):
        decode_request(encode_response(Status.OK))  # an answer where a request belongs
    with pytest.raises(CodecError):
        decode_response(encode_request(b"p", []))
    with pytest.raises(CodecError):
        decode_request(b"\xff\xff\xff")
    with pytest.raises(CodecError, match="bytes"):
        decode_request(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    many = pb.Message(type=pb.Message.DIAL)
    many.dial.peer.id = b"p"
    many.dial.peer.addrs.extend([b"a"] * (MAX_REQUEST_ADDRS + 1))
    with pytest.raises(CodecError, match="addresses"):
        decode_request(many.SerializeToString())


def test_an_unknown_status_is_not_read_as_ok() -> None:
    # proto2 leaves an unknown enum value out of the field, whose default is OK (0).
    raw = bytes([0x08, 0x01, 0x1A, 0x03, 0x08, 0x96, 0x01])  # type=DIAL_RESPONSE, status=150
    with pytest.raises(CodecError, match="status"):
        decode_response(raw)
    with pytest.raises(CodecError, match="status"):
        decode_response(bytes([0x08, 0x01, 0x1A, 0x00]))  # no status at all


# -------------------------------------------------------------- dial policy
def test_claimed_addresses_are_dialed_on_the_observed_ip_only() -> None:
    got = dial_targets(
        ["/ip4/10.1.0.2/tcp/4001", "/ip4/10.1.0.2/tcp/4001/ws", f"/ip4/8.8.8.8/tcp/4001/p2p/{ASKER}",
         "/ip4/1.2.3.4/tcp/4002"],
        "/ip4/203.0.113.7/tcp/51000", ASKER)
    # Whatever IP the claim names, the dial goes to the IP we saw: never to 8.8.8.8 or 1.2.3.4.
    assert got == ["/ip4/203.0.113.7/tcp/4001", "/ip4/203.0.113.7/tcp/4001/ws", "/ip4/203.0.113.7/tcp/4002"]


def test_claims_that_cannot_or_must_not_be_dialed_are_skipped() -> None:
    got = dial_targets(
        [b"garbage", "/ip4/1.2.3.4/udp/4001/quic-v1", f"/ip4/1.2.3.4/tcp/1/p2p/{OTHER}",
         f"/ip4/1.2.3.4/tcp/2/p2p/{OTHER}/p2p-circuit/p2p/{ASKER}", "/ip6/2001:db8::1/tcp/3", "/dns4/x.org/tcp/4"],
        "/ip4/203.0.113.7/tcp/51000", ASKER)
    assert got == []
    assert dial_targets([f"/ip4/1.2.3.4/tcp/{p}" for p in range(1, 20)], "/ip4/203.0.113.7/tcp/1", ASKER,
                        limit=3) == [f"/ip4/203.0.113.7/tcp/{p}" for p in (1, 2, 3)]


def test_private_askers_and_relayed_connections_are_refused() -> None:
    assert isinstance(dial_targets(["/ip4/10.0.0.1/tcp/1"], "/ip4/192.168.1.9/tcp/5", ASKER), Refusal)
    assert isinstance(dial_targets(["/ip4/10.0.0.1/tcp/1"], "/ip4/127.0.0.1/tcp/5", ASKER), Refusal)
    assert dial_targets(["/ip4/10.0.0.1/tcp/1"], "/ip4/127.0.0.1/tcp/5", ASKER, allow_private=True) == [
        "/ip4/127.0.0.1/tcp/1"]
    assert isinstance(dial_targets([], f"/ip4/1.2.3.4/tcp/5/p2p/{OTHER}/p2p-circuit", ASKER), Refusal)
    assert isinstance(dial_targets([], None, ASKER), Refusal)


def test_private_ranges() -> None:
    for ip in ("10.1.2.3", "172.20.0.1", "192.168.0.1", "100.64.1.1", "127.0.0.1", "169.254.1.1", "0.0.0.0",
               "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "not an ip"):
        assert is_private_ip(ip), ip
    for ip in ("8.8.8.8", "203.0.113.9", "2606:4700::1111"):
        assert not is_private_ip(ip), ip


# ------------------------------------------------------------------ verdict
def test_verdict_needs_agreeing_voices_and_outvotes_a_liar() -> None:
    v = Verdict(confirmations=3, ttl=100)
    v.add("a", Answer(True, 0, "/ip4/1.2.3.4/tcp/1"))
    v.add("b", Answer(False, 1))
    v.add("c", Answer(True, 2, "/ip4/1.2.3.4/tcp/1"))
    assert v.decide(3) is Reachability.UNKNOWN
    v.add("d", Answer(True, 3, "/ip4/1.2.3.4/tcp/2"))
    assert v.decide(3) is Reachability.PUBLIC
    assert v.confirmed_addrs(3) == ["/ip4/1.2.3.4/tcp/2", "/ip4/1.2.3.4/tcp/1"]
    # One peer repeating itself is one voice.
    for t in range(4, 10):
        v.add("b", Answer(False, t))
    assert v.decide(10) is Reachability.PUBLIC


def test_verdict_follows_a_real_change_and_forgets_old_answers() -> None:
    v = Verdict(confirmations=2, ttl=100)
    for i, peer in enumerate("abc"):
        v.add(peer, Answer(True, i))
    assert v.decide(3) is Reachability.PUBLIC
    v.add("d", Answer(False, 4))
    assert v.decide(4) is Reachability.PUBLIC  # one odd answer does not flip it
    v.add("e", Answer(False, 5))
    assert v.decide(5) is Reachability.PRIVATE  # the newest 3 voices: 2 of them say no
    assert v.confirmed_addrs(5) == []
    assert v.window(200) == [] and v.decide(200) is Reachability.PRIVATE  # expired: keeps the last verdict
    for i in range(MAX_VOICES + 10):
        v.add(i, Answer(True, 300))
    assert len(v) == MAX_VOICES


# ------------------------------------------------------------------- core
CFG = AutoNATConfig(confirmations=2, boot_delay=5, retry_interval=30, refresh_interval=900, peer_interval=90)


def asks(actions: list[object]) -> list[object]:
    return [a.peer for a in actions if isinstance(a, Ask)]


def test_first_round_waits_for_boot_delay_and_asks_enough_servers() -> None:
    core = AutoNATCore(CFG)
    assert core.handle(0, Tick()) == [] and core.next_deadline() is None
    assert core.handle(1, Servers(frozenset({"a", "b", "c"}))) == []
    assert core.next_deadline() == 6
    assert core.handle(5.9, Tick()) == []
    out = core.handle(6, Tick())
    assert len(asks(out)) == 2  # confirmations
    assert core.next_deadline() == 36  # retry while unknown


def test_refusals_are_replaced_and_two_agreeing_answers_decide() -> None:
    core = AutoNATCore(CFG)
    core.handle(0, Servers(frozenset({"a", "b", "c"})))
    first = asks(core.handle(5, Tick()))
    assert first == ["a", "b"]  # the first servers known, in a fixed order
    out = core.handle(6, Answered(first[0], Outcome.REFUSED))
    (spare,) = asks(out)  # the third server at once
    assert spare not in first
    assert core.handle(7, Answered(first[1], Outcome.UNREACHABLE)) == []
    out = core.handle(8, Answered(spare, Outcome.UNREACHABLE))
    assert out == [ReachabilityChanged(Reachability.UNKNOWN, Reachability.PRIVATE, ())]
    assert core.status is Reachability.PRIVATE
    assert core.next_deadline() == 8 + 900  # decided: refresh
    assert core.stats.refused == 1 and core.stats.unreachable == 2 and core.stats.changes == 1


def test_a_server_is_not_asked_again_within_peer_interval() -> None:
    core = AutoNATCore(AutoNATConfig(confirmations=2, boot_delay=1, retry_interval=10, peer_interval=90))
    core.handle(0, Servers(frozenset({"a"})))
    assert asks(core.handle(1, Tick())) == ["a"]
    core.handle(2, Answered("a", Outcome.REACHABLE, "/ip4/1.2.3.4/tcp/1"))
    assert asks(core.handle(11, Tick())) == []  # next round: "a" is the only server and was just asked
    assert asks(core.handle(91, Tick())) == ["a"]  # ... until its interval passed


def test_answers_nobody_asked_for_are_ignored() -> None:
    core = AutoNATCore(AutoNATConfig(confirmations=1))
    assert core.handle(0, Answered("stranger", Outcome.REACHABLE, "/ip4/1.2.3.4/tcp/1")) == []
    assert core.status is Reachability.UNKNOWN and core.stats.reachable == 0


def test_address_change_starts_a_round_at_once_and_forgets_answers() -> None:
    core = AutoNATCore(AutoNATConfig(confirmations=1, boot_delay=1))
    core.handle(0, Servers(frozenset({"a", "b"})))
    (peer,) = asks(core.handle(1, Tick()))
    out = core.handle(2, Answered(peer, Outcome.REACHABLE, "/ip4/1.2.3.4/tcp/1"))
    assert out == [ReachabilityChanged(Reachability.UNKNOWN, Reachability.PUBLIC, ("/ip4/1.2.3.4/tcp/1",))]
    out = core.handle(3, AddressesChanged())
    assert len(asks(out)) == 1 and len(core.verdict) == 0
    assert core.status is Reachability.PUBLIC  # kept until new answers say otherwise


def test_servers_that_leave_are_not_asked() -> None:
    core = AutoNATCore(AutoNATConfig(confirmations=2, boot_delay=1))
    core.handle(0, Servers(frozenset({"a", "b"})))
    core.handle(0.5, Servers(frozenset({"b"})))
    assert asks(core.handle(1, Tick())) == ["b"]


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        AutoNATConfig(confirmations=0)
    with pytest.raises(ConfigError):
        AutoNATConfig(dial_timeout=30, request_timeout=30)
    with pytest.raises(ConfigError):
        AutoNATConfig(peer_interval=0)
    with pytest.raises(ConfigError):
        AutoNATConfig(spare_asks=-1)


def test_a_server_that_comes_mid_round_is_asked_at_once() -> None:
    core = AutoNATCore(AutoNATConfig(confirmations=2, boot_delay=1))
    core.handle(0, Servers(frozenset({"a"})))
    assert asks(core.handle(1, Tick())) == ["a"]  # the round wants 2, only "a" is known
    assert asks(core.handle(2, Servers(frozenset({"a", "b"})))) == ["b"]


def test_an_answer_against_the_verdict_gathers_the_others_at_once() -> None:
    cfg = AutoNATConfig(confirmations=2, boot_delay=1, retry_interval=30, refresh_interval=900, peer_interval=1)
    core = AutoNATCore(cfg)
    core.handle(0, Servers(frozenset({"a", "b", "c"})))
    first = asks(core.handle(1, Tick()))
    for peer in first:
        core.handle(2, Answered(peer, Outcome.REACHABLE, "/ip4/1.2.3.4/tcp/1"))
    assert core.status is Reachability.PUBLIC and core.next_deadline() == 2 + 900
    (refresh,) = asks(core.handle(902, Tick()))  # a refresh asks one server
    out = core.handle(903, Answered(refresh, Outcome.UNREACHABLE))  # ... which says no (a NAT appeared)
    assert len(asks(out)) == 1  # another is asked at once, not a refresh later
    assert core.next_deadline() == 903 + 30 and core.stats.contradicted == 1
    (second,) = asks(out)
    out = core.handle(904, Answered(second, Outcome.UNREACHABLE))
    assert out == [ReachabilityChanged(Reachability.PUBLIC, Reachability.PRIVATE, ())]


def _refuse_all(core: AutoNATCore, now: float, out: list[object]) -> int:
    """Answer every question (and the questions that replace it) with a refusal; how many were asked."""
    asked, pending = 0, asks(out)
    while pending:
        asked += 1
        pending += asks(core.handle(now, Answered(pending.pop(0), Outcome.REFUSED)))
    return asked


def test_a_round_replaces_at_most_spare_asks_servers_that_refuse() -> None:
    # Servers without allow_private refuse a node on a private address, every one of them. The round used
    # to replace each refusal until no server was left: 49 questions every 90 s, 0.54 new streams a second per node.
    cfg = AutoNATConfig(confirmations=3, spare_asks=3, boot_delay=5, retry_interval=30, peer_interval=90)
    core = AutoNATCore(cfg)
    core.handle(0, Servers(frozenset(f"p{i:02d}" for i in range(49))))
    assert _refuse_all(core, 5, core.handle(5, Tick())) == 3 + 3
    assert core.stats.refused == 6 and core.status is Reachability.UNKNOWN
    # A server that connects later in the same round is not asked: the round spent its questions.
    assert asks(core.handle(6, Servers(frozenset(f"p{i:02d}" for i in range(50))))) == []


def test_rounds_without_a_definite_answer_back_off_to_the_refresh_interval() -> None:
    cfg = AutoNATConfig(confirmations=3, spare_asks=3, boot_delay=5, retry_interval=30, refresh_interval=900,
                        peer_interval=1)
    core = AutoNATCore(cfg)
    core.handle(0, Servers(frozenset(f"p{i:02d}" for i in range(49))))
    now, waits, total = 5.0, [], 0
    for _ in range(7):
        total += _refuse_all(core, now, core.handle(now, Tick()))
        deadline = core.next_deadline()
        assert deadline is not None
        waits.append(deadline - now)
        now = deadline
    assert waits == [30, 60, 120, 240, 480, 900, 900]
    assert total == 7 * 6
    # A definite answer ends the back-off: the next round is retry_interval after the one it came in
    # (not the 900 s this round was scheduled with), and the one after that as well.
    out = core.handle(now, Tick())
    core.handle(now + 2, Answered(asks(out)[0], Outcome.UNREACHABLE))
    assert core.status is Reachability.UNKNOWN  # one voice of three
    assert core.next_deadline() == now + 30
    later = now + 30
    _refuse_all(core, later, core.handle(later, Tick()))
    assert core.next_deadline() == later + 30


def test_an_address_change_ends_the_back_off() -> None:
    cfg = AutoNATConfig(confirmations=2, spare_asks=1, boot_delay=1, retry_interval=30, refresh_interval=900,
                        peer_interval=1)
    core = AutoNATCore(cfg)
    core.handle(0, Servers(frozenset({"a", "b", "c", "d"})))
    now = 1.0
    for _ in range(3):
        _refuse_all(core, now, core.handle(now, Tick()))
        now = core.next_deadline() or 0.0
    assert now == 1 + 30 + 60 + 120
    _refuse_all(core, now, core.handle(now, Tick()))
    assert core.next_deadline() == now + 240
    out = core.handle(now + 5, AddressesChanged())  # mid-wait: a round at once, as before
    assert len(asks(out)) == 2
    assert core.next_deadline() == now + 5 + 30  # and the silence about the old addresses is forgotten


def test_a_round_that_asks_nobody_does_not_count_as_quiet() -> None:
    # Two servers, each asked at most once per 90 s, rounds every 30 s: the rounds between find nobody
    # to ask. They say nothing about the servers, so they must not stretch the wait.
    cfg = AutoNATConfig(confirmations=2, spare_asks=1, boot_delay=5, retry_interval=30, refresh_interval=900,
                        peer_interval=90)
    core = AutoNATCore(cfg)
    core.handle(0, Servers(frozenset({"a", "b"})))
    assert _refuse_all(core, 5, core.handle(5, Tick())) == 2
    assert core.next_deadline() == 35 and core.quiet_rounds == 0
    assert asks(core.handle(35, Tick())) == []  # nobody eligible
    assert core.quiet_rounds == 1 and core.next_deadline() == 35 + 60  # the first round was quiet
    assert sorted(asks(core.handle(95, Tick()))) == ["a", "b"]  # 90 s after they were asked
    assert core.quiet_rounds == 1  # the empty round at 35 asked nobody: not counted
    assert core.next_deadline() == 95 + 60


def test_a_server_that_connects_during_a_back_off_waits_for_the_next_round() -> None:
    # Pulling the round in for every newcomer would undo the back-off wherever connections churn.
    cfg = AutoNATConfig(confirmations=2, spare_asks=1, boot_delay=1, retry_interval=30, refresh_interval=900,
                        peer_interval=1)
    core = AutoNATCore(cfg)
    core.handle(0, Servers(frozenset({"a", "b", "c"})))
    now = 1.0
    for _ in range(5):
        _refuse_all(core, now, core.handle(now, Tick()))
        now = core.next_deadline() or 0.0
    deadline = core.next_deadline()
    assert deadline is not None and core.quiet_rounds == 4
    assert asks(core.handle(deadline - 100, Servers(frozenset({"a", "b", "c", "new"})))) == []
    assert core.next_deadline() == deadline
    assert asks(core.handle(deadline, Tick()))[0] == "new"  # never asked: first in the next round


def test_a_question_a_round_sends_mid_way_makes_it_count() -> None:
    cfg = AutoNATConfig(confirmations=1, spare_asks=0, boot_delay=1, retry_interval=30, refresh_interval=900,
                        peer_interval=90)
    core = AutoNATCore(cfg)
    core.handle(0, Servers(frozenset({"a"})))
    _refuse_all(core, 1, core.handle(1, Tick()))  # quiet
    assert asks(core.handle(31, Tick())) == []  # "a" not eligible yet: this round asks nobody ...
    assert core.quiet_rounds == 1
    assert _refuse_all(core, 32, core.handle(32, Servers(frozenset({"a", "b"})))) == 1  # ... until "b" comes
    assert core.next_deadline() == 31 + 60
    core.handle(91, Tick())
    assert core.quiet_rounds == 2  # the round at 31 asked "b" and got no answer: it counts


def test_a_contradicted_verdict_gathers_its_voices_within_a_fresh_budget() -> None:
    cfg = AutoNATConfig(confirmations=2, spare_asks=3, boot_delay=1, retry_interval=30, refresh_interval=900,
                        peer_interval=1)
    core = AutoNATCore(cfg)
    core.handle(0, Servers(frozenset("abcdefgh")))
    first = asks(core.handle(1, Tick()))
    for peer in first:
        core.handle(2, Answered(peer, Outcome.REACHABLE, "/ip4/1.2.3.4/tcp/1"))
    assert core.status is Reachability.PUBLIC
    t = core.next_deadline() or 0.0
    out = core.handle(t, Tick())  # the refresh round: one answer wanted, 1 + 3 questions at most
    refused = 0
    while asks(out):
        peer = asks(out)[0]
        if refused < 3:
            refused += 1
            out = core.handle(t, Answered(peer, Outcome.REFUSED))
        else:
            out = core.handle(t, Answered(peer, Outcome.UNREACHABLE))  # against the verdict, its 4th question
            break
    assert core.stats.contradicted == 1
    assert len(asks(out)) == 1  # the others are gathered at once, although the round spent its budget
