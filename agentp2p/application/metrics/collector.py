"""``node.stats()`` as Prometheus metric families, read afresh at every scrape.

A custom collector rather than ``Counter``/``Gauge`` objects updated in
place: every number here is already counted where it happens (the services'
``stats()``), so a second set of counters in the hot paths would only cost
time and could disagree with ``/v1/node/stats``. A scrape calls
:meth:`NodeCollector.collect`, which asks the node once and maps what it
says; nothing is cached between scrapes.

Mapping rules:

* names are ``agentp2p_<area>_<what>``, counters end in ``_total``, units
  (``_seconds``, ``_bytes``) are in the name and declared;
* a counter here is a monotonic count in the node's stats; a number that
  can fall (open connections, members per state, mesh sizes) is a gauge;
* a service that does not run on this node (SWIM with ``swim = false``, a
  records service...) contributes no families, rather than zeros that look
  like measurements;
* label values come from small fixed sets (directions, reasons, states,
  query kinds, limit names) except ``topic``, which is capped at
  :data:`MAX_TOPICS` topics (the largest meshes first).

The families, their labels and their sources are listed in
docs/operations.md ("Metrics"); a test keeps that table and this module in
agreement.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from agentp2p import __version__
from agentp2p.histogram import buckets_from_dict
from agentp2p.network.closing import is_open
from agentp2p.security.policy import ACTIONS
from agentp2p.security.trust import LEVELS as TRUST_LEVELS

__all__ = ["MAX_TOPICS", "NodeCollector", "connection_counts"]

#: Topics with their own ``agentp2p_pubsub_mesh_peers`` series, at most.
MAX_TOPICS = 256

_DIRECTIONS = ("inbound", "outbound")


def _d(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (a section that is absent)."""
    return value if isinstance(value, Mapping) else {}


def _n(value: Any) -> float:
    """A number from the stats, 0 for anything else (a missing key)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _counter(name: str, doc: str, value: Any, unit: str = "") -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=_n(value), unit=unit)


def _gauge(name: str, doc: str, value: Any, unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=_n(value), unit=unit)


def _labelled_counter(name: str, doc: str, label: str, values: Mapping[str, Any], unit: str = "") -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=[label], unit=unit)
    for key, value in sorted(values.items()):
        fam.add_metric([str(key)], _n(value))
    return fam


def _pair_labelled_counter(name: str, doc: str, labels: tuple[str, str], values: Mapping[str, Any]) -> CounterMetricFamily:
    """Counts kept under ``"first:second"`` keys, as two labels; a key with
    no colon (a bounded count's ``other``) fills both."""
    fam = CounterMetricFamily(name, doc, labels=list(labels))
    for key, value in sorted(values.items()):
        first, _, second = str(key).partition(":")
        fam.add_metric([first, second or first], _n(value))
    return fam


def _labelled_gauge(name: str, doc: str, label: str, values: Mapping[str, Any], unit: str = "") -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc, labels=[label], unit=unit)
    for key, value in sorted(values.items()):
        fam.add_metric([str(key)], _n(value))
    return fam


def _add_histogram(fam: HistogramMetricFamily, labels: list[str], data: Mapping[str, Any], *,
                   skip_empty: bool = False) -> None:
    """One labelled series from :meth:`agentp2p.histogram.Histogram.as_dict`
    (``skip_empty``: none while it has no sample — 18 lines saved per series)."""
    buckets = buckets_from_dict(dict(data))
    if not buckets or (skip_empty and not _n(data.get("count"))):
        return
    fam.add_metric(labels, [(floatToGoString(b), float(n)) for b, n in buckets], _n(data.get("sum")))


def _direction(obj: Any) -> str:
    """``inbound``/``outbound`` of a py-libp2p connection, ``unknown`` if it does not say."""
    with contextlib.suppress(Exception):
        name = str(obj.direction.name).lower()
        if name in _DIRECTIONS:
            return name
    return "unknown"


def _stream_direction(stream: Any) -> str:
    # py-libp2p 0.8.1 tags streams the peer opened INBOUND (swarm_connection
    # _handle_muxed_stream) and leaves the ones we open (new_stream) UNKNOWN.
    direction = getattr(stream, "_direction", None)
    return "inbound" if getattr(direction, "name", "") == "INBOUND" else "outbound"


def connection_counts(node: Any) -> tuple[Counter[str], Counter[str]]:
    """Open connections and streams by direction, from the host's live tables.

    Not in ``node.stats()`` (which counts connected peers): read here, per
    scrape, at a cost linear in connections and streams (both bounded by
    the resource manager)."""
    conns: Counter[str] = Counter({d: 0 for d in _DIRECTIONS})
    streams: Counter[str] = Counter({d: 0 for d in _DIRECTIONS})
    network = node.host.get_network()
    for peer in node.peers():
        with contextlib.suppress(Exception):
            for conn in network.get_connections(peer):
                if not is_open(conn):
                    continue  # closed, not yet out of the table (agentp2p/network/closing.py)
                conns[_direction(conn)] += 1
                for stream in conn.get_streams():
                    streams[_stream_direction(stream)] += 1
    return conns, streams


class NodeCollector:
    """A ``prometheus_client`` collector for one node (register it in a registry).

    ``collect`` runs in the node's trio thread (the API handler calls it),
    so the node's state is read without locks and is consistent.
    """

    def __init__(self, node: Any) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        stats = node.stats()
        yield from _node_families(node, stats)
        yield from _network_families(node, stats)
        yield from _pubsub_families(_d(stats.get("pubsub")))
        yield from _dht_families(_d(stats.get("dht")))
        if "messaging" in stats:
            yield from _messaging_families(_d(stats["messaging"]))
        if "swim" in stats:
            yield from _swim_families(_d(stats["swim"]))
        if "records" in stats:
            yield from _records_families(_d(stats["records"]))


# -- node and network ---------------------------------------------------------


def _node_families(node: Any, s: Mapping[str, Any]) -> Iterator[Metric]:
    info = InfoMetricFamily("agentp2p_node", "This node: its peer ID and agentp2p version (value 1).")
    info.add_metric([], {"peer_id": str(s.get("peer_id", "")), "version": __version__})
    yield info
    yield _gauge("agentp2p_uptime_seconds", "Seconds since the node started.", s.get("uptime_s"), "seconds")


def _network_families(node: Any, s: Mapping[str, Any]) -> Iterator[Metric]:
    conns, streams = connection_counts(node)
    yield _labelled_gauge("agentp2p_connections", "Open connections by direction.", "direction", conns)
    yield _labelled_gauge("agentp2p_streams", "Open streams on those connections by direction (who opened them).",
                          "direction", streams)
    yield _gauge("agentp2p_connected_peers", "Peers with at least one open connection.", s.get("connections"))

    net = _d(s.get("network"))
    inbound = {k: v for k, v in _d(net.get("inbound")).items() if k != "closed"}
    yield _labelled_counter(
        "agentp2p_inbound_connections_total",
        "Inbound sockets by outcome: accepted, refused (refused_ip: per-IP limit, refused_gate: connection gate, "
        "refused_banned: penalty box, refused_limit: inbound connection limit), failed or timed_out handshakes, "
        "evicted (pending-handshake table full).",
        "outcome",
        inbound,
    )
    yield _gauge("agentp2p_pending_handshakes", "Inbound sockets in their security/muxer handshake now.",
                 net.get("pending_handshakes"))
    yield _counter("agentp2p_connections_trimmed_total", "Idle connections the connection manager closed above "
                   "its high-water mark.", _d(net.get("trimming")).get("trimmed"))
    yield _counter("agentp2p_connections_forgotten_total", "Connections found closed in the swarm's table at "
                   "sweeps 10 s or more apart (their close was cut short, or very slow) and taken out.",
                   _d(net.get("closing")).get("forgotten"))
    yield _labelled_counter(
        "agentp2p_yamux_violations_total",
        "What the Yamux guard refused: window_overruns and memory_refusals (connection closed), streams_refused "
        "(a stream over the per-connection limit, reset), connections_closed (by either violation).",
        "event",
        _d(net.get("yamux")),
    )

    dialer = _d(s.get("dialer"))
    dials = CounterMetricFamily("agentp2p_dials_total", "Outbound dials by result (concurrent dials to one peer "
                                "share one attempt).", labels=["result"])
    dials.add_metric(["success"], _n(dialer.get("successes")))
    dials.add_metric(["failure"], _n(dialer.get("failures")))
    yield dials
    yield _counter("agentp2p_dials_refused_banned_total", "Dials refused because the peer is banned.",
                   dialer.get("refused_banned"))
    yield _labelled_counter(
        "agentp2p_dials_by_purpose_total",
        "Outbound dial attempts by what asked for them: the protocol of the stream that needed the connection, "
        "or bootstrap, mdns, connect (past 32 names: other).",
        "purpose",
        _d(dialer.get("by_purpose")),
    )
    yield _labelled_counter(
        "agentp2p_handler_failures_total",
        "Inbound stream handlers that raised (contained: that stream was reset), by protocol.",
        "protocol",
        _d(s.get("handler_failures")),
    )

    res = _d(s.get("resources"))
    yield _labelled_counter(
        "agentp2p_resource_limit_hits_total",
        "Resource-manager limits hit (a connection, stream, handshake or reservation refused), by limit.",
        "limit",
        _d(res.get("hits")),
    )
    yield _labelled_gauge("agentp2p_resource_memory_bytes", "Buffer memory reserved from the resource manager, "
                          "by service.", "service", _d(res.get("memory_by_service")), "bytes")
    yield _gauge("agentp2p_resource_memory_limit_bytes", "Node-wide limit on reserved buffer memory.",
                 _d(res.get("limits")).get("max_memory"), "bytes")

    pen = _d(s.get("penalties"))
    yield _counter("agentp2p_penalty_offences_total", "Offences counted against peers (limit hits, protocol "
                   "violations, contained handler failures).", pen.get("offences"))
    yield _counter("agentp2p_penalty_bans_total", "Peers banned by the penalty box.", pen.get("bans"))
    banned = pen.get("banned_now")
    yield _gauge("agentp2p_penalty_banned_peers", "Peers banned now.", len(banned) if isinstance(banned, list) else 0)

    pol = _d(s.get("policy"))
    denied = {a: 0 for a in ACTIONS} | dict(_d(pol.get("denied")))
    yield _labelled_counter("agentp2p_policy_denied_total", "Actions of peers the authorization policy refused, "
                            "by action.", "action", denied)
    yield _counter("agentp2p_policy_cut_off_total", "Peers disconnected by the policy's connect rules once "
                   "their certificates were known.", pol.get("cut_off"))
    trust = _d(s.get("trust"))
    levels = {lv: 0 for lv in TRUST_LEVELS} | dict(_d(trust.get("levels")))
    yield _labelled_gauge("agentp2p_trust_peers", "Peers tracked by trust, by level.", "level", levels)
    yield _counter("agentp2p_trust_cutoffs_total", "Peers cut off because their trust fell below "
                   "disconnect_below.", trust.get("cutoffs"))


# -- pub/sub ------------------------------------------------------------------


def _pubsub_families(p: Mapping[str, Any]) -> Iterator[Metric]:
    yield _counter("agentp2p_pubsub_published_total", "Messages this node published.", p.get("published"))
    yield _counter("agentp2p_pubsub_delivered_total", "Messages delivered to local subscriptions.", p.get("delivered"))
    dropped = CounterMetricFamily(
        "agentp2p_pubsub_dropped_total",
        "Messages dropped, by reason: subscriber_full (a local subscription's buffer), peer_queue_full (a peer's "
        "outbound queue or its memory), peer_gone (RPCs queued for a peer that disconnected).",
        labels=["reason"],
    )
    for reason, key in (("subscriber_full", "dropped_inbound"), ("peer_queue_full", "dropped_outbound"),
                        ("peer_gone", "dropped_disconnected")):
        dropped.add_metric([reason], _n(p.get(key)))
    yield dropped
    refused = CounterMetricFamily(
        "agentp2p_pubsub_refused_total",
        "Received messages or RPCs not accepted, by reason: validator_reject, validator_ignore, "
        "invalid_signature, malformed, oversized, graylisted (sender's score below the graylist threshold).",
        labels=["reason"],
    )
    for reason, key in (("validator_reject", "rejected"), ("validator_ignore", "ignored"),
                        ("invalid_signature", "invalid_signatures"), ("malformed", "malformed"),
                        ("oversized", "oversized"), ("graylisted", "graylisted")):
        refused.add_metric([reason], _n(p.get(key)))
    yield refused
    rpcs = CounterMetricFamily("agentp2p_pubsub_rpcs_total", "RPC frames received (inbound) and written "
                               "(outbound; one frame may merge several RPCs).", labels=["direction"])
    rpcs.add_metric(["inbound"], _n(p.get("rpc_in")))
    rpcs.add_metric(["outbound"], _n(p.get("rpc_out")))
    yield rpcs
    traffic = CounterMetricFamily("agentp2p_pubsub_traffic_bytes_total", "Pub/sub bytes read and written.",
                                  labels=["direction"], unit="bytes")
    traffic.add_metric(["inbound"], _n(p.get("bytes_in")))
    traffic.add_metric(["outbound"], _n(p.get("bytes_out")))
    yield traffic
    yield _counter("agentp2p_pubsub_backpressure_waits_total", "Publishes that waited for a peer's queue to drain.",
                   p.get("backpressure_waits"))
    yield _counter("agentp2p_pubsub_rate_limited_total", "Messages from forwarders over their rate (paced, "
                   "not dropped).", p.get("rate_limited"))
    yield _gauge("agentp2p_pubsub_peers", "Peers speaking gossipsub with this node.", p.get("peers"))
    topics = p.get("topics")
    yield _gauge("agentp2p_pubsub_topics", "Topics this node subscribes to.", len(topics) if isinstance(topics, list) else 0)
    mesh = GaugeMetricFamily("agentp2p_pubsub_mesh_peers", f"Mesh size per subscribed topic (the {MAX_TOPICS} "
                             "largest meshes).", labels=["topic"])
    for topic, size in sorted(_d(p.get("mesh")).items(), key=lambda kv: (-_n(kv[1]), kv[0]))[:MAX_TOPICS]:
        mesh.add_metric([str(topic)], _n(size))
    yield mesh
    scores = _d(p.get("scores"))
    score = GaugeMetricFamily("agentp2p_pubsub_peer_score", "Lowest and highest gossipsub peer score now "
                              "(0 with no scored peer).", labels=["stat"])
    score.add_metric(["min"], _n(scores.get("min")))
    score.add_metric(["max"], _n(scores.get("max")))
    yield score
    yield _gauge("agentp2p_pubsub_scored_peers", "Peers with a gossipsub score.", scores.get("peers"))
    yield _gauge("agentp2p_pubsub_negative_score_peers", "Peers whose gossipsub score is below 0.",
                 scores.get("negative"))


# -- DHT ----------------------------------------------------------------------


def _dht_families(d: Mapping[str, Any]) -> Iterator[Metric]:
    queries = CounterMetricFamily(
        "agentp2p_dht_queries_total",
        "DHT queries (iterative lookups) this node ran, by kind (lookup, get, put, provide, find_providers, "
        "find_peer) and outcome (ok, timeout, failed, cancelled).",
        labels=["kind", "outcome"],
    )
    for kind, outcomes in sorted(_d(d.get("queries")).items()):
        for outcome, n in sorted(_d(outcomes).items()):
            queries.add_metric([kind, outcome], _n(n))
    yield queries
    latency = HistogramMetricFamily(
        "agentp2p_dht_query_duration_seconds",
        "Duration of DHT queries, by kind (cancelled ones excluded; a kind appears once it ran).",
        labels=["kind"],
        unit="seconds",
    )
    for kind, hist in sorted(_d(d.get("query_latency")).items()):
        _add_histogram(latency, [kind], _d(hist), skip_empty=True)
    yield latency
    a = _d(d.get("adapter"))
    requests = CounterMetricFamily("agentp2p_dht_requests_total", "DHT requests sent to peers (outbound) and "
                                   "received from them (inbound).", labels=["direction"])
    requests.add_metric(["outbound"], _n(a.get("requests")))
    requests.add_metric(["inbound"], _n(a.get("inbound_requests")))
    yield requests
    yield _counter("agentp2p_dht_request_timeouts_total", "Outbound DHT requests that got no answer in time.",
                   a.get("timeouts"))
    yield _counter("agentp2p_dht_request_failures_total", "Outbound DHT requests that failed (dial, stream, "
                   "or a bad answer).", a.get("failures"))
    yield _gauge("agentp2p_dht_routing_table_peers", "Peers in the Kademlia routing table.", d.get("routing_table_size"))
    yield _gauge("agentp2p_dht_values", "Values stored here.", d.get("values"))
    yield _gauge("agentp2p_dht_provider_records", "Provider records stored here.", d.get("provider_records"))
    yield _labelled_counter("agentp2p_dht_quota_hits_total", "Stores refused by a DHT quota, by quota.", "quota",
                            _d(d.get("quota_hits")))


# -- messaging, SWIM, records ---------------------------------------------------


def _messaging_families(m: Mapping[str, Any]) -> Iterator[Metric]:
    yield _counter("agentp2p_messaging_sent_total", "Direct messages accepted for sending.", m.get("sent"))
    yield _counter("agentp2p_messaging_acked_total", "Direct messages the peer's application acknowledged.",
                   m.get("acked"))
    yield _counter("agentp2p_messaging_stored_total", "Direct messages the peer's durable inbox stored "
                   "(receipt 'stored': released by this node, the peer answers for them).", m.get("stored"))
    yield _counter("agentp2p_messaging_refused_inbox_full_total", "Direct messages sent by this node that the "
                   "peer refused because its inbox was full.", m.get("refused_inbox_full"))
    yield _counter("agentp2p_messaging_failed_total", "Direct messages given up on (deadline or stop).",
                   m.get("failed"))
    yield _counter("agentp2p_messaging_retransmitted_total", "Frame retransmissions of direct messages.",
                   m.get("retransmitted"))
    yield _counter("agentp2p_messaging_delivered_total", "Direct messages received and delivered to this node's "
                   "application.", m.get("delivered"))
    yield _labelled_counter("agentp2p_messaging_rejected_total", "Received direct messages refused by the "
                            "security screen, by reason.", "reason", _d(m.get("rejected")))
    latency = HistogramMetricFamily(
        "agentp2p_messaging_delivery_duration_seconds",
        "From a send being accepted to the receipt its caller waited for, stored or consumed (window waits, "
        "dials and retransmissions included).",
        unit="seconds",
    )
    _add_histogram(latency, [], _d(m.get("delivery_latency")))
    yield latency
    inbox = _d(m.get("inbox"))
    yield _gauge("agentp2p_messaging_inbox_messages", "Received messages held for the application "
                 "(unacknowledged included).", inbox.get("messages"))
    yield _gauge("agentp2p_messaging_inbox_bytes", "Bytes of those messages.", inbox.get("bytes"), "bytes")
    yield _counter("agentp2p_messaging_inbox_refused_total", "Received direct messages this node's inbox refused "
                   "for lack of room (the sender is told, or retransmits).", inbox.get("refused_full"))
    unacked = sum(_n(_d(p).get("unacked")) for p in _d(m.get("peers")).values())
    yield _gauge("agentp2p_messaging_unacked_messages", "Sent messages not yet acknowledged, over all peers.", unacked)


def _swim_families(w: Mapping[str, Any]) -> Iterator[Metric]:
    yield _labelled_gauge("agentp2p_swim_members", "SWIM members by state, as this node sees them.", "state",
                          _d(w.get("members")))
    core = _d(w.get("core"))
    yield _counter("agentp2p_swim_suspicions_total", "Members this node suspected after its own probe failed.",
                   core.get("suspected"))
    yield _counter("agentp2p_swim_probes_spared_total", "Failed probes of this node whose helpers all stayed silent "
                   "(not one Nack): no suspicion started, the fault likely ours.", core.get("spared_silent"))
    yield _counter("agentp2p_swim_declared_dead_total", "Suspicions that ran out (member declared failed).",
                   core.get("declared_dead"))
    yield _counter("agentp2p_swim_refutations_total", "Times this node refuted a suspicion of itself.",
                   core.get("refutations"))
    yield _labelled_counter("agentp2p_swim_messages_sent_total", "SWIM messages sent, by type.", "type",
                            _d(w.get("sent")))
    yield _gauge("agentp2p_swim_awareness", "Lifeguard local health score (0 healthy; higher stretches probe "
                 "timeouts).", w.get("awareness"))
    yield _gauge("agentp2p_swim_incarnation", "This node's SWIM incarnation number.", w.get("incarnation"))


def _records_families(r: Mapping[str, Any]) -> Iterator[Metric]:
    yield _counter("agentp2p_records_publish_rounds_total", "Publish rounds of this agent's record (announce, "
                   "DHT put, provide).", r.get("rounds"))
    yield _counter("agentp2p_records_publish_round_failures_total", "Publish rounds with a part that failed "
                   "(retried).", r.get("round_failures"))
    yield _pair_labelled_counter(
        "agentp2p_records_publish_failed_parts_total", "Failed parts of publish rounds, by part (put, provide) and "
        "why (short: fewer peers than wanted; the DHT's timeout, nobody, rejected, stopped, failed; or another "
        "error's type; past 16 kinds both labels are other).", ("part", "reason"), _d(r.get("failure_kinds")))
    yield _pair_labelled_counter("agentp2p_records_rejected_total", "Agent records refused, by where they came "
                                 "from (path) and why (reason).", ("path", "reason"), _d(r.get("rejected")))
    fetches = CounterMetricFamily("agentp2p_records_fetches_total", "Records fetched from agents, by result.",
                                  labels=["result"])
    fetches.add_metric(["success"], _n(r.get("fetched")))
    fetches.add_metric(["failure"], _n(r.get("fetch_failures")))
    yield fetches
    yield _gauge("agentp2p_records_cached", "Agent records in the cache.", r.get("cached"))
