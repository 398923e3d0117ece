"""The devnet's pure parts: the command language, the layout, partitions and
the summary (no processes; the real thing is in test_devnet_run.py)."""

from __future__ import annotations

import random

import pytest
from trio.testing import memory_stream_one_way_pair

from agentp2p.devnet.commands import CommandError, format_nodes, parse_command, parse_nodes, split_run
from agentp2p.devnet.layout import blocks, capability_of, choose_bootstraps, worker_of
from agentp2p.devnet.partition import Partitions
from agentp2p.devnet.summary import RateMeter, converged, summarize
from agentp2p.devnet.views import ViewWait, decode_bitmap, encode_bitmap, expected_masks, mask, quantiles
from agentp2p.devnet.wire import LineReader, WireError, encode


def test_node_lists_take_ranges_commas_and_spaces() -> None:
    assert parse_nodes(["3", "5,7-9"], 20) == (3, 5, 7, 8, 9)
    assert parse_nodes("1,1,0-1", 20) == (0, 1)
    for bad, why in (("20", "nodes 0-19"), ("x", "not a node index"), ("5-3", "low index"), ("-1", "not a node index")):
        with pytest.raises(CommandError, match=why):
            parse_nodes(bad, 20)
    assert format_nodes((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    assert parse_nodes(format_nodes((0, 1, 2, 5, 7, 8)), 20) == (0, 1, 2, 5, 7, 8)


def test_commands_parse_into_what_they_ask() -> None:
    n = 20
    assert parse_command("  # a comment", n) is None and parse_command("", n) is None
    assert parse_command("kill 3 5-6", n).nodes == (3, 5, 6)  # type: ignore[union-attr]
    part = parse_command("partition 0-9 10-19", n)
    assert part is not None and part.groups == (tuple(range(10)), tuple(range(10, 20)))
    pub = parse_command("publish 4 hello  world", n)
    assert pub is not None and pub.nodes == (4,) and pub.text == "hello  world"
    find = parse_command("FIND 2 cap-01", n)
    assert find is not None and (find.name, find.nodes, find.text) == ("find", (2,), "cap-01")
    assert parse_command("wait converged", n).seconds == 60.0  # type: ignore[union-attr]
    assert parse_command("wait converged 5", n).seconds == 5.0  # type: ignore[union-attr]
    assert parse_command("wait records", n).text == "records"  # type: ignore[union-attr]
    views = parse_command("wait views 30", n)
    assert views is not None and (views.text, views.seconds) == ("views", 30.0)
    assert parse_command("stats", n).nodes == ()  # type: ignore[union-attr]
    assert parse_command("exit", n).name == "quit"  # type: ignore[union-attr]
    for bad, why in (("partition 0-9 5-12", "both sides"), ("partition 0-9", "usage"), ("publish 3", "usage"),
                     ("find 1-2 cap", "one node"), ("heal now", "no arguments"), ("sleep -1", "between"),
                     ("wait forever", "usage"), ("kill", "usage"), ("dance 3", "unknown command")):  # fmt: skip
        with pytest.raises(CommandError, match=why):
            parse_command(bad, n)
    assert split_run("find 3 cap-01;  ; publish 1 hi;stats") == ["find 3 cap-01", "publish 1 hi", "stats"]


def test_layout_blocks_bootstraps_and_capabilities() -> None:
    assert blocks(10, 3) == [range(0, 4), range(4, 7), range(7, 10)]
    assert blocks(2, 5) == [range(0, 1), range(1, 2)]  # never an empty worker
    assert worker_of(6, blocks(10, 3)) == 1
    rng = random.Random(1)
    picks = [tuple(sorted(choose_bootstraps([0, 1, 2], 2, rng))) for _ in range(200)]
    assert set(picks) == {(0, 1), (0, 2), (1, 2)}  # spread over the seeds
    assert choose_bootstraps([0], 2, rng) == [0]
    assert [capability_of(i, 3) for i in range(4)] == ["cap-00", "cap-01", "cap-02", "cap-00"]


def test_partitions_deny_lists_and_components() -> None:
    p = Partitions()
    nodes = range(6)
    assert p.component(0, nodes) == set(nodes)
    p.add([0, 1, 2], [3, 4, 5])
    ids = {i: f"peer{i}" for i in range(5)}  # node 5 never started
    deny = p.deny_lists([0, 1, 2], [3, 4, 5], ids)
    assert deny[0] == ["peer3", "peer4"] and deny[4] == ["peer0", "peer1", "peer2"] and 5 not in deny
    assert p.component(0, nodes) == {0, 1, 2} and p.component(4, nodes) == {3, 4, 5}
    assert p.component(0, [1, 2]) == set()  # not running itself
    # A partition that leaves nodes outside both groups does not split: they relay.
    q = Partitions()
    q.add([0, 1], [2, 3])
    assert q.component(0, range(5)) == {0, 1, 2, 3, 4}
    assert q.separated(0, 3) and not q.separated(0, 4)
    p.clear()
    assert not p and p.component(0, nodes) == set(nodes)
    with pytest.raises(ValueError):
        p.add([1], [1])


def test_summary_counts_and_rates() -> None:
    meter = RateMeter()
    assert meter.update(10.0, {0: 5, 1: 5}) is None
    assert meter.update(12.0, {0: 9, 1: 7, 2: 100}) == 3.0  # node 2 is new: not counted
    stats = [
        {"index": 0, "running": True, "mesh": 3, "published": True, "deliveries": 1,
         "swim_counters": {"suspected": 2, "refutations": 1}},
        {"index": 1, "running": True, "mesh": 5, "published": False, "deliveries": 1,
         "swim_counters": {"suspected": 3}},
        {"index": 2, "running": False, "killed": True, "deliveries": 0},
        {"index": 3, "running": False, "error": "RuntimeError: boom", "deliveries": 0},
    ]
    s = summarize(t=5.0, nodes=6, node_stats=stats, paused={4, 5}, observer=0, view={1: "alive", 2: "suspect"},
                  running_expected={1}, msgs_per_s=2.5, probe=None, silent_workers=[])  # fmt: skip
    assert (s.running, s.killed, s.failed, s.paused, s.published) == (2, 1, 1, 2, 1)
    assert s.mesh == (3, 4.0, 5)
    assert s.swim == {"alive": 1, "suspect": 1, "dead": 0, "left": 0, "unknown": 0}
    text = s.text()
    assert "nodes 2/6 running (2 paused, 1 killed, 1 failed)" in text and "mesh 3/4.0/5" in text
    assert "records 1/2" in text and "swim@0 alive 1 suspect 1" in text
    assert s.as_dict()["mesh"] == {"min": 3, "avg": 4.0, "max": 5}
    assert s.as_dict()["swim_counters"] == {"suspected": 5, "refutations": 1}  # summed over the running nodes
    assert s.swim_counters_by_node == {0: {"suspected": 2, "refutations": 1}, 1: {"suspected": 3}}
    assert converged({1: "alive", 2: "dead"}, {1}) and not converged({1: "alive", 2: "alive"}, {1})
    assert not converged({1: "suspect"}, {1})
    plain = [{k: v for k, v in stats[0].items() if k != "swim_counters"}]  # the periodic summary asks for none
    silent = summarize(t=1.0, nodes=2, node_stats=plain, paused=set(), observer=0, view=None,
                       running_expected=set(), msgs_per_s=None, probe=None, silent_workers=[1])  # fmt: skip
    assert "swim@0: no answer" in silent.text() and "no answer from worker 1" in silent.text()
    assert "swim_counters" not in silent.as_dict() and "swim_counters_by_node" not in silent.as_dict()


async def test_wire_lines_round_trip_and_are_bounded() -> None:
    send, recv = memory_stream_one_way_pair()
    reader = LineReader(recv)
    await send.send_all(encode({"id": 1, "ok": True}) + b"\n" + encode({"id": 2})[:-1])
    assert await reader.next() == {"id": 1, "ok": True}
    await send.send_all(b"\n[1]\n")
    assert await reader.next() == {"id": 2}
    with pytest.raises(WireError, match="not a JSON object"):
        await reader.next()
    await send.aclose()
    assert await reader.next() is None


def test_view_bitmaps_round_trip_and_stay_small() -> None:
    for n in (1, 7, 8, 9, 1000):
        picked = sorted(random.Random(n).sample(range(n), n // 3))
        assert decode_bitmap(encode_bitmap(picked, n)) == mask(picked)
    assert len(encode_bitmap(range(1000), 1000)) == 168  # 125 bytes in base64, whatever the view holds
    assert decode_bitmap(encode_bitmap([3, 2000], 10)) == mask([3])  # an index past n is left out
    with pytest.raises(ValueError):
        decode_bitmap("not base64!")


def test_views_match_only_when_every_node_holds_exactly_what_it_reaches() -> None:
    # Nodes 0-3, 2 and 3 cut off from 0 and 1: each side expects the other failed.
    expected = {0: mask([1]), 1: mask([0]), 2: mask([3]), 3: mask([2])}
    wait = ViewWait()
    views = {0: (mask([0, 1]), 0), 1: (mask([0, 1, 2]), 0), 2: (mask([3]), mask([0])), 3: (mask([2]), 0)}
    assert not wait.update(1.0, expected, views)  # its own bit is ignored; 1 holds 2 alive; 2 suspects 0
    assert wait.first_match == {0: 1.0, 3: 1.0}
    assert wait.mismatched == {1: (0, 1, 0), 2: (0, 0, 1)}
    views[1] = (mask([0]), 0)
    del views[2]  # its worker did not answer
    assert not wait.update(2.0, expected, views) and wait.unanswered == 1
    views[2] = (mask([3]), 0)
    assert wait.update(3.0, expected, views)
    assert wait.first_match == {0: 1.0, 1: 2.0, 2: 3.0, 3: 1.0}  # the first match is kept


def test_expected_masks_and_quantiles() -> None:
    parts = Partitions()
    parts.add([0, 1], [2, 3])
    running = [0, 1, 2, 3]
    assert expected_masks(running, lambda i: parts.component(i, running)) == {
        0: mask([1]), 1: mask([0]), 2: mask([3]), 3: mask([2])}
    assert quantiles([]) is None  # nobody matched is not "everybody at once"
    assert quantiles([3.0, 1.0, 2.0]) == {"p50": 2.0, "p99": 3.0, "max": 3.0}


def test_join_rate_spaces_the_starts_on_trio_time() -> None:
    import trio
    import trio.testing

    from agentp2p.devnet.console import Console
    from agentp2p.devnet.controller import Devnet, DevnetOptions

    def starts(rate: float) -> list[float]:
        devnet = Devnet(DevnetOptions(nodes=5, join_rate=rate), Console(json_mode=True))
        times: list[float] = []

        async def main() -> None:
            for _ in range(4):
                await devnet._join_turn()
                times.append(trio.current_time())
            await trio.sleep(10)  # a pause: the next start is not owed to the past
            await devnet._join_turn()
            times.append(trio.current_time())

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        return [round(t - times[0], 6) for t in times]

    assert starts(2.0) == [0.0, 0.5, 1.0, 1.5, 11.5]
    assert starts(0.0) == [0.0, 0.0, 0.0, 0.0, 10.0]  # no rate: no wait


@pytest.mark.parametrize("seeds", [2, 6])
def test_nodes_join_seeds_already_up_at_the_join_rate(seeds: int) -> None:
    """Node 0 alone, then the other seeds, then the rest, one a second at
    ``join_rate`` 1, each from seeds already up. With every node a seed the
    seeds once all started at once on node 0, the join rate ignored."""
    from types import SimpleNamespace

    import trio
    import trio.testing

    from agentp2p.devnet.console import Console
    from agentp2p.devnet.controller import Devnet, DevnetOptions

    devnet = Devnet(DevnetOptions(nodes=6, seeds=seeds, bootstraps=2, join_rate=1.0), Console(json_mode=True))
    devnet.workers = [SimpleNamespace(nodes=range(0, 3)), SimpleNamespace(nodes=range(3, 6))]  # type: ignore[list-item]
    starts: list[tuple[int, list[int], float]] = []

    async def start(index: int, bootstraps: list[int]) -> bool:
        starts.append((index, sorted(bootstraps), trio.current_time()))
        await trio.sleep(0.1)  # up a moment later
        devnet.up.add(index)
        return True

    async def settled() -> None:
        return None

    devnet._start_node = start  # type: ignore[method-assign]
    devnet._settle = settled  # type: ignore[method-assign]
    trio.run(devnet._grow, clock=trio.testing.MockClock(autojump_threshold=0))

    assert starts[0][:2] == (0, [])
    times = sorted(t for _, _, t in starts[1:])
    assert [round(t - times[0], 6) for t in times] == [0.0, 1.0, 2.0, 3.0, 4.0]  # the join rate, seeds included
    up_before = {i: {j for j, _, tj in starts if tj + 0.1 <= t} for i, _, t in starts}
    for i, boots, _ in starts[1:]:
        assert boots and set(boots) <= up_before[i] and all(b < seeds for b in boots), (i, boots)
    order = [i for i, _, _ in sorted(starts, key=lambda s: s[2])]
    assert set(order[:seeds]) == set(range(seeds))  # the seeds before everyone else
