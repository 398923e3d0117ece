"""``find_agents`` ends the DHT lookup once it has ``limit`` live agents (real sockets).

The searcher's routing table holds the agent and a peer whose DHT never
answers. A lookup that ran to its end would wait for that peer's request
timeout (60 s here); asking for one agent must return with the agent as
soon as its record is fetched, and cancel the lookup's other requests.
"""

from __future__ import annotations

import trio

from agentp2p.application.records.service import RecordService, capability_provider_key
from agentp2p.config import DHTConfig
from agentp2p.node import Node
from agentp2p.protocol.dht import provider_key
from agentp2p.protocol.kademlia import PROTOCOL_ID
from agentp2p.testing import local_config, wait_until

PATIENT_CLIENT = DHTConfig(mode="client", request_timeout=60.0, query_timeout=120.0)


async def _silent(stream: object) -> None:
    await trio.sleep_forever()


async def test_one_live_agent_ends_the_lookup_without_waiting_for_a_silent_peer() -> None:
    agent_svc = RecordService("translator", capabilities=["translate"])
    searcher_svc = RecordService.lookup_only()
    async with Node(local_config(swim=False)) as hub:
        async with Node(local_config(swim=False, bootstrap=[hub.addrs[0]]), services=[agent_svc]) as agent:
            await wait_until(lambda: agent_svc.published.is_set(), timeout=30, what="the agent to publish")
            # A DHT client: nobody stores provider records with it, so the
            # provider has to come from the network, through the progress path.
            cfg = local_config(swim=False, dht=PATIENT_CLIENT, bootstrap=[hub.addrs[0]])
            async with Node(cfg, services=[searcher_svc]) as searcher, Node(local_config(swim=False)) as mute:
                # Silent before anyone connects: no stream to it ever gets an answer.
                mute.set_stream_handler(PROTOCOL_ID, _silent)
                await mute.connect(searcher.addrs[0])
                # Both in the table before the lookup starts: a lookup seeded
                # with the mute peer alone would wait for it (a running lookup
                # takes no new candidates from the table).
                await wait_until(lambda: {mute.peer_id, hub.peer_id} <= set(searcher.dht.routing_table_peers()),
                                 what="the hub and the mute peer in the searcher's table")
                key = provider_key(capability_provider_key("translate"))
                assert searcher.dht.local_providers(key) == []
                before = searcher.dht.stats()["adapter"]

                with trio.fail_after(30):  # a full lookup would wait 60 s for the mute peer
                    found = await searcher_svc.find_agents("translate", limit=1)

                assert [a.record.peer_id for a in found] == [agent.peer_id]
                stats = searcher.dht.stats()["adapter"]
                assert searcher_svc.counters.found_early == 1
                assert stats["queries_cancelled"] == before["queries_cancelled"] + 1
                # The mute peer's request was cancelled, not left to time out.
                assert stats["timeouts"] == before["timeouts"]
                # (Other queries, the node's own self-lookup among them, may still
                # be waiting for the mute peer: only ours is asserted on.)


async def test_a_full_lookup_still_runs_when_fewer_agents_exist_than_asked() -> None:
    agent_svc = RecordService("translator", capabilities=["translate"])
    searcher_svc = RecordService.lookup_only()
    async with Node(local_config(swim=False), services=[agent_svc]) as agent:
        async with Node(local_config(swim=False, bootstrap=[agent.addrs[0]]), services=[searcher_svc]) as searcher:
            await wait_until(lambda: agent_svc.published.is_set(), timeout=30, what="the agent to publish")
            with trio.fail_after(30):
                found = await searcher_svc.find_agents("translate", limit=2)
            assert [a.record.peer_id for a in found] == [agent.peer_id]
            assert searcher_svc.counters.found_early == 0
            assert searcher.dht.stats()["adapter"]["queries_cancelled"] == 0
