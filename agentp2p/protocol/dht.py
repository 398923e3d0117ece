"""Kademlia DHT: values, providers and peer routing under the agentp2p namespace.

Wraps py-libp2p's ``KadDHT`` (k = 20, alpha = 3, protocol ``/ipfs/kad/1.0.0``)
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
"""

from __future__ import annotations

import hashlib
import logging
import os
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

log = logging.getLogger("agentp2p.dht")

NAMESPACE = "agentp2p"
MAX_KEY_BYTES = 50


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


class DHT:
    """The node's Kademlia DHT service and its maintenance tasks."""

    def __init__(self, host: IHost, config: DHTConfig) -> None:
        self.host = host
        self.config = config
        mode = DHTMode.SERVER if config.mode == "server" else DHTMode.CLIENT
        # Constructing KadDHT registers its stream handler (server mode).
        self.kad = KadDHT(host, mode, enable_random_walk=False)
        self.kad.register_validator(NAMESPACE, ValueValidator(config.max_value_size))
        self.lookups = 0

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

    async def put(self, key: str, value: bytes) -> None:
        full = value_key(key)
        try:
            self.kad.validator.validate(full, value) if self.kad.validator else None
        except Exception as exc:
            raise DHTError(f"value rejected: {exc}") from None
        with trio.move_on_after(self.config.query_timeout) as scope:
            await self.kad.put_value(full, value)
        if scope.cancelled_caught:
            raise DHTError(f"put {full!r} timed out")

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
        so we ask those (alpha at a time) and merge with our own.
        """
        mh = provider_key(key)
        store = self.kad.provider_store
        found: list[Any] = list(store.get_providers(mh))
        with trio.move_on_after(self.config.query_timeout):
            closest = await self.lookup(mh)
            limiter = trio.CapacityLimiter(3)  # alpha

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


def dedupe_peer_infos(infos: list[Any]) -> list[PeerInfo]:
    """One PeerInfo per peer, addresses merged in first-seen order."""
    merged: dict[ID, list[Any]] = {}
    for info in infos:
        addrs = merged.setdefault(info.peer_id, [])
        for a in info.addrs:
            if a not in addrs:
                addrs.append(a)
    return [PeerInfo(pid, addrs) for pid, addrs in merged.items()]
