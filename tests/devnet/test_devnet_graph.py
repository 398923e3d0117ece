"""The devnet's graph for the dashboard (pure): states, undirected edges, mesh links."""

from __future__ import annotations

import pytest

from agentp2p.devnet.commands import CommandError, parse_command
from agentp2p.devnet.graph import devnet_view

IDS = {i: f"peer{i}" for i in range(5)}


def _report(i: int, peers: list[int], mesh: list[int] = ()) -> dict:  # type: ignore[assignment]
    return {"index": i, "peer_id": IDS[i], "peers": [IDS[p] for p in peers], "mesh": [IDS[p] for p in mesh],
            "swim_alive": 3, "deliveries": 2}  # fmt: skip


def test_states_come_from_the_controller_and_links_from_the_nodes() -> None:
    view = devnet_view(
        nodes=6, peer_ids=IDS, up={0, 1, 2, 3, 4}, killed={4}, paused={3}, failed={}, published=7,
        reports=[_report(0, [1, 2, 4], mesh=[1]), _report(1, [0]), _report(2, [0, 3])],
    )  # fmt: skip
    states = {n["label"]: n["state"] for n in view["nodes"]}
    assert states == {"n0": "up", "n1": "up", "n2": "up", "n3": "paused", "n4": "killed", "n5": "starting"}
    assert view["nodes"][5]["id"] == "node-5"  # no peer ID yet
    # One edge per connection, whichever end reports it; a mesh link if either end meshes; none to the killed.
    assert view["edges"] == [
        {"a": "peer0", "b": "peer1", "kind": "mesh"},
        {"a": "peer0", "b": "peer2", "kind": "connection"},
        {"a": "peer2", "b": "peer3", "kind": "connection"},
    ]
    assert view["nodes"][0]["connections"] == 3 and view["nodes"][0]["mesh"] == 1
    assert (view["up"], view["total"], view["mode"]) == (4, 6, "devnet")
    assert view["stats"] == {"connections": 3, "pubsub": {"published": 7, "delivered": 6}}


def test_failed_and_silent_nodes_say_so() -> None:
    view = devnet_view(nodes=3, peer_ids=IDS, up={0, 1}, killed=set(), paused=set(), failed={2: "bind failed"},
                       reports=[_report(0, [1])])  # fmt: skip
    assert [n["state"] for n in view["nodes"]] == ["up", "silent", "failed"]
    assert view["nodes"][2]["error"] == "bind failed"


def test_the_dashboard_command_parses() -> None:
    cmd = parse_command("dashboard", 5)
    assert cmd is not None and cmd.name == "dashboard"
    with pytest.raises(CommandError):
        parse_command("dashboard now", 5)


def test_the_controllers_dashboard_does_not_load_the_node_stack() -> None:
    """The controller runs no node: serving the page must not import py-libp2p
    (70 MB and seconds of imports it would carry for nothing)."""
    import subprocess
    import sys

    code = "import sys, agentp2p.devnet.dashboard, agentp2p.devnet.graph; print('libp2p' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_topology_counts_every_reported_link_once_and_leaves_out_silent_peers() -> None:
    from agentp2p.devnet.graph import devnet_topology

    # A triangle 0-1-2 (each link reported by one end only), a tail 2-3, and
    # links to peer4, which did not report (killed or paused): left out.
    figs = devnet_topology([_report(0, [1, 2, 4], mesh=[1]), _report(1, [2]), _report(2, [3], mesh=[1]),
                            _report(3, [4])])  # fmt: skip
    conn, mesh = figs["connections"], figs["mesh"]
    assert (conn.nodes, conn.edges) == (4, 4)
    assert conn.clustering == pytest.approx((1 + 1 + 1 / 3 + 0) / 4)
    assert conn.reachable == 1.0 and conn.max_path == 2
    assert (mesh.nodes, mesh.edges, mesh.clustering) == (4, 2, 0.0)  # 0-1 and 1-2; node 3 meshes with nobody
    assert mesh.reachable < 1.0
    with pytest.raises(CommandError, match="no arguments"):
        parse_command("topology 3", 5)
    assert parse_command("topology", 5).name == "topology"  # type: ignore[union-attr]
