"""``GET /metrics`` (issue #16) on real sockets: Prometheus metrics behind the API token.

In-process nodes serving the API check what the families say after real
traffic (connections, a publish, a direct message, DHT queries) and that
docs/operations.md lists exactly the families served. Daemon subprocesses
check the user's paths: ``--metrics`` with the token file, and that a
daemon without metrics answers 404 and never imports ``prometheus_client``
(the lean import's stub is all it has), while ``[api] metrics = true`` in
a config file keeps it real.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from agentp2p.cli import _metrics_requested
from agentp2p.cli_client import daemon_services
from agentp2p.config import ApiConfig, NodeConfig
from agentp2p.errors import ConfigError
from agentp2p.testing import DaemonProcess, cli_env, wait_until
from tests.api.api_fixtures import ApiNode, api_node

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "metrics-room"


def documented_families() -> set[str]:
    """The ``agentp2p_*`` names in docs/operations.md's families table."""
    text = (ROOT / "docs" / "operations.md").read_text()
    return set(re.findall(r"^\| `(agentp2p_[a-z_]+)`", text, flags=re.MULTILINE))


class Scrape:
    """One parsed scrape: ``value(name, **labels)`` sums the matching samples."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def exposed_names(self) -> set[str]:
        """Family names as written on the wire (counters with their ``_total``)."""
        return {name + ("_total" if f.type == "counter" else "") for name, f in self.families.items()}

    def value(self, sample: str, **labels: str) -> float:
        found = [s.value for s in self.samples if s.name == sample and labels.items() <= s.labels.items()]
        assert found, f"no sample {sample} {labels}"
        return sum(found)


async def scrape(a: ApiNode, token: str | None = "use") -> httpx.Response:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {a.api.token if token == 'use' else token}"
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(a.api.base_url + "/metrics", headers=headers)


async def test_metrics_need_the_token_and_report_real_traffic() -> None:
    on = {"api": ApiConfig(metrics=True)}
    async with api_node(**on) as a, api_node(**on) as b:
        assert (await scrape(a, None)).status_code == 401
        assert (await scrape(a, "not-the-token")).status_code == 401

        async with a.node.subscribe(TOPIC), b.node.subscribe(TOPIC) as sub_b:
            await a.node.connect(b.node.addrs[0])
            await wait_until(lambda: b.node.peer_id in a.node.topic_peers(TOPIC), what="a sees b subscribed")
            await a.node.publish(TOPIC, b"hello metrics")
            with trio.fail_after(10):
                assert (await sub_b.receive()).data == b"hello metrics"

            async def read_one() -> None:
                await b.node.receive()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_one)
                await a.node.send(b.node.peer_id, b"direct", timeout=20)
            await wait_until(lambda: a.node.dht.routing_table_size >= 1, what="b in a's routing table")
            await a.node.dht_put("metrics-key", b"v")
            assert await a.node.dht_get("metrics-key") == b"v"
            await wait_until(lambda: a.node.stats()["swim"]["members"]["alive"] >= 1, what="b alive in a's SWIM view")

            r = await scrape(a)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("text/plain")
            m = Scrape(r.text)

        # Every documented family is served, and nothing undocumented.
        assert {n for n in m.exposed_names() if n.startswith("agentp2p_")} == documented_families()

        assert m.value("agentp2p_connections") >= 1
        assert m.value("agentp2p_connections", direction="outbound") >= 1  # a dialed b
        assert m.value("agentp2p_streams") >= 1
        assert m.value("agentp2p_connected_peers") >= 1
        assert m.value("agentp2p_pubsub_published_total") >= 1
        assert m.value("agentp2p_pubsub_mesh_peers", topic=TOPIC) >= 0
        assert m.value("agentp2p_pubsub_peers") >= 1
        assert m.value("agentp2p_pubsub_traffic_bytes_total", direction="outbound") > 0
        assert m.value("agentp2p_messaging_sent_total") >= 1
        assert m.value("agentp2p_messaging_acked_total") >= 1
        assert m.value("agentp2p_messaging_delivery_duration_seconds_count") >= 1
        assert 0 < m.value("agentp2p_messaging_delivery_duration_seconds_sum") < 20
        assert m.value("agentp2p_messaging_delivery_duration_seconds_bucket", le="+Inf") >= 1
        assert m.value("agentp2p_dht_queries_total", kind="put", outcome="ok") >= 1
        assert m.value("agentp2p_dht_queries_total", kind="get") >= 1
        assert m.value("agentp2p_dht_query_duration_seconds_count", kind="put") >= 1
        assert m.value("agentp2p_dht_requests_total", direction="outbound") >= 1
        assert m.value("agentp2p_dht_routing_table_peers") >= 1
        assert m.value("agentp2p_swim_members", state="alive") >= 1
        assert m.value("agentp2p_penalty_bans_total") == 0
        assert m.value("agentp2p_uptime_seconds") > 0
        assert m.value("agentp2p_node_info", peer_id=str(a.node.peer_id)) == 1
        assert m.value("process_resident_memory_bytes") > 0

        # Histogram buckets are cumulative and end in the count.
        buckets = [s for s in m.samples if s.name == "agentp2p_dht_query_duration_seconds_bucket"
                   and s.labels["kind"] == "put"]
        counts = [s.value for s in buckets]
        assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf"
        assert counts[-1] == m.value("agentp2p_dht_query_duration_seconds_count", kind="put")

        # The receiving side counted its delivery.
        rb = await scrape(b)
        assert Scrape(rb.text).value("agentp2p_pubsub_delivered_total") >= 1
        assert Scrape(rb.text).value("agentp2p_connections", direction="inbound") >= 1

        # Prometheus asks for OpenMetrics: served in that format.
        async with httpx.AsyncClient(timeout=10) as http:
            om = await http.get(a.api.base_url + "/metrics", headers={
                "Authorization": f"Bearer {a.api.token}",
                "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            })
        assert om.status_code == 200 and om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.rstrip().endswith("# EOF")


async def test_without_metrics_the_path_does_not_exist() -> None:
    async with api_node() as a:
        assert a.node.config.api.metrics is False
        assert (await scrape(a, None)).status_code == 401  # the token is checked before anything else
        r = await scrape(a)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        assert a.node.stats()["api"]["metrics"] is False


def test_metrics_and_api_off_cannot_go_together() -> None:
    args = argparse.Namespace(api="off", agent_name=None, agent_card=None, capability=[], agent_description="")
    with pytest.raises(ConfigError, match="--api off"):
        daemon_services(args, NodeConfig(api=ApiConfig(metrics=True)))
    assert daemon_services(args, NodeConfig()) == []


def test_the_daemon_decides_on_prometheus_client_before_reading_its_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def asked(*flags: str) -> bool:
        args = argparse.Namespace(metrics="--metrics" in flags, config=flags[-1] if "--config" in flags else None)
        return _metrics_requested(args)

    monkeypatch.delenv("AGENTP2P_API__METRICS", raising=False)
    monkeypatch.delenv("AGENTP2P_CONFIG", raising=False)
    on, off, broken = tmp_path / "on.toml", tmp_path / "off.toml", tmp_path / "broken.toml"
    on.write_text("[api]\nmetrics = true\n")
    off.write_text("[swim]\nenabled = false\n")
    broken.write_text("[api\n")
    assert asked("--metrics") and not asked()
    assert asked("--config", str(on)) and not asked("--config", str(off))
    assert asked("--config", str(broken))  # unsure: keep it real; the config load reports the error
    monkeypatch.setenv("AGENTP2P_API__METRICS", "0")
    assert not asked("--config", str(on)) and asked("--metrics")  # env beats the file, the flag beats both
    monkeypatch.setenv("AGENTP2P_API__METRICS", "true")
    assert asked()


async def test_a_daemon_with_metrics_serves_them_behind_its_token_file(tmp_path: Path) -> None:
    async with DaemonProcess(tmp_path, "--metrics") as d:
        base = f"http://{d.api_addr}"
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(base + "/metrics")).status_code == 401
            r = await http.get(base + "/metrics", headers={"Authorization": f"Bearer {d.token}"})
        assert r.status_code == 200, r.text
        m = Scrape(r.text)
        assert m.value("agentp2p_node_info", peer_id=d.peer_id) == 1
        assert m.value("agentp2p_connections") == 0
        assert {"agentp2p_swim_members", "agentp2p_dht_queries_total"} <= m.exposed_names()


# The daemon's own main(), in a fresh interpreter (so its lean import runs as
# it does for a user), stopped once its API answered one GET /metrics: what
# status that got, and what prometheus_client was in the daemon's process.
_PROBE = textwrap.dedent(
    """
    import json, sys
    from agentp2p import cli

    real_run = cli._run_daemon
    result = {}

    async def run(config, services):
        import trio
        api = next(s for s in services if s.name == "api")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(real_run, config, services)
            with trio.fail_after(60):
                await api.ready.wait()
            host, port = api.address.host, api.address.port
            stream = await trio.open_tcp_stream(host, port)
            request = f"GET /metrics HTTP/1.0\\r\\nHost: {host}\\r\\nAuthorization: Bearer {api.token}\\r\\n\\r\\n"
            await stream.send_all(request.encode())
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
            result["status"] = int(answer.split(b" ", 2)[1])
            mod = sys.modules.get("prometheus_client")
            result["prometheus_client"] = (
                "absent" if mod is None else "stub" if getattr(mod, "__lean_stub__", False) else "real"
            )
            nursery.cancel_scope.cancel()

    cli._run_daemon = run
    code = cli.main(sys.argv[1:])
    print(json.dumps({"exit": code, **result}))
    """
)


def _probe_daemon(home: Path, *flags: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    args = ["daemon", "--identity", str(home / "id.key"), "--listen", "/ip4/127.0.0.1/tcp/0",
            "--api", "127.0.0.1:0", "--log-level", "warning", *flags]
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120,
                          env=cli_env(home, env), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_a_daemon_without_metrics_answers_404_and_never_imports_prometheus_client(tmp_path: Path) -> None:
    out = _probe_daemon(tmp_path)
    assert out == {"exit": 0, "status": 404, "prometheus_client": "stub"}


def test_metrics_turned_on_in_the_config_file_keep_prometheus_client_real(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("[api]\nmetrics = true\n")
    out = _probe_daemon(tmp_path, "--config", str(config))
    assert out == {"exit": 0, "status": 200, "prometheus_client": "real"}


def test_the_grafana_dashboard_queries_only_families_that_exist() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "agentp2p.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for e in exprs for name in re.findall(r"agentp2p_[a-z_]+", e)}
    assert used <= documented_families(), used - documented_families()
    # The main families each have a panel.
    for family in ("agentp2p_connections", "agentp2p_streams", "agentp2p_resource_limit_hits_total",
                   "agentp2p_penalty_bans_total", "agentp2p_pubsub_published_total", "agentp2p_pubsub_dropped_total",
                   "agentp2p_pubsub_mesh_peers", "agentp2p_pubsub_peer_score", "agentp2p_messaging_sent_total",
                   "agentp2p_messaging_delivery_duration_seconds", "agentp2p_swim_members",
                   "agentp2p_dht_queries_total", "agentp2p_dht_query_duration_seconds",
                   "agentp2p_dht_request_timeouts_total", "agentp2p_records_publish_rounds_total"):
        assert family in used, family
    # Every query goes to the data source the importer picks.
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
