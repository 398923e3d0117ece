"""``GET /v1/pubsub/peers``, ``client.pubsub_peers`` and ``agentp2p pubsub peers TOPIC``,
on real sockets: what our gossipsub router says about a topic — who subscribes,
who is in our mesh, and each peer's score.

Three in-process nodes: ``a`` (asked), ``b`` and ``c``, all subscribed to one
topic, ``a`` connected to both. ``b`` delivers ``a`` a message first (gossipsub
P2: about +1), ``c`` is given an application score of -100 (P5), so ``a``'s next
heartbeat prunes it: ``b`` is a mesh peer scoring about 1, ``c`` a
subscriber outside the mesh scoring -100. The CLI runs as a user runs it, a
subprocess talking to ``a``'s API.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from agentp2p.client import ApiError
from agentp2p.testing import run_cli_async, wait_until
from tests.api.api_fixtures import ApiNode, api_node

TOPIC = "room"


def _cli_flags(a: ApiNode, tmp_path: Path) -> list[str]:
    token = tmp_path / "a.token"
    token.write_text(a.api.token)
    token.chmod(0o600)
    return ["--api", a.api.base_url.removeprefix("http://"), "--token-file", str(token)]


async def test_a_mesh_peer_and_a_pruned_subscriber_are_listed_with_their_scores(tmp_path: Path) -> None:
    async with api_node(swim=False) as a, api_node(swim=False) as b, api_node(swim=False) as c:
        b_id, c_id = str(b.node.peer_id), str(c.node.peer_id)
        async with a.node.subscribe(TOPIC) as sub, b.node.subscribe(TOPIC), c.node.subscribe(TOPIC):
            await a.node.connect(b.node.addrs[0])
            await a.node.connect(c.node.addrs[0])
            await wait_until(
                lambda: {b.node.peer_id, c.node.peer_id} <= set(a.node.pubsub.mesh_peers(TOPIC)),
                what="b and c in a's mesh",
            )
            await b.node.publish(TOPIC, b"first from b")
            with trio.fail_after(10):
                assert (await sub.receive()).data == b"first from b"
            a.node.pubsub.set_app_score(c.node.peer_id, -100.0)
            await wait_until(lambda: c.node.peer_id not in a.node.pubsub.mesh_peers(TOPIC), what="c pruned by a")

            view = await a.client.pubsub_peers(TOPIC)
            assert (view.topic, view.subscribed, view.scoring) == (TOPIC, True, True)
            assert view.mesh == [b_id]
            assert sorted(view.peers) == sorted([b_id, c_id])
            assert view.others == [c_id]
            # P2: one first delivery of a valid message, +1 decaying by ~0.8 % a second (and P1, +1/3600 a second)
            assert 0.5 < view.scores[b_id] < 1.5
            assert view.scores[c_id] == pytest.approx(-100.0, abs=0.5)  # P5, out of the mesh: no P1
            # The old reading of the same endpoint still works.
            assert sorted(await a.client.topic_peers(TOPIC)) == sorted([b_id, c_id])

            out = await run_cli_async(tmp_path, "pubsub", "peers", TOPIC, *_cli_flags(a, tmp_path))
            assert out.returncode == 0, out.stderr
            lines = out.stdout.splitlines()
            assert len(lines) == 2, out.stdout
            first, second = (line.split() for line in lines)
            assert first[:3] == [b_id, "mesh", "score"] and 0.5 < float(first[3]) < 1.5
            assert second == [c_id, "subscribed", "score", "-100.00"]


async def test_unknown_topic_is_empty_and_an_invalid_one_is_refused(tmp_path: Path) -> None:
    async with api_node(swim=False) as a, api_node(swim=False) as b:
        await a.node.connect(b.node.addrs[0])
        async with a.node.subscribe("mine"):
            unknown = await a.client.pubsub_peers("nobody/here")
            assert (unknown.subscribed, unknown.peers, unknown.mesh, unknown.scores) == (False, [], [], {})
            alone = await a.client.pubsub_peers("mine")  # ours, but no peer has joined it
            assert (alone.subscribed, alone.peers, alone.mesh) == (True, [], [])

            for bad, says in (("", "non-empty"), ("x" * 257, "longer than 256")):
                with pytest.raises(ApiError) as err:
                    await a.client.pubsub_peers(bad)
                assert err.value.status == 400 and err.value.code == "bad_request" and says in err.value.message

            flags = _cli_flags(a, tmp_path)
            out = await run_cli_async(tmp_path, "pubsub", "peers", "nobody/here", "--json", *flags)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout) == {
                "topic": "nobody/here", "subscribed": False, "scoring": True, "peers": [], "mesh": [], "scores": {},
            }  # fmt: skip
            out = await run_cli_async(tmp_path, "pubsub", "peers", "nobody/here", *flags)
            assert out.returncode == 0 and out.stdout == ""
            assert "not subscribed to 'nobody/here'" in out.stderr and "no peer is known" in out.stderr
            out = await run_cli_async(tmp_path, "pubsub", "peers", "x" * 300, *flags)
            assert out.returncode == 1 and out.stdout == ""
            assert out.stderr.startswith("agentp2p: error:") and "longer than 256" in out.stderr
