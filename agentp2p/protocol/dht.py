"""Kademlia DHT: values, providers and peer routing under the agentp2p namespace.

Wraps py-libp2p's ``KadDHT`` (k = 20, alpha = 10, protocol ``/ipfs/kad/1.0.0``)
and fixes what it leaves to the application:

* **Routing-table feed.** The library adds a peer to its routing table only
  when that peer sends it a DHT request; it never looks at connections. A
  node that connects without querying (or whose DHT started after the
  connection) never enters the remote table. We add every connected peer
  whose identify lists the Kademlia protocol, and we start the DHT before the
  host listens.
* **Refresh.** A self-lookup at start and a random-walk lookup every
  ``refresh_interval`` so a node learns peers beyond its bootstrap nodes.
* **Namespace.** Values live under ``/agentp2p/<key>`` with a validator that
  bounds their size; other namespaces (``agentrec`` for agent records) are
  registered by their owners.
* **Providers.** ``find_providers`` returns each peer once (the library can
  return duplicates), merging their addresses.
* **Quotas.** The library stores every valid PUT_VALUE and ADD_PROVIDER from
  any peer (up to 50,000 values of up to 1 MiB each). We account the value
  and provider stores per peer (:class:`StoreQuotas`: the library's store
  dicts are replaced by accounted ones, so expiry and eviction give quota
  back) and check, before storing, a per-peer count and byte quota for
  values, a per-peer provider-record quota, and node-wide caps on both
  stores (``DHTConfig.max_*``). A refusal resets the peer's stream (values)
  or skips the record (providers), is counted in ``stats()["quota_hits"]``
  and is an offence of the peer. The peer of an inbound request is known
  through a context variable set around the library's stream handler.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio

from libp2p.abc import IHost
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.records.validator import Validator

from agentp2p.config import DHTConfig
from agentp2p.errors import AgentP2PError
from agentp2p.network.events import PeerEvent, wait_identified
from agentp2p.throttled_log import ThrottledLog

log = logging.getLogger("agentp2p.dht")

#: Offence weight of one refused PUT_VALUE/ADD_PROVIDER (the penalty box bans
#: at 20 points, halving each minute): a peer that keeps pushing past its
#: quota is banned, one that hits it once is not.
QUOTA_WEIGHT = 0.5

#: The peer whose inbound DHT request this task is handling (None: our own work).
_INBOUND_PEER: contextvars.ContextVar[ID | None] = contextvars.ContextVar("agentp2p_dht_inbound_peer", default=None)

#: Set by :meth:`DHT.put` for the duration of one put: [peers asked, peers that stored].
_PUT_TALLY: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("agentp2p_dht_put_tally", default=None)

NAMESPACE = "agentp2p"
MAX_KEY_BYTES = 50


def _tolerate_echoed_sender_record() -> None:
    """Count a PUT_VALUE at a go-libp2p peer as stored when it was.

    go-libp2p-kad-dht answers PUT_VALUE by echoing the request, including the
    senderRecord *we* signed; py-libp2p 0.8.1 checks it against the
    responder's ID and reports the store as failed (docs/interop.md). During
    our own puts (``_PUT_TALLY`` set), our own record echoed back is accepted
    as "nothing to learn" instead. Elsewhere the library's check is unchanged.
    """
    import libp2p.kad_dht.value_store as value_store_module
    from libp2p.kad_dht.pb.kademlia_pb2 import Message
    from libp2p.peer.envelope import consume_envelope

    original = value_store_module.maybe_consume_signed_record
    if getattr(original, "_agentp2p_echo_tolerant", False):
        return

    def tolerant(msg: Any, host: Any, peer_id: Any = None) -> bool:
        if _PUT_TALLY.get() is not None and isinstance(msg, Message) and msg.HasField("senderRecord"):
            try:
                _envelope, record = consume_envelope(msg.senderRecord, "libp2p-peer-record")
                if record.peer_id == host.get_id():
                    return True
            except Exception:  # noqa: BLE001 — the library's check decides
                pass
        return original(msg, host, peer_id)

    tolerant._agentp2p_echo_tolerant = True  # type: ignore[attr-defined]
    value_store_module.maybe_consume_signed_record = tolerant


class DHTError(AgentP2PError):
    """A DHT operation failed or timed out."""


class ValueValidator(Validator):
    """Accepts any value up to ``max_size`` bytes under ``/agentp2p/``.

    ``select`` keeps the first value: generic values carry no version, so
    records that need "newest wins" get their own namespace and validator.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size

    def validate(self, key: str, value: bytes) -> None:
        if not key.startswith(f"/{NAMESPACE}/") or len(key) <= len(NAMESPACE) + 2:
            raise ValueError(f"key {key!r} is not in the /{NAMESPACE}/ namespace")
        if len(value) > self.max_size:
            raise ValueError(f"value of {len(value)} bytes exceeds {self.max_size}")

    def select(self, key: str, values: list[bytes]) -> int:
        return 0


def provider_key(key: str) -> bytes:
    """DHT key for ``key``'s providers: the sha2-256 multihash of its UTF-8 bytes.

    It is what go-libp2p announces for ``cid.NewCidV1(cid.Raw, sha256(key))``.
    """
    return b"\x12\x20" + hashlib.sha256(key.encode("utf-8")).digest()


def value_key(key: str) -> str:
    """``/agentp2p/<key>``: the full DHT key of a user key.

    At most 50 bytes in all: py-libp2p peers ignore a FIND_NODE for a longer
    key that is not a multihash, so a longer key would be stored only on our
    direct neighbours — quietly. We refuse it instead.
    """
    if not isinstance(key, str) or not key.strip("/"):
        raise ValueError("DHT key must be a non-empty string")
    full = f"/{NAMESPACE}/{key.lstrip('/')}"
    if len(full.encode("utf-8")) > MAX_KEY_BYTES:
        room = MAX_KEY_BYTES - len(NAMESPACE) - 2
        raise ValueError(f"DHT key {key!r} is too long: at most {room} bytes (py-libp2p peers ignore longer lookups)")
    return full


class DHTQuotaExceeded(DHTError):
    """A peer's PUT_VALUE would exceed its quota or the node's cap."""


class _AccountedValues(dict):  # type: ignore[type-arg]
    """The library's ``ValueStore.store`` (key -> (Record, validity)), counted by owner.

    Every way the library adds or drops an entry (``store[k] = ...``,
    ``del store[k]``) passes through here, so counts stay exact through
    expiry and eviction. The owner of an entry is the peer whose request was
    being handled when it was stored (None for our own puts and lookups).
    """

    def __init__(self, quotas: StoreQuotas) -> None:
        super().__init__()
        self._q = quotas
        self.owner: dict[bytes, tuple[Any, int]] = {}

    def __setitem__(self, key: bytes, entry: Any) -> None:
        if key in self:
            self._forget(key)
        super().__setitem__(key, entry)
        n = entry[0].ByteSize()
        peer = _INBOUND_PEER.get()
        self.owner[key] = (peer, n)
        self._q.value_bytes += n
        if peer is not None:
            self._q.values_by_peer[peer] += 1
            self._q.value_bytes_by_peer[peer] += n

    def _forget(self, key: bytes) -> None:
        peer, n = self.owner.pop(key, (None, 0))
        self._q.value_bytes -= n
        if peer is not None:
            _decrement(self._q.values_by_peer, peer, 1)
            _decrement(self._q.value_bytes_by_peer, peer, n)

    def __delitem__(self, key: bytes) -> None:
        super().__delitem__(key)
        self._forget(key)

    def pop(self, key: bytes, *default: Any) -> Any:
        if key in self:
            self._forget(key)
        return super().pop(key, *default)

    def clear(self) -> None:
        for key in list(self):
            del self[key]


class _AccountedProviders(dict):  # type: ignore[type-arg]
    """One key's providers (peer id string -> ProviderRecord), counted per provider."""

    def __init__(self, quotas: StoreQuotas, initial: Any = ()) -> None:
        super().__init__()
        self._q = quotas
        for k, v in dict(initial).items():
            self[k] = v

    def __setitem__(self, peer: str, record: Any) -> None:
        if peer not in self:
            self._q.providers_by_peer[peer] += 1
            self._q.provider_records += 1
        super().__setitem__(peer, record)

    def __delitem__(self, peer: str) -> None:
        super().__delitem__(peer)
        _decrement(self._q.providers_by_peer, peer, 1)
        self._q.provider_records -= 1

    def pop(self, peer: str, *default: Any) -> Any:
        if peer in self:
            _decrement(self._q.providers_by_peer, peer, 1)
            self._q.provider_records -= 1
        return super().pop(peer, *default)

    def drop_all(self) -> None:
        for peer in list(self):
            del self[peer]


class _AccountedProviderKeys(dict):  # type: ignore[type-arg]
    """The library's ``ProviderStore.providers`` (key -> {peer: record})."""

    def __init__(self, quotas: StoreQuotas) -> None:
        super().__init__()
        self._q = quotas

    def __setitem__(self, key: bytes, providers: Any) -> None:
        if key in self:
            super().__getitem__(key).drop_all()
        if not isinstance(providers, _AccountedProviders):
            providers = _AccountedProviders(self._q, providers)
        super().__setitem__(key, providers)

    def __delitem__(self, key: bytes) -> None:
        super().__getitem__(key).drop_all()
        super().__delitem__(key)

    def pop(self, key: bytes, *default: Any) -> Any:
        if key in self:
            super().__getitem__(key).drop_all()
        return super().pop(key, *default)


def _decrement(counter: Counter[Any], key: Any, n: int) -> None:
    left = counter[key] - n
    if left > 0:
        counter[key] = left
    else:
        counter.pop(key, None)


class StoreQuotas:
    """What each peer (and all peers together) may make this node store.

    Installed on a ``KadDHT`` by :meth:`install`; the checks run before the
    library stores anything a peer sent.
    """

    def __init__(self, config: DHTConfig, offence: Callable[[Any, str, float], None] | None = None) -> None:
        self.config = config
        self._offence = offence
        self._log = ThrottledLog(log, interval=30.0)
        self.value_bytes = 0
        self.values_by_peer: Counter[Any] = Counter()
        self.value_bytes_by_peer: Counter[Any] = Counter()
        self.provider_records = 0
        self.providers_by_peer: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()
        self.inbound_values = 0
        self.inbound_providers = 0
        self._values: _AccountedValues | None = None
        self._provider_keys: _AccountedProviderKeys | None = None

    @property
    def values(self) -> int:
        return len(self._values) if self._values is not None else 0

    def install(self, kad: KadDHT) -> None:
        values = _AccountedValues(self)
        for k, v in kad.value_store.store.items():
            values[k] = v
        kad.value_store.store = values
        self._values = values
        providers = _AccountedProviderKeys(self)
        for k, v in kad.provider_store.providers.items():
            providers[k] = v
        kad.provider_store.providers = providers
        self._provider_keys = providers

        handle = kad._do_handle_stream

        async def with_peer(stream: Any) -> None:
            token = _INBOUND_PEER.set(stream.muxed_conn.peer_id)
            try:
                await handle(stream)
            finally:
                _INBOUND_PEER.reset(token)

        kad._do_handle_stream = with_peer  # type: ignore[method-assign]

        put_record = kad.value_store.put_record

        def checked_put_record(key: bytes, record: Any) -> None:
            peer = _INBOUND_PEER.get()
            refusal = self.check_value(peer, key, record.ByteSize())
            if refusal is not None:
                if peer is None:
                    return  # a record we fetched: not cached, nobody to blame
                # The library resets the peer's stream: the PUT is refused.
                raise DHTQuotaExceeded(refusal)
            if peer is not None:
                self.inbound_values += 1
            put_record(key, record)

        kad.value_store.put_record = checked_put_record  # type: ignore[method-assign]

        add_provider = kad.provider_store.add_provider

        def checked_add_provider(key: bytes, provider: Any) -> None:
            peer = _INBOUND_PEER.get()
            if peer is not None and provider is not None and provider.peer_id:
                if self.check_provider(peer, key, str(provider.peer_id)) is not None:
                    return  # skipped; the library acknowledges regardless
                self.inbound_providers += 1
            add_provider(key, provider)

        kad.provider_store.add_provider = checked_add_provider  # type: ignore[method-assign]

    # -- checks (O(1)) ----------------------------------------------------------

    def _hit(self, peer: Any, what: str, blame: bool = True) -> str:
        """Count a refusal; only a peer's own quota being full is an offence (node-wide caps are nobody's)."""
        self.hits[what] += 1
        if peer is not None:
            self._log.warning((str(peer), what), "dht: refused a store from peer %s: %s", peer, what)
            if blame and self._offence is not None:
                self._offence(peer, f"dht:{what}", QUOTA_WEIGHT)
        return what

    def check_value(self, peer: Any, key: bytes, n: int) -> str | None:
        """None if ``peer`` may store ``n`` bytes under ``key``, else the quota that refuses it."""
        cfg = self.config
        values = self._values
        old_peer, old_n = values.owner.get(key, (None, 0)) if values is not None else (None, 0)
        replacing = values is not None and key in values
        if self.values + (0 if replacing else 1) > cfg.max_values:
            return self._hit(peer, "max_values", blame=False)
        if self.value_bytes - old_n + n > cfg.max_value_bytes:
            return self._hit(peer, "max_value_bytes", blame=False)
        if peer is None:
            return None
        mine = replacing and old_peer == peer
        if not mine and self.values_by_peer[peer] + 1 > cfg.max_values_per_peer:
            return self._hit(peer, "max_values_per_peer")
        if self.value_bytes_by_peer[peer] - (old_n if mine else 0) + n > cfg.max_value_bytes_per_peer:
            return self._hit(peer, "max_value_bytes_per_peer")
        return None

    def check_provider(self, peer: Any, key: bytes, provider: str) -> str | None:
        """None if ``provider`` may be recorded for ``key``, else the quota that refuses it."""
        cfg = self.config
        # The library refreshes an existing (key, provider) pair in place:
        # only a new pair costs quota.
        keys = self._provider_keys
        existing = keys.get(key) if keys is not None else None
        if existing is not None and provider in existing:
            return None
        if self.provider_records + 1 > cfg.max_provider_records:
            return self._hit(peer, "max_provider_records", blame=False)
        if self.providers_by_peer[provider] + 1 > cfg.max_provider_records_per_peer:
            return self._hit(peer, "max_provider_records_per_peer")
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "value_bytes": self.value_bytes,
            "provider_records": self.provider_records,
            "inbound_values": self.inbound_values,
            "inbound_providers": self.inbound_providers,
            "quota_hits": dict(self.hits),
            "peers_storing_values": len(self.values_by_peer),
        }


class DHT:
    """The node's Kademlia DHT service and its maintenance tasks."""

    def __init__(
        self, host: IHost, config: DHTConfig, *, offence: Callable[[Any, str, float], None] | None = None
    ) -> None:
        self.host = host
        self.config = config
        mode = DHTMode.SERVER if config.mode == "server" else DHTMode.CLIENT
        # Constructing KadDHT registers its stream handler (server mode).
        self.kad = KadDHT(host, mode, enable_random_walk=False)
        self.kad.register_validator(NAMESPACE, ValueValidator(config.max_value_size))
        self.quotas = StoreQuotas(config, offence)
        self.quotas.install(self.kad)
        self.lookups = 0
        self._count_remote_stores()

    def _count_remote_stores(self) -> None:
        """Tally, per :meth:`put`, the peers asked to store and those that did
        (the library's ``put_value`` logs that count and returns nothing)."""
        _tolerate_echoed_sender_record()
        store_at_peer = self.kad.value_store._store_at_peer

        async def counted(peer_id: ID, key: bytes, value: bytes, record: Any = None) -> bool:
            ok = await store_at_peer(peer_id, key, value, record=record)
            tally = _PUT_TALLY.get()
            if tally is not None and peer_id != self.host.get_id():
                tally[0] += 1
                tally[1] += 1 if ok else 0
            return ok

        self.kad.value_store._store_at_peer = counted  # type: ignore[method-assign]

    def stats(self) -> dict[str, Any]:
        return {"lookups": self.lookups, "routing_table_size": self.routing_table_size, **self.quotas.stats()}

    @property
    def query_timeout(self) -> float:
        return self.config.query_timeout

    async def put_raw(self, key: str, value: bytes) -> None:
        """Store ``value`` under the full key ``key`` (a namespace with its own
        validator, e.g. agent records), within ``query_timeout``."""
        with trio.fail_after(self.config.query_timeout):
            await self.kad.put_value(key, value)

    async def get_raw(self, key: str) -> bytes | None:
        """The value under the full key ``key``; raises ``trio.TooSlowError`` at ``query_timeout``."""
        with trio.fail_after(self.config.query_timeout):
            return await self.kad.get_value(key)

    def register_validator(self, namespace: str, validator: Validator) -> None:
        self.kad.register_validator(namespace, validator)

    @property
    def routing_table_size(self) -> int:
        return self.kad.get_routing_table_size()

    def routing_table_peers(self) -> list[ID]:
        return list(self.kad.routing_table.get_peer_ids())

    # -- maintenance ----------------------------------------------------------

    async def feed_routing_table(self, events: trio.MemoryReceiveChannel[PeerEvent]) -> None:
        """Add each connected Kademlia server to the routing table."""
        async with trio.open_nursery() as nursery:
            async for ev in events:
                if ev.connected:
                    nursery.start_soon(self._add_when_identified, ev.peer_id)

    async def _add_when_identified(self, peer_id: ID) -> None:
        protos = await wait_identified(self.host, peer_id)
        if str(KAD_PROTOCOL) in protos:
            try:
                await self.kad.add_peer(peer_id, skip_server_mode_check=True)
            except Exception as exc:  # noqa: BLE001
                log.debug("could not add %s to routing table: %r", peer_id, exc)

    async def lookup(self, target: bytes) -> list[ID]:
        """An iterative FIND_NODE for ``target``; fills the routing table as a side effect."""
        self.lookups += 1
        with trio.move_on_after(self.config.query_timeout):
            return list(await self.kad.peer_routing.find_closest_peers_network(target))
        return []

    async def self_lookup(self) -> None:
        await self.lookup(self.host.get_id().to_bytes())

    async def refresh_forever(self) -> None:
        """Random walks: a lookup of a random key each ``refresh_interval``."""
        while True:
            await trio.sleep(self.config.refresh_interval)
            try:
                await self.lookup(os.urandom(32))
            except Exception as exc:  # noqa: BLE001 — maintenance must survive
                log.debug("random walk failed: %r", exc)

    # -- API ------------------------------------------------------------------

    async def put(self, key: str, value: bytes) -> int:
        """Store ``value`` here and at the closest peers; returns how many
        remote peers stored it. Raises :class:`DHTError` when peers exist
        but none stored it (the value is then held only by this node)."""
        full = value_key(key)
        if not value:
            # py-libp2p peers refuse it ("Missing key or value in PUT_VALUE").
            raise DHTError("value rejected: an empty value cannot be stored at peers")
        try:
            self.kad.validator.validate(full, value) if self.kad.validator else None
        except Exception as exc:
            raise DHTError(f"value rejected: {exc}") from None
        tally = [0, 0]
        token = _PUT_TALLY.set(tally)
        try:
            with trio.move_on_after(self.config.query_timeout) as scope:
                await self.kad.put_value(full, value)
        finally:
            _PUT_TALLY.reset(token)
        asked, stored = tally
        if scope.cancelled_caught:
            raise DHTError(f"put {full!r} timed out ({stored} of {asked} peers asked had stored it)")
        if stored == 0 and (asked > 0 or self.routing_table_size > 0):
            raise DHTError(
                f"put {full!r}: no peer stored the value ({asked} asked); only this node holds it"
            )
        return stored

    async def get(self, key: str) -> bytes | None:
        full = value_key(key)
        with trio.move_on_after(self.config.query_timeout):
            return await self.kad.get_value(full)
        raise DHTError(f"get {full!r} timed out")

    async def provide(self, key: str) -> None:
        with trio.move_on_after(self.config.query_timeout) as scope:
            ok = await self.kad.provider_store.provide(provider_key(key))
        if scope.cancelled_caught:
            raise DHTError(f"provide {key!r} timed out")
        if not ok:
            raise DHTError(f"provide {key!r}: no peer accepted the provider record")

    async def find_providers(self, key: str, count: int = 20) -> list[PeerInfo]:
        """Providers of ``key``, each once, from us and the k closest peers to it.

        The library's lookup returns early with whatever the local store
        holds, so a node that stored one provider record never learns about
        the others. Provider records live on the k peers closest to the key,
        so we ask those (three at a time; the library's own lookups use alpha = 10)
        and merge with our own.
        """
        mh = provider_key(key)
        store = self.kad.provider_store
        found: list[Any] = list(store.get_providers(mh))
        with trio.move_on_after(self.config.query_timeout):
            closest = await self.lookup(mh)
            limiter = trio.CapacityLimiter(3)

            async def ask(peer_id: ID) -> None:
                if len(dedupe_peer_infos(found)) >= count:
                    return
                async with limiter:
                    with trio.move_on_after(5):
                        try:
                            providers, _ = await store._get_providers_from_peer_with_closers(peer_id, mh)
                        except Exception as exc:  # noqa: BLE001 — one bad peer is not the lookup
                            log.debug("get_providers from %s failed: %r", peer_id, exc)
                            return
                        found.extend(providers or [])

            async with trio.open_nursery() as nursery:
                for peer_id in closest:
                    if peer_id != self.host.get_id():
                        nursery.start_soon(ask, peer_id)
        return dedupe_peer_infos(found)[:count]

    async def find_peer(self, peer_id: ID) -> PeerInfo | None:
        with trio.move_on_after(self.config.query_timeout):
            return await self.kad.find_peer(peer_id)
        return None

    async def locate(self, peer_id: ID) -> PeerInfo | None:
        """Where the *network* says ``peer_id`` is: an iterative FIND_NODE,
        never just our own peerstore (py-libp2p's ``find_peer`` answers from
        the peerstore first — with the very addresses that just failed). The
        addresses peers return land in the peerstore; all known ones are returned."""
        await self.lookup(peer_id.to_bytes())
        try:
            addrs = list(self.host.get_peerstore().addrs(peer_id))
        except Exception:  # noqa: BLE001 — still unknown
            return None
        return PeerInfo(peer_id, addrs) if addrs else None


def dedupe_peer_infos(infos: list[Any]) -> list[PeerInfo]:
    """One PeerInfo per peer, addresses merged in first-seen order."""
    merged: dict[ID, list[Any]] = {}
    for info in infos:
        addrs = merged.setdefault(info.peer_id, [])
        for a in info.addrs:
            if a not in addrs:
                addrs.append(a)
    return [PeerInfo(pid, addrs) for pid, addrs in merged.items()]
