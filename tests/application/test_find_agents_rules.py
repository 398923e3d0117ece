"""What counts towards ``find_agents``' early stop, on a scripted DHT (virtual time).

The lookup's providers arrive on a script; the agents' answers, SWIM's
verdicts and the node's trust are stand-ins. What is checked is the rule:
only matching, trusted agents known to be up end the lookup, and nothing
the old full-lookup path guaranteed is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from agentp2p.application.records import AgentRecord, Liveness
from agentp2p.application.records.liveness import PingLiveness
from agentp2p.application.records.service import RecordService
from agentp2p.application.records.validator import wall_clock_ms
from tests.application.records_fixtures import keypair, make_record

MAX_LOOKUP = 100.0  # virtual seconds a full lookup would take


class ScriptedDHT:
    """Names providers on a schedule, then takes the rest of a long lookup."""

    def __init__(self, script: list[tuple[float, list[PeerInfo]]], *, report: bool = True) -> None:
        self.script, self.report = script, report
        self.calls = 0
        self.cancelled = self.finished = False

    async def find_providers(self, key: str, count: int = 20, *,
                             on_provider: Callable[[PeerInfo], None] | None = None) -> list[PeerInfo]:
        self.calls += 1
        named: list[PeerInfo] = []
        try:
            for delay, infos in self.script:
                await trio.sleep(delay)
                for info in infos:
                    named.append(info)
                    if self.report and on_provider is not None:
                        on_provider(info)
            await trio.sleep(MAX_LOOKUP)
        except trio.Cancelled:
            self.cancelled = True
            raise
        self.finished = True
        return named


class _Dialer:
    def add_addrs(self, *_: Any) -> None:
        pass


class _Node:
    def __init__(self, dht: ScriptedDHT) -> None:
        self.peer_id = ID.from_pubkey(keypair(200).public_key)
        self.dht = dht
        self.dialer = _Dialer()


class World:
    """Agents 0..n-1: their records, who answers, SWIM's verdicts, distrust."""

    def __init__(self, n: int) -> None:
        now = wall_clock_ms()
        self.records: list[AgentRecord] = [make_record(keypair(i + 1), now_ms=now) for i in range(n)]
        self.ids = [r.peer_id for r in self.records]
        self.answering: set[ID] = set(self.ids)
        self.pingable: set[ID] = set(self.ids)
        self.swim: dict[ID, Liveness] = {}
        self.distrusted: set[ID] = set()
        self.fetched: list[ID] = []
        self.dht_gets: list[ID] = []

    def info(self, i: int) -> PeerInfo:
        return PeerInfo(self.ids[i], [])

    def service(self, dht: ScriptedDHT) -> RecordService:
        svc = RecordService.lookup_only()
        svc._node = _Node(dht)  # type: ignore[assignment]

        async def ping(peer: ID, timeout: float) -> float:
            await trio.sleep(0.05)
            if peer not in self.pingable:
                raise OSError("unreachable")
            return 0.05

        svc._pings = PingLiveness(ping, timeout=1.0, fresh_for=600.0)
        by_id = dict(zip(self.ids, self.records))

        async def fetch_record(peer: ID, *, via: ID | None = None) -> AgentRecord | None:
            self.fetched.append(peer)
            await trio.sleep(0.2)
            return by_id[peer] if peer in self.answering else None

        async def dht_record(peer: ID) -> AgentRecord | None:
            self.dht_gets.append(peer)
            await trio.sleep(1.0)
            return by_id.get(peer)

        svc.fetch_record = fetch_record  # type: ignore[method-assign]
        svc.dht_record = dht_record  # type: ignore[method-assign]
        svc.use_liveness(lambda p: self.swim.get(p, Liveness.UNKNOWN))
        svc.use_trust(lambda p: p in self.distrusted)
        return svc


async def _find(svc: RecordService, limit: int) -> tuple[list[ID], float]:
    t0 = trio.current_time()
    found = await svc.find_agents("translate", limit=limit)
    return [a.record.peer_id for a in found], trio.current_time() - t0


async def test_the_first_live_agent_ends_the_lookup(autojump_clock: object) -> None:
    w = World(3)
    dht = ScriptedDHT([(0.5, [w.info(0)]), (0.5, [w.info(1), w.info(2)])])
    svc = w.service(dht)
    got, took = await _find(svc, 1)
    assert got == [w.ids[0]] and took < 1.0  # 0.5 s to be named, 0.2 s to answer
    assert dht.cancelled and not dht.finished and svc.counters.found_early == 1


async def test_an_agent_swim_holds_dead_is_neither_fetched_nor_counted(autojump_clock: object) -> None:
    w = World(2)
    w.swim[w.ids[0]] = Liveness.DEAD  # wrongly, perhaps: it would answer
    svc = w.service(ScriptedDHT([(0.5, [w.info(0)]), (2.0, [w.info(1)])]))
    got, _ = await _find(svc, 1)
    assert got == [w.ids[1]] and w.ids[0] not in w.fetched


async def test_a_distrusted_agent_does_not_end_the_lookup(autojump_clock: object) -> None:
    w = World(2)
    w.distrusted.add(w.ids[0])
    svc = w.service(ScriptedDHT([(0.5, [w.info(0)]), (2.0, [w.info(1)])]))
    got, took = await _find(svc, 1)
    assert got == [w.ids[1]] and took > 2.5  # waited for the trusted one
    got, _ = await _find(svc, 2)  # asked for two: the distrusted one is listed, last
    assert got == [w.ids[1], w.ids[0]]


async def test_a_cached_agent_swim_holds_alive_counts_without_a_fetch(autojump_clock: object) -> None:
    w = World(1)
    w.swim[w.ids[0]] = Liveness.ALIVE
    dht = ScriptedDHT([(0.5, [w.info(0)])])
    svc = w.service(dht)
    assert svc.cache.put(w.records[0], b"envelope", wall_clock_ms())
    got, took = await _find(svc, 1)
    assert got == [w.ids[0]] and w.fetched == [] and took < 1.0 and dht.cancelled


async def test_a_cached_agent_that_does_not_answer_costs_a_ping_not_a_dht_get(autojump_clock: object) -> None:
    w = World(1)
    w.answering.clear()
    dht = ScriptedDHT([(0.5, [w.info(0)])])
    svc = w.service(dht)
    assert svc.cache.put(w.records[0], b"envelope", wall_clock_ms())
    got, _ = await _find(svc, 1)
    assert w.dht_gets == []
    assert got == [w.ids[0]]  # a ping says it is up: listed, and it counts
    assert dht.cancelled and svc.counters.found_early == 1


async def test_fewer_agents_than_asked_still_run_the_whole_lookup(autojump_clock: object) -> None:
    w = World(2)
    w.pingable.discard(w.ids[1])
    w.answering.discard(w.ids[1])
    dht = ScriptedDHT([(0.5, [w.info(0), w.info(1)])])
    svc = w.service(dht)
    got, took = await _find(svc, 3)
    assert dht.finished and took >= MAX_LOOKUP and svc.counters.found_early == 0
    assert got == [w.ids[0]]  # the unreachable one was judged (pinged) and dropped


async def test_providers_a_dht_returns_without_reporting_them_are_used(autojump_clock: object) -> None:
    w = World(2)
    dht = ScriptedDHT([(0.5, [w.info(0), w.info(1)])], report=False)
    got, _ = await _find(w.service(dht), 5)
    assert sorted(got, key=ID.to_bytes) == sorted(w.ids, key=ID.to_bytes)


async def test_no_limit_no_lookup(autojump_clock: object) -> None:
    w = World(1)
    dht = ScriptedDHT([(0.5, [w.info(0)])])
    svc = w.service(dht)
    assert await svc.find_agents("translate", limit=0) == []
    assert dht.calls == 0 and svc.counters.found_early == 0


async def test_an_agent_found_only_in_the_dht_counts_once_a_ping_says_it_is_up(autojump_clock: object) -> None:
    w = World(1)
    w.answering.clear()  # its record protocol is broken, its ping is not
    dht = ScriptedDHT([(0.5, [w.info(0)])])
    svc = w.service(dht)
    got, _ = await _find(svc, 1)
    assert w.dht_gets == [w.ids[0]] and got == [w.ids[0]] and dht.cancelled


async def test_the_local_agent_alone_meeting_the_limit_asks_nothing(autojump_clock: object) -> None:
    w = World(1)
    dht = ScriptedDHT([(0.5, [w.info(0)])])
    svc = w.service(dht)
    svc._record = w.records[0]  # stand-in for our own agent's record
    svc._node.peer_id = w.ids[0]  # type: ignore[union-attr]
    got, _ = await _find(svc, 1)
    assert got == [w.ids[0]] and dht.calls == 0 and svc.counters.found_early == 0
