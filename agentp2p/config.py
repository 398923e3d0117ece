"""Node configuration: one dataclass, filled from defaults, a TOML file,
``AGENTP2P_*`` environment variables and CLI flags (later sources win).

One shape: every service's settings are a nested section whose dataclass
lives beside the service's code (``[swim]`` is
:class:`agentp2p.protocol.swim.config.SwimConfig`, ``[messaging]``
:class:`agentp2p.messaging.config.MessagingConfig`, ``[messaging.session]``
its session core's), reachable the same way from TOML
(``[swim] probe_interval = 0.5``), the environment
(``AGENTP2P_SWIM__PROBE_INTERVAL=0.5``) and code
(``NodeConfig(swim=SwimConfig(probe_interval=0.5))``). Values are coerced by
the field's declared type, and every error, whatever the section, is one
:class:`ConfigError` naming the key.

Unknown keys are errors, not warnings: a typo in a config file that is
silently ignored leaves an operator believing a setting is in force.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentp2p.errors import ConfigError
from agentp2p.messaging.config import MessagingConfig
from agentp2p.protocol.autonat.config import AutoNATConfig
from agentp2p.protocol.holepunch.config import HolePunchConfig
from agentp2p.protocol.relay.config import RelayConfig
from agentp2p.protocol.swim.config import SwimConfig
from agentp2p.network.addresses import parse_listen_addr, parse_peer_addr, parse_peer_id
from agentp2p.network.allowlist import MAX_ENTRIES as ALLOW_MAX_ENTRIES
from agentp2p.network.connection_manager import ConnectionsConfig
from agentp2p.network.denylist import MAX_ENTRIES as DENY_MAX_ENTRIES
from agentp2p.network.penalties import PenaltyConfig
from agentp2p.network.psk import read_psk_file
from agentp2p.network.resources import ResourceLimits
from agentp2p.security.trust import TrustConfig

DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/0"
DAEMON_DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/4001"


@dataclass
class PubSubConfig:
    """Pub/sub settings: our gossipsub router's overlay knobs, and the bounds that keep
    delivery complete and visible (protocol/pubsub.py explains each promise)."""

    heartbeat_interval: float = 1.0  # go-libp2p and the gossipsub spec use 1 s
    # Mesh degree D and the band [D_lo, D_hi] the heartbeat keeps each mesh in.
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    # Peers outside the mesh we gossip message IDs (IHAVE) to per heartbeat, at least.
    degree_lazy: int = 6
    # ... or this share of the eligible ones, if more: gossipsub v1.1's
    # adaptive gossip, 0.25 in the spec and go. Ours is 0 (degree_lazy
    # alone, as v1.0): with every node connected to every other, the
    # spec's share made control frames (mostly IHAVE) 80-90 % of a node's
    # pub/sub frames and the median pub/sub P99 at 100 nodes on 2 cores
    # 3.1 s. docs/pubsub.md ("How much gossip").
    gossip_factor: float = 0.0
    # Mesh slots kept for the topic peers nearest to us in the DHT's XOR
    # space (0: meshes at random, the gossipsub spec's way). degree = 8 with
    # degree_near = 7 makes meshes a small world (clustering > 0.5, paths
    # <= log2 N) at a cost in latency and in resistance to peers that drop
    # messages: docs/scale.md.
    degree_near: int = 0

    @property
    def degree_out(self) -> int:
        """D_out, the mesh's outbound quota: 2, as the spec suggests, where D and D_lo allow it."""
        return max(0, min(2, self.degree_low - 1, self.degree // 2))
    # Our own messages go to every topic peer (above the publish score
    # threshold), not just the mesh: an eclipsed mesh cannot silence us.
    flood_publish: bool = True
    # Gossipsub v1.1 peer scoring (P1-P7) on the topics we subscribe to.
    scoring: bool = True
    # Per-peer outbound RPC queue; publish() waits (backpressure) before it overflows.
    peer_queue_size: int = 8192
    # Per-subscription inbound buffer (messages).
    subscription_buffer: int = 65536
    # publish() waits while any peer queue is fuller than this fraction...
    backpressure_high_water: float = 0.5
    # ...for at most this long, then raises PubSubError instead of dropping.
    publish_timeout: float = 10.0
    max_message_size: int = 1 << 20
    # Message IDs are remembered this long (duplicates dropped).
    seen_ttl: int = 120
    # Bytes of message data one local Subscription holds before it drops
    # (a subscriber that stops reading; counted like a full buffer).
    subscription_buffer_bytes: int = 16 << 20
    # Bytes one peer's outbound RPC queue holds before it drops (a peer that
    # does not read); reserved from the resource manager as service "pubsub".
    peer_queue_bytes: int = 16 << 20
    # Messages per second (token bucket: rate and burst) processed from one
    # forwarder; above it we stop reading that peer for a while (its sender
    # sees backpressure; nothing is dropped), counted in ``rate_limited``.
    inbound_rate_per_peer: float = 20000.0
    inbound_burst_per_peer: int = 40000
    # A peer's next write waits until this long after its previous one
    # (seconds, at most 0.05; 0: never waits), gathering the RPCs that arrive
    # meanwhile. The first write after a quiet spell is not held, nor one
    # carrying a control-only RPC. The same default as
    # gossipsub.service.WRITE_COALESCE (a test keeps them equal).
    write_coalesce: float = 0.002


@dataclass
class DHTConfig:
    """Kademlia settings (docs/dht.md): k = 20, alpha = 3, our own sans-IO core.

    The protocol IDs served and spoken, in order of preference:
    ``/agentp2p/kad/1.0.0`` keeps an agent network apart from the public IPFS
    DHT; ``/ipfs/kad/1.0.0`` joins it (both: a node that bridges the two).
    """

    # "auto": a server unless AutoNAT finds the node private (then a client);
    # "server"; or "client" (asks, serves nothing).
    mode: str = "auto"
    protocols: list[str] = field(default_factory=lambda: ["/agentp2p/kad/1.0.0"])
    k: int = 20  # bucket size; a lookup settles on the k closest
    alpha: int = 3  # requests in flight per lookup
    replication: int = 20  # peers a value / provider record is written to
    disjoint_paths: int = 1  # S/Kademlia d (1: a plain lookup)
    refresh_interval: float = 600.0  # a bucket no lookup touched this long gets one
    max_value_size: int = 64 * 1024
    query_timeout: float = 10.0  # a whole lookup, whatever its peers do
    request_timeout: float = 5.0  # one request to one peer (dial included)
    # Lookup requests unanswered this long free their slots among the alpha
    # in flight once all of a lookup path's are (the path is stalled), and
    # the next candidates are asked beside them. 0: off (the
    # default: on this project's CPU-starved test machine both a fixed 1 s
    # and "auto" made look-ups worse); "auto": learned from how long
    # this node's answered requests take (0.5 s .. request_timeout), which
    # keeps look-ups working while peers stop answering (a partition);
    # seconds: fixed (docs/dht.md).
    slow_after: float | str = 0.0
    # Every this many seconds one peer the routing table dropped for failed
    # requests is pinged again, for an hour after the loss: how the DHT and
    # pub/sub re-knit after a partition heals (0: off).
    reconnect_interval: float = 10.0
    # What one peer may ask of us: inbound streams at once, requests per
    # second (token bucket); over them the stream is reset and counted.
    max_inbound_streams_per_peer: int = 8
    inbound_requests_per_second: float = 100.0
    inbound_request_burst: int = 200
    # What other peers can make us store (PUT_VALUE / ADD_PROVIDER), checked
    # before storing; refusals are counted and repeated ones are offences.
    max_values_per_peer: int = 256
    max_value_bytes_per_peer: int = 4 << 20
    max_values: int = 20000
    max_value_bytes: int = 64 << 20
    max_provider_records_per_peer: int = 1024
    max_provider_records: int = 50000


@dataclass
class ApiConfig:
    """What the daemon's control API serves beyond ``/v1`` (docs/api.md,
    docs/operations.md). Where it listens and its token are the daemon's
    ``--api`` and ``--api-token-file`` flags."""

    # Prometheus metrics at /metrics, behind the API token (``--metrics``).
    # Off: the route does not exist and prometheus_client is never imported.
    metrics: bool = False
    # The live dashboard under /dashboard/ (``--dashboard``; docs/dashboard.md).
    # Off: its routes do not exist and agentp2p.application.dashboard is never imported.
    dashboard: bool = False


@dataclass
class NodeConfig:
    """Everything a :class:`~agentp2p.node.Node` needs to start."""

    listen: list[str] = field(default_factory=lambda: [DEFAULT_LISTEN])
    bootstrap: list[str] = field(default_factory=list)
    # Peers refused from the start (base58 peer IDs): no dial to them, no
    # connection from them. Changed at run time with node.deny()/allow(), the
    # control API (/v1/peers/denied) or `agentp2p deny`/`allow`; those changes
    # last until the node stops, so keep the lasting ones here.
    deny: list[str] = field(default_factory=list)
    # With allow_only, the node talks to the peers in `allow` and no others,
    # both ways (bootstrap peers must be among them). Entries can change at
    # run time (the control API); allow_only itself only here, so a list
    # emptied at run time never opens the node to everyone.
    allow_only: bool = False
    allow: list[str] = field(default_factory=list)
    # None: an ephemeral identity (library use, tests). The daemon sets a path.
    identity_path: Path | None = None
    # Private network key file (libp2p swarm.key format, docs/security.md):
    # only nodes with the same key can connect. None: the public network.
    psk: Path | None = None
    # Authorization policy (docs/security.md, "Authorization policies"): who
    # may publish, subscribe, send and call here; groups by issuer. A table,
    # or the path of a TOML/JSON file holding one. Empty: everyone may
    # everything. Replaced at run time through the control API.
    policy: dict[str, Any] | str = field(default_factory=dict)
    # Membership certificate files this node presents to peers that ask
    # (base64 text, as `agentp2p cert issue` writes). More at run time
    # through the control API.
    certificates: list[str] = field(default_factory=list)
    max_connections: int = 300
    max_connections_per_peer: int = 1
    # Idle connections closed above a high-water mark (docs/operations.md,
    # "Connections"): without it a node's connections grow with the network
    # until max_connections refuses newcomers.
    connections: ConnectionsConfig = field(default_factory=ConnectionsConfig)
    dial_timeout: float = 10.0
    bootstrap_retry_initial: float = 0.5
    bootstrap_retry_max: float = 30.0
    mdns: bool = False
    # Daemon only: log format ("text" or "json") and level.
    log_format: str = "text"
    log_level: str = "info"
    # Daemon only: freeze the startup heap and space out full garbage
    # collections (agentp2p/gc_policy.py); false keeps CPython's defaults.
    gc_policy: bool = True
    pubsub: PubSubConfig = field(default_factory=PubSubConfig)
    dht: DHTConfig = field(default_factory=DHTConfig)
    # What one peer can make us hold (docs/security.md), and when a peer that
    # keeps tripping limits or containment is cut off.
    resources: ResourceLimits = field(default_factory=ResourceLimits)
    penalties: PenaltyConfig = field(default_factory=PenaltyConfig)
    # The per-peer trust score: thresholds for deprioritising and cutting off,
    # decay, and how much an offence costs (docs/security.md, "Trust").
    trust: TrustConfig = field(default_factory=TrustConfig)
    # SWIM membership and failure detection (docs/swim.md has the trade-offs:
    # a shorter period detects failures sooner for more bandwidth).
    swim: SwimConfig = field(default_factory=SwimConfig)
    # AutoNAT: ask peers to dial us back (are we reachable from outside?),
    # and dial back those who ask (docs/reachability.md).
    autonat: AutoNATConfig = field(default_factory=AutoNATConfig)
    # Circuit relay v2: relay service (public nodes), reservations and
    # circuits (docs/reachability.md).
    relay: RelayConfig = field(default_factory=RelayConfig)
    # Hole punching (DCUtR): turn relayed connections into direct ones
    # where the NATs allow (docs/reachability.md).
    holepunch: HolePunchConfig = field(default_factory=HolePunchConfig)
    # Direct messages: the outbox/inbox store, windows, inbox bounds.
    messaging: MessagingConfig = field(default_factory=MessagingConfig)
    # The control API's optional parts (an ApiService follows it unless told otherwise).
    api: ApiConfig = field(default_factory=ApiConfig)

    def __post_init__(self) -> None:
        if isinstance(self.swim, bool):
            # ``NodeConfig(swim=False)``: the same shorthand as ``swim = false`` in TOML.
            self.swim = SwimConfig(enabled=self.swim)

    @property
    def connection_limit(self) -> int:
        """The fewest connections at which the node starts refusing some:
        what the connection manager's high-water mark must stay under."""
        return min(self.max_connections, self.resources.max_inbound_connections)

    def load_policy(self) -> Any:
        """The checked :class:`~agentp2p.security.policy.Policy` (ConfigError naming what is wrong)."""
        from agentp2p.security.policy import Policy

        doc = self.policy
        if isinstance(doc, (str, Path)):
            doc = _policy_file(Path(doc).expanduser()) if str(doc).strip() else {}
        return Policy.from_dict(doc)

    def load_certificates(self) -> list[bytes]:
        """The raw certificates of the ``certificates`` files (checked against the identity by the node)."""
        from agentp2p.security.certificates import MAX_CERTIFICATES, CertificateError, decode_certificate_text

        if len(self.certificates) > MAX_CERTIFICATES:
            raise ConfigError(f"certificates: at most {MAX_CERTIFICATES} files")
        out = []
        for name in self.certificates:
            path = Path(name).expanduser()
            try:
                out.append(decode_certificate_text(path.read_bytes()[:8192]))
            except OSError as exc:
                raise ConfigError(f"certificate file {path}: {exc.strerror}") from None
            except CertificateError as exc:
                raise ConfigError(f"certificate file {path}: {exc}") from None
        return out

    def validate(self) -> NodeConfig:
        """Check every value; raise :class:`ConfigError` on the first bad one."""
        if not self.listen:
            raise ConfigError("at least one listen address is required")
        for addr in self.listen:
            parse_listen_addr(addr)
        for addr in self.bootstrap:
            parse_peer_addr(addr)
        admitted = _peer_list("allow", self.allow, ALLOW_MAX_ENTRIES)
        _peer_list("deny", self.deny, DENY_MAX_ENTRIES)
        if self.allow and not self.allow_only:
            raise ConfigError("allow lists peers but allow_only is false: set allow_only = true for the list to apply")
        if self.allow_only:
            for addr in self.bootstrap:
                if str(parse_peer_addr(addr).peer_id) not in admitted:
                    raise ConfigError(f"bootstrap peer {addr!r} is not in allow, and allow_only would refuse it")
        if self.psk is not None:
            read_psk_file(self.psk)  # missing, malformed or unsafe: a ConfigError naming the file
        self.load_policy()
        self.load_certificates()
        if self.max_connections < 1 or self.max_connections_per_peer < 1:
            raise ConfigError("connection limits must be >= 1")
        cc = self.connections
        if cc.enabled and cc.high_water and cc.high_water >= self.connection_limit:
            raise ConfigError(f"connections.high_water ({cc.high_water}) must be below "
                              f"max_connections and resources.max_inbound_connections ({self.connection_limit}), "
                              "or newcomers can be refused for good")
        derived_high = cc.marks(self.connection_limit)[1]
        if cc.enabled and cc.low_water and not cc.high_water and cc.low_water >= derived_high:
            raise ConfigError(f"connections.low_water ({cc.low_water}) must be below high_water "
                              f"({derived_high} for these limits): set both")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be 'text' or 'json', not {self.log_format!r}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level must be debug, info, warning or error, not {self.log_level!r}")
        if self.dht.mode not in ("server", "client", "auto"):
            raise ConfigError(f"dht.mode must be 'server', 'client' or 'auto', not {self.dht.mode!r}")
        if self.pubsub.peer_queue_size < 32 or self.pubsub.subscription_buffer < 1:
            raise ConfigError("pubsub queue sizes are too small")
        ps = self.pubsub
        if not (0 <= ps.degree_low <= ps.degree <= ps.degree_high) or ps.degree_lazy < 0:
            raise ConfigError("pubsub degrees must satisfy 0 <= degree_low <= degree <= degree_high, degree_lazy >= 0")
        if not 0.0 <= ps.gossip_factor <= 1.0:
            raise ConfigError("pubsub.gossip_factor must be within 0..1")
        if ps.degree_near and not 0 < ps.degree_near < ps.degree:
            raise ConfigError("pubsub degree_near must be 0 or below degree (a mesh keeps a long link)")
        if ps.heartbeat_interval <= 0 or ps.seen_ttl <= 0 or ps.publish_timeout <= 0:
            raise ConfigError("pubsub.heartbeat_interval, seen_ttl and publish_timeout must be positive")
        if not 0 < self.pubsub.backpressure_high_water <= 1:
            raise ConfigError("pubsub.backpressure_high_water must be in (0, 1]")
        if (
            self.pubsub.subscription_buffer_bytes < self.pubsub.max_message_size
            or self.pubsub.peer_queue_bytes < self.pubsub.max_message_size + 65536
        ):
            raise ConfigError("pubsub byte bounds must hold at least one message of max_message_size")
        if not 0 <= self.pubsub.write_coalesce <= min(0.05, self.pubsub.publish_timeout / 10):
            raise ConfigError("pubsub.write_coalesce must be within 0..0.05 s (and a tenth of publish_timeout)")
        if self.pubsub.inbound_rate_per_peer <= 0 or self.pubsub.inbound_burst_per_peer < 1:
            raise ConfigError("pubsub.inbound_rate_per_peer and inbound_burst_per_peer must be positive")
        d = self.dht
        if min(d.max_values_per_peer, d.max_value_bytes_per_peer, d.max_values, d.max_value_bytes,
               d.max_provider_records_per_peer, d.max_provider_records) < 1:
            raise ConfigError("dht quotas must be positive")
        if not d.protocols or not all(isinstance(p, str) and p.startswith("/") for p in d.protocols):
            raise ConfigError(f"dht.protocols must be protocol IDs such as /agentp2p/kad/1.0.0, not {d.protocols!r}")
        if min(d.k, d.alpha, d.replication, d.disjoint_paths, d.max_inbound_streams_per_peer,
               d.inbound_request_burst) < 1:
            raise ConfigError("dht.k, alpha, replication, disjoint_paths and the inbound bounds must be >= 1")
        try:
            slow_after_seconds(d.slow_after)
        except ValueError:
            raise ConfigError(f'dht.slow_after must be "auto", 0 (off) or positive seconds, not {d.slow_after!r}') from None
        if d.reconnect_interval < 0:
            raise ConfigError("dht.reconnect_interval must be 0 (off) or positive")
        if min(d.refresh_interval, d.query_timeout, d.request_timeout, d.inbound_requests_per_second) <= 0:
            raise ConfigError("dht.refresh_interval, query_timeout, request_timeout and "
                              "inbound_requests_per_second must be positive")
        for name in ("resources", "penalties", "trust", "swim", "messaging", "connections", "autonat", "relay",
                     "holepunch"):
            section = getattr(self, name)
            try:
                # Frozen sections check themselves on construction; re-run that.
                section.validate() if hasattr(section, "validate") else dataclasses.replace(section)
            except ConfigError as exc:
                raise ConfigError(f"[{name}] {exc}") from None
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"[{name}] {exc}") from None
        return self


def _policy_file(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"policy file {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"policy file {path}: {exc}") from None
    else:
        doc = load_toml(path)
        doc = doc.get("policy", doc)  # a whole config file, or the table alone
    if not isinstance(doc, dict):
        raise ConfigError(f"policy file {path} must hold a table")
    return doc


def _peer_list(name: str, peers: list[str], max_entries: int) -> set[str]:
    """A config list of peer IDs (``allow``, ``deny``) checked: bounded, each
    well-formed; the distinct IDs, canonical."""
    distinct = set(peers)
    if len(distinct) > max_entries:
        raise ConfigError(f"{name} lists {len(distinct)} peers; at most {max_entries}")
    ids = set()
    for peer in peers:
        try:
            ids.add(str(parse_peer_id(peer)))
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return ids


def slow_after_seconds(value: float | str) -> float | None:
    """``dht.slow_after`` as the Kademlia core takes it: None for "auto",
    else seconds (0: off). ValueError when it is neither."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return None
        value = float(text)  # an environment variable's "1.5" (ValueError if not a number)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(value)
    return float(value)


# --- loading -----------------------------------------------------------------

_ENV_PREFIX = "AGENTP2P_"


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a TOML/env value (env values are strings) to the field's declared type."""
    args = typing.get_args(hint)
    optional = type(None) in args and (typing.get_origin(hint) in (typing.Union, types.UnionType))
    if optional:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    name = getattr(hint, "__name__", str(hint))
    try:
        if hint is bool:
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if origin in (list, tuple):
            if isinstance(value, str):
                value = [v for v in (s.strip() for s in value.split(",")) if v]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(value)
            return origin(value)
        if hint is Path:
            if not isinstance(value, (str, Path)):
                raise ValueError(value)
            return Path(str(value)).expanduser()
        if hint in (int, float):
            if isinstance(value, bool) or (hint is int and isinstance(value, float)):
                raise ValueError(value)
            return hint(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        return value
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r}: invalid value {value!r} (expected {name})") from None


def _applied(obj: Any, data: Mapping[str, Any], prefix: str = "") -> Any:
    """``obj`` with ``data`` applied: a new instance (sections may be frozen)."""
    hints = _field_types(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        norm = key.replace("-", "_")
        full = f"{prefix}{norm}"
        if norm not in names:
            raise ConfigError(f"unknown config key {full!r}")
        current = getattr(obj, norm)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                if "enabled" in {f.name for f in dataclasses.fields(current)}:
                    # ``swim = false``: shorthand for ``[swim] enabled = false``.
                    value = {"enabled": value}
                else:
                    raise ConfigError(f"config key {full!r} must be a table")
            changes[norm] = _applied(current, value, f"{full}.")
        else:
            changes[norm] = _coerce(value, hints[norm], full)
    try:
        return dataclasses.replace(obj, **changes)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{prefix.rstrip('.') or 'node'}] {exc}") from None


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``AGENTP2P_DHT__MODE=client`` → ``{"dht": {"mode": "client"}}``.

    A double underscore descends into a section, so single underscores can
    stay part of key names.
    """
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(_ENV_PREFIX):
            continue
        path = name[len(_ENV_PREFIX) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def build_config(
    file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: NodeConfig | None = None,
) -> NodeConfig:
    """Defaults < config file < environment < explicit overrides (CLI flags)."""
    cfg = base or NodeConfig()
    if file is not None:
        cfg = _applied(cfg, load_toml(file))
    env = env_overrides(os.environ if environ is None else environ)
    env.pop("config", None)  # AGENTP2P_CONFIG names the file; handled by the CLI
    cfg = _applied(cfg, env)
    if overrides:
        cfg = _applied(cfg, overrides)
    return cfg.validate()
