"""Each API operation once: the request to make and how to read the answer.

The async and sync clients are thin drivers over these descriptions, so the
two cannot drift apart, and a new endpoint (messages, members, records) is
one function here plus a one-line method in each client.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from agentp2p.client.errors import ApiError, ClientError, Forbidden, NotFound, TokenError
from agentp2p.client.types import (
    Agent,
    BannedPeer,
    DirectMessage,
    Member,
    MemberEvent,
    Message,
    NodeInfo,
    Peer,
    PeerAddrs,
    Record,
    SendReceipt,
    TopicPeers,
    encode_payload,
)

T = TypeVar("T")

PREFIX = "/v1"


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    decode: Callable[[Any], T]
    params: dict[str, Any] | None = None
    json: dict[str, Any] | None = None
    none_on_404: bool = False  # "not found" is an answer (dht_get, find_peer), not an error
    timeout: float | None = None  # HTTP timeout for this call, when it may wait longer than the client's


def _peer_path(peer_id: str, suffix: str = "") -> str:
    return f"{PREFIX}/peers/{quote(peer_id, safe='')}{suffix}"


def node() -> Call[NodeInfo]:
    return Call("GET", f"{PREFIX}/node", NodeInfo.from_json)


def stats() -> Call[dict[str, Any]]:
    return Call("GET", f"{PREFIX}/node/stats", dict)


def peers() -> Call[list[Peer]]:
    return Call("GET", f"{PREFIX}/peers", lambda d: [Peer.from_json(p) for p in d["peers"]])


def banned_peers() -> Call[list[BannedPeer]]:
    return Call("GET", f"{PREFIX}/peers", lambda d: [BannedPeer.from_json(b) for b in d.get("banned", [])])


def denied() -> Call[list[str]]:
    return Call("GET", f"{PREFIX}/peers/denied", lambda d: [str(p) for p in d["denied"]])


def deny(peer_id: str) -> Call[bool]:
    return Call("PUT", f"{PREFIX}/peers/denied/{quote(peer_id, safe='')}", lambda d: bool(d["changed"]))


def allow(peer_id: str | None = None) -> Call[list[str]]:
    if peer_id is None:
        return Call("DELETE", f"{PREFIX}/peers/denied", lambda d: [str(p) for p in d["allowed"]])
    return Call(
        "DELETE", f"{PREFIX}/peers/denied/{quote(peer_id, safe='')}", lambda d: [peer_id] if d["changed"] else []
    )


def allow_list() -> Call[list[str] | None]:
    return Call("GET", f"{PREFIX}/peers/allowed", lambda d: [str(p) for p in d["allowed"]] if d["allow_only"] else None)


def add_to_allow_list(peer_id: str) -> Call[bool]:
    return Call("PUT", f"{PREFIX}/peers/allowed/{quote(peer_id, safe='')}", lambda d: bool(d["changed"]))


def remove_from_allow_list(peer_id: str) -> Call[bool]:
    return Call("DELETE", f"{PREFIX}/peers/allowed/{quote(peer_id, safe='')}", lambda d: bool(d["changed"]))


def policy() -> Call[dict[str, Any]]:
    return Call("GET", f"{PREFIX}/policy", lambda d: dict(d["policy"]))


def set_policy(doc: dict[str, Any]) -> Call[dict[str, Any]]:
    return Call("PUT", f"{PREFIX}/policy", lambda d: dict(d["policy"]), json={"policy": doc})


def certificates() -> Call[list[dict[str, Any]]]:
    return Call("GET", f"{PREFIX}/certificates", lambda d: [dict(c) for c in d["certificates"]])


def add_certificate(text: str) -> Call[dict[str, Any]]:
    return Call("POST", f"{PREFIX}/certificates", lambda d: dict(d["certificate"]), json={"certificate": text})


def peer_groups(peer_id: str, refresh: bool = False) -> Call[dict[str, Any]]:
    path = f"{PREFIX}/peers/{quote(peer_id, safe='')}/groups" + ("?refresh=1" if refresh else "")
    return Call("GET", path, dict)


def trust_scores() -> Call[list[dict[str, Any]]]:
    return Call("GET", f"{PREFIX}/trust", lambda d: [dict(p) for p in d["peers"]])


def trust(peer_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"{PREFIX}/trust/{quote(peer_id, safe='')}", dict)


def pin(peer_id: str, pin: str | None) -> Call[dict[str, Any]]:
    return Call("PUT", f"{PREFIX}/trust/{quote(peer_id, safe='')}", dict, json={"pin": pin})


def peer(peer_id: str) -> Call[Peer]:
    return Call("GET", _peer_path(peer_id), Peer.from_json)


def connect(addr: str) -> Call[str]:
    return Call("POST", f"{PREFIX}/peers", lambda d: str(d["peer_id"]), json={"addr": addr})


def disconnect(peer_id: str) -> Call[None]:
    return Call("DELETE", _peer_path(peer_id), lambda d: None)


def ping(peer_id: str) -> Call[float]:
    return Call("POST", _peer_path(peer_id, "/ping"), lambda d: float(d["rtt_ms"]) / 1000.0)


def publish(topic: str, data: bytes | str) -> Call[int]:
    body = {"topic": topic, **encode_payload(data, "data", "data_b64")}
    return Call("POST", f"{PREFIX}/pubsub/publish", lambda d: int(d["size"]), json=body)


def topics() -> Call[dict[str, list[str]]]:
    return Call("GET", f"{PREFIX}/pubsub/topics", lambda d: {t["topic"]: list(t["peers"]) for t in d["topics"]})


def topic_peers(topic: str) -> Call[list[str]]:
    return Call("GET", f"{PREFIX}/pubsub/peers", lambda d: list(d["peers"]), params={"topic": topic})


def pubsub_peers(topic: str) -> Call[TopicPeers]:
    """The same endpoint as :func:`topic_peers`, read whole: mesh and scores too."""
    return Call("GET", f"{PREFIX}/pubsub/peers", TopicPeers.from_json, params={"topic": topic})


def dht_get(key: str) -> Call[bytes | None]:
    return Call("GET", f"{PREFIX}/dht/value", lambda d: base64.b64decode(d["value_b64"]), params={"key": key}, none_on_404=True)


def dht_put(key: str, value: bytes | str) -> Call[int]:
    """Returns how many remote peers stored the value."""
    return Call("PUT", f"{PREFIX}/dht/value", lambda d: int(d["stored"]), json={"key": key, **encode_payload(value, "value", "value_b64")})


def provide(key: str) -> Call[None]:
    return Call("POST", f"{PREFIX}/dht/providers", lambda d: None, json={"key": key})


def find_providers(key: str, count: int = 20) -> Call[list[PeerAddrs]]:
    return Call(
        "GET",
        f"{PREFIX}/dht/providers",
        lambda d: [PeerAddrs.from_json(p) for p in d["providers"]],
        params={"key": key, "count": count},
    )


def find_peer(peer_id: str) -> Call[PeerAddrs | None]:
    return Call("GET", f"{PREFIX}/dht/peers/{quote(peer_id, safe='')}", PeerAddrs.from_json, none_on_404=True)


# -- direct messages ----------------------------------------------------------------

#: Extra seconds the HTTP request waits beyond a send's own timeout, so the
#: daemon's 504 (which names what went wrong) arrives before ours.
_GRACE = 10.0


def _outgoing(peer_id: str, data: bytes | str, type: str | None, timeout: float, seal: bool) -> dict[str, Any]:  # noqa: A002
    body: dict[str, Any] = {"peer_id": peer_id, **encode_payload(data, "data", "data_b64"), "timeout": timeout}
    if type is not None:
        body["type"] = type
    if seal:
        body["seal"] = True
    return body


def send(
    peer_id: str,
    data: bytes | str,
    *,
    type: str | None = None,  # noqa: A002
    timeout: float = 30.0,
    seal: bool = False,
    wait: str | None = None,
) -> Call[str]:
    """The message id (what ``send`` always returned); ``wait``: ``"stored"``
    (the daemon's default) or ``"consumed"``."""
    body = _send_body(peer_id, data, type, timeout, seal, wait)
    return Call("POST", f"{PREFIX}/messages", lambda d: str(d["id"]), json=body, timeout=timeout + _GRACE)


def send_with_receipt(
    peer_id: str,
    data: bytes | str,
    *,
    type: str | None = None,  # noqa: A002
    timeout: float = 30.0,
    seal: bool = False,
    wait: str | None = None,
) -> Call[SendReceipt]:
    """As :func:`send`, answering the whole receipt."""
    body = _send_body(peer_id, data, type, timeout, seal, wait)
    return Call("POST", f"{PREFIX}/messages", SendReceipt.from_json, json=body, timeout=timeout + _GRACE)


def _send_body(peer_id: str, data: bytes | str, type: str | None, timeout: float, seal: bool, wait: str | None) -> dict[str, Any]:  # noqa: A002
    body = _outgoing(peer_id, data, type, timeout, seal)
    if wait is not None:
        body["wait"] = wait
    return body


def request(peer_id: str, data: bytes | str, *, type: str | None = None, timeout: float = 30.0, seal: bool = False) -> Call[bytes]:  # noqa: A002
    body = _outgoing(peer_id, data, type, timeout, seal)
    return Call("POST", f"{PREFIX}/messages/request", lambda d: base64.b64decode(d["data_b64"]), json=body, timeout=timeout + _GRACE)


def reply(request_id: str, data: bytes | str) -> Call[None]:
    path = f"{PREFIX}/messages/{quote(request_id, safe='')}/reply"
    return Call("POST", path, lambda d: None, json=encode_payload(data, "data", "data_b64"))


def reply_error(request_id: str, error: str) -> Call[None]:
    return Call("POST", f"{PREFIX}/messages/{quote(request_id, safe='')}/reply", lambda d: None, json={"error": error})


def incoming_path(auto_ack: bool = False) -> tuple[str, dict[str, Any]]:
    return f"{PREFIX}/messages/incoming", ({"auto_ack": "true"} if auto_ack else {})


def ack(ids: list[str]) -> Call[list[str]]:
    """Acknowledge direct messages by id; answers the ids that were waiting."""
    return Call("POST", f"{PREFIX}/messages/ack", lambda d: [str(i) for i in d["acked"]], json={"ids": list(ids)})


def handle_path(type: str) -> tuple[str, dict[str, Any]]:  # noqa: A002
    return f"{PREFIX}/messages/handle", {"type": type}


# -- membership -------------------------------------------------------------------------


def members(states: list[str] | tuple[str, ...] | None = None) -> Call[list[Member]]:
    params = {"state": list(states)} if states else None
    return Call("GET", f"{PREFIX}/members", lambda d: [Member.from_json(m) for m in d["members"]], params=params)


def member_events_path() -> tuple[str, dict[str, Any]]:
    return f"{PREFIX}/members/events", {}


# -- capability records -------------------------------------------------------------------

#: Finding agents asks the DHT and then each candidate; give it time.
_FIND_TIMEOUT = 60.0


def own_record() -> Call[Record]:
    return Call("GET", f"{PREFIX}/records/self", Record.from_answer)


def update_record(fields: dict[str, Any]) -> Call[Record]:
    return Call("PUT", f"{PREFIX}/records/self", Record.from_answer, json=fields, timeout=_FIND_TIMEOUT)


def get_record(peer_id: str, fresh: bool = False) -> Call[Record | None]:
    params = {"fresh": "true"} if fresh else None
    path = f"{PREFIX}/records/{quote(peer_id, safe='')}"
    return Call("GET", path, Record.from_answer, params=params, none_on_404=True, timeout=_FIND_TIMEOUT)


def find_agents(capability: str, tags: list[str] | tuple[str, ...] = (), limit: int = 10, card: bool = False) -> Call[list[Agent]]:
    params: dict[str, Any] = {"capability": capability, "limit": limit}
    if tags:
        params["tag"] = list(tags)
    if card:
        params["card"] = "true"
    return Call(
        "GET", f"{PREFIX}/records", lambda d: [Agent.from_json(a) for a in d["agents"]], params=params, timeout=_FIND_TIMEOUT
    )


# -- answers ------------------------------------------------------------------------


def error_from(status: int, body: bytes, token_source: str) -> ClientError:
    """The exception for a non-2xx answer."""
    stored: bool | None = None
    try:
        doc = json.loads(body)
        code, message = str(doc["error"]), str(doc["message"])
        if isinstance(doc.get("stored"), bool):
            stored = doc["stored"]
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message = "http_error", body.decode("utf-8", "replace")[:200] or f"HTTP {status}"
    if status == 401:
        return TokenError(f"the daemon refused the API token from {token_source}: {message}")
    if status == 403:
        return Forbidden(status, code, message)
    if status == 404:
        return NotFound(status, code, message)
    return ApiError(status, code, message, stored=stored)


def finish(call: Call[T], status: int, body: bytes, token_source: str) -> T:
    if 200 <= status < 300:
        try:
            doc = json.loads(body) if body else {}
            return call.decode(doc)
        except (ValueError, KeyError, TypeError) as exc:
            raise ClientError(f"unexpected answer from the daemon to {call.method} {call.path}: {exc!r}") from None
    if status == 404 and call.none_on_404:
        try:
            if json.loads(body).get("error") == "not_found":
                return None  # type: ignore[return-value]
        except (ValueError, AttributeError):
            pass
    raise error_from(status, body, token_source)


# -- event streams ------------------------------------------------------------------


@dataclass(frozen=True)
class StreamEvent:
    """One event from an API event stream, its data decoded from JSON."""

    event: str
    data: dict[str, Any]
    id: str | None = None


def subscribe_path(topic: str) -> tuple[str, dict[str, Any]]:
    return f"{PREFIX}/pubsub/subscribe", {"topic": topic}


def message_from(event: StreamEvent) -> Message:
    return Message.from_json(event.data)


def direct_message_from(event: StreamEvent) -> DirectMessage:
    return DirectMessage.from_json(event.data)


def member_event_from(event: StreamEvent) -> MemberEvent:
    return MemberEvent.from_json(event.event, event.data)
