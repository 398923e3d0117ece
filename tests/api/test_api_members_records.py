"""Membership (SWIM) and capability records through the control API, in process on real nodes."""

from __future__ import annotations

import pytest
import trio

from agentp2p.application.records.model import Capability
from agentp2p.application.records.service import RecordService
from agentp2p.client import ApiError
from agentp2p.protocol.swim.config import SwimConfig
from agentp2p.protocol.swim.service import SwimService
from agentp2p.testing import wait_until

from tests.api.api_fixtures import api_node, connected_pair


def _swim() -> SwimService:
    return SwimService(SwimConfig(probe_interval=0.2, probe_timeout=0.1, suspicion_mult=4), seed=1)


async def test_members_and_their_changes() -> None:
    async with api_node(services=(_swim(),)) as a, api_node(services=(_swim(),)) as b:
        a_id, b_id = str(a.node.peer_id), str(b.node.peer_id)
        assert await a.client.members() == []
        async with a.client.member_events() as events:
            assert events.first.event == "members" and events.first.data["peer_id"] == a_id
            assert events.first.data["members"] == []
            await connected_pair(a, b)
            with trio.fail_after(15):
                joined = await events.receive()
        assert (joined.kind, joined.peer_id, joined.previous) == ("joined", b_id, None)
        members = await a.client.members()
        assert [(m.peer_id, m.state) for m in members] == [(b_id, "alive")]
        assert members[0].addrs and members[0].since_s >= 0
        assert await a.client.members(["dead", "left"]) == []
        r = await a.client._http.get("/v1/members", params={"state": "zombie"})
        assert r.status_code == 400 and "zombie" in r.json()["message"]


async def test_a_member_that_leaves_is_reported() -> None:
    async with api_node(services=(_swim(),)) as a:
        async with api_node(services=(_swim(),)) as b:
            await connected_pair(a, b)
            await wait_until(lambda: a.node.services["swim"].state_of(b.node.peer_id) == "alive", what="b joins")
            async with a.client.member_events() as events:
                assert [m["state"] for m in events.first.data["members"]] == ["alive"]
                await b.node.services["swim"].leave()
                with trio.fail_after(15):
                    left = await events.receive()
        assert (left.kind, left.peer_id, left.previous) == ("left", str(b.node.peer_id), "alive")
        assert [m.state for m in await a.client.members(["left", "dead"])] == ["left"]


def _records(name: str, *caps: Capability | str) -> RecordService:
    return RecordService(name, description=f"{name} agent", capabilities=caps, settle=0.1)


async def test_own_record_shown_and_updated() -> None:
    svc = _records("alpha", Capability("translate", tags=("fr", "en"), input_schema_json='{"type":"object"}'))
    async with api_node(services=(svc,)) as a:
        own = await a.client.record()
        assert (own.peer_id, own.name, own.description) == (str(a.node.peer_id), "alpha", "alpha agent")
        cap = own.capability("translate")
        assert cap is not None and cap["tags"] == ["fr", "en"] and cap["input_schema"] == {"type": "object"}
        assert own.card is not None and own.card["name"] == "alpha"
        assert [s["id"] for s in own.card["skills"]] == ["translate"]

        updated = await a.client.update_record(
            capabilities=["summarize", {"name": "translate", "tags": ["de"], "output_schema": {"type": "string"}}],
            metadata={"owner": "tests"},
        )
        assert updated.seq > own.seq and updated.name == "alpha"  # fields not given are kept
        assert [c["name"] for c in updated.capabilities] == ["summarize", "translate"]
        assert updated.capability("translate")["output_schema"] == {"type": "string"}  # type: ignore[index]
        assert svc.record is not None and svc.record.seq == updated.seq and svc.record.metadata == {"owner": "tests"}

        card = {"name": "beta", "description": "from a card", "url": "https://example.org/a2a", "version": "2.0.0",
                "skills": [{"id": "chat", "name": "Chat", "description": "talks", "tags": ["text"]}]}
        from_card = await a.client.update_record(card=card)
        assert from_card.name == "beta" and [c["name"] for c in from_card.capabilities] == ["chat"]
        assert from_card.card is not None and from_card.card["url"] == "https://example.org/a2a"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "nothing to change"),
        ({"name": 5}, "name"),
        ({"name": " padded "}, "invalid record"),
        ({"capabilities": "translate"}, "list"),
        ({"capabilities": [5]}, "capabilities[0]"),
        ({"capabilities": [{"tags": ["x"]}]}, "needs a 'name'"),
        ({"capabilities": [{"name": "x", "colour": "red"}]}, "unknown field"),
        ({"capabilities": [{"name": "x", "tags": "x"}]}, "list of strings"),
        ({"capabilities": [{"name": "x", "input_schema": [1]}]}, "JSON object"),
        ({"capabilities": ["x", "x"]}, "duplicate"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"card": {"name": "x"}, "name": "y"}, "either"),
        ({"card": {"name": "x", "skills": "nope"}}, "A2A"),
        ({"shoe_size": 44}, "unknown field"),
    ],
)
async def test_bad_record_updates_are_400_and_change_nothing(body: dict, needle: str) -> None:
    svc = _records("alpha", "translate")
    async with api_node(services=(svc,)) as a:
        before = svc.record
        r = await a.client._http.put("/v1/records/self", json=body)
        assert r.status_code == 400, r.text
        assert needle in r.json()["message"], r.text
        assert svc.record == before


async def test_find_agents_and_fetch_a_record_from_another_node() -> None:
    alpha = _records("alpha", Capability("translate", tags=("fr",)), "summarize")
    beta = _records("beta", Capability("translate", tags=("de",)))
    async with api_node(services=(alpha,)) as a, api_node(services=(beta,)) as b:
        await connected_pair(a, b)
        with trio.fail_after(20):
            await alpha.published.wait()
            await beta.published.wait()
        a_id, b_id = str(a.node.peer_id), str(b.node.peer_id)
        with trio.fail_after(30):
            found = await b.client.find_agents("translate")
            while {f.peer_id for f in found} != {a_id, b_id}:  # a's record may still be on its way
                await trio.sleep(0.2)
                found = await b.client.find_agents("translate")
        assert {f.name for f in found} == {"alpha", "beta"}
        by_id = {f.peer_id: f for f in found}
        assert by_id[a_id].liveness == "alive" and by_id[a_id].capability["tags"] == ["fr"]
        assert by_id[a_id].record.card is None
        french = await b.client.find_agents("translate", tags=["fr"], card=True)
        assert [f.peer_id for f in french] == [a_id]
        assert french[0].record.card is not None and french[0].record.card["name"] == "alpha"
        assert await b.client.find_agents("translate", limit=1) != []
        assert await b.client.find_agents("juggling") == []

        record = await b.client.get_record(a_id)
        assert record is not None and record.name == "alpha" and record.card is not None
        fresh = await b.client.get_record(a_id, fresh=True)
        assert fresh is not None and fresh.seq == record.seq
        own = await b.client.get_record(b_id)
        assert own is not None and own.name == "beta"

        http = b.client._http
        for params in ({}, {"capability": ""}, {"capability": "x", "limit": "0"}, {"capability": "x", "card": "maybe"},
                       {"capability": "x", "tag": ""}):
            r = await http.get("/v1/records", params=params)
            assert r.status_code == 400, (params, r.text)
        r = await http.get("/v1/records/not-a-peer")
        assert r.status_code == 400


async def test_a_record_nobody_has_is_404() -> None:
    async with api_node(services=(_records("alpha", "translate"),)) as a:
        nobody = "12D3KooWQ4gTjYXC7bQTQgnHVgZiJgUfsZDh7uxRGZNWjhmFmmK5"
        assert await a.client.get_record(nobody) is None
        r = await a.client._http.get(f"/v1/records/{nobody}")
        assert r.status_code == 404 and r.json()["error"] == "not_found"


async def test_swim_off_and_no_own_record_are_503_but_finding_agents_works() -> None:
    """Without SWIM, members is 503; without a record of its own, the node's
    record is 503 — but it still finds agents (issue #11: that was 503 too)."""
    async with api_node(swim=False) as a, api_node(services=(_records("alpha", "translate"),)) as b:
        for call in (a.client.members(), a.client.record()):
            with pytest.raises(ApiError) as err:
                await call
            assert (err.value.status, err.value.code) == (503, "service_unavailable")
        assert await a.client.find_agents("translate") == []  # nobody known yet: empty, not an error
        await connected_pair(a, b)
        with trio.fail_after(30):
            while not (found := await a.client.find_agents("translate")):
                await trio.sleep(0.1)
        assert [f.peer_id for f in found] == [str(b.node.peer_id)]


async def test_node_stats_with_a_record_service() -> None:
    """Finding 6: one rejected record made /v1/node/stats fail for good (a
    Counter turned into tuple keys). A peer announces garbage; stats still
    answer, with the rejection counted under a string key."""
    from agentp2p.application.records.announce import ANNOUNCE_TOPIC

    async with api_node(services=(_records("alpha", "translate"),)) as a, api_node() as b:
        await connected_pair(b, a)
        await wait_until(lambda: a.node.peer_id in b.node.topic_peers(ANNOUNCE_TOPIC), what="a's subscription")
        await b.node.publish(ANNOUNCE_TOPIC, b"not a record envelope")
        svc = a.node.services["records"]
        await wait_until(lambda: svc.counters.rejections("announce") == 1, what="the rejection")  # type: ignore[attr-defined]
        stats = await a.client.stats()
        rejected = stats["records"]["rejected"]
        assert sum(rejected.values()) == 1
        (key,) = rejected
        assert key.startswith("announce:")
