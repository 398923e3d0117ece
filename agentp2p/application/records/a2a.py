"""Conversion between agent records and A2A Agent Cards (JSON).

An agent that already describes itself with an A2A Agent Card can publish it
as a record (:func:`agent_card_to_record`), and any record can be shown as a
card (:func:`record_to_agent_card`). Cards are handled as parsed JSON
(``dict``) or JSON text; only the fields below are interpreted, everything
else is carried verbatim.

Mapping (card field -> record field)::

    AgentCard.name                   <-> AgentRecord.name
    AgentCard.description            <-> AgentRecord.description
    AgentCard.skills[i]              <-> AgentRecord.capabilities[i]
      skill.id                       <-> Capability.name   (the discovery key)
      skill.name                     <-> Capability.title
      skill.description              <-> Capability.description
      skill.tags                     <-> Capability.tags
      skill.examples                 <-> Capability.examples
      skill.inputModes               <-> Capability.input_modes
      skill.outputModes              <-> Capability.output_modes
      any other skill field          <-> Capability.extra_json (JSON object)
    any other card field K           <-> metadata["a2a." + K] = compact JSON of the value
        (url, version, protocolVersion, provider, capabilities, securitySchemes,
         security, defaultInputModes, defaultOutputModes, iconUrl, ...)
    capabilities.extensions[] entry  <-> what A2A has no field for:
      uri = AGENTP2P_EXTENSION_URI       Capability.version, input/output schema,
      params.skills[id].version ...      and metadata keys not starting "a2a."
      params.metadata

The agentp2p extension is an A2A ``AgentExtension`` (the spec's mechanism
for extra data); it is added to a card only when there is something to put in
it and is removed again when a card is turned into a record. Hence
card -> record -> card gives back the same card (for cards within the record
size limits; an empty ``examples``/``inputModes``/``outputModes`` list comes
back absent), and record -> card -> record gives back the same name,
description, capabilities and metadata. Peer ID, key, addresses, seq and
expiry have no A2A counterpart; the caller supplies them.

A record that did not come from a card lacks A2A's required ``url``,
``version``, ``protocolVersion``, ``capabilities`` and default modes; the card
gets ``url = "libp2p://<peer-id>"`` (not a standard A2A transport — a stable
name for the agent), ``version = "0.0.0"``, ``protocolVersion =``
:data:`A2A_PROTOCOL_VERSION`, ``capabilities = {}`` and ``["text/plain"]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from libp2p.crypto.keys import PublicKey
from multiaddr import Multiaddr

from .errors import InvalidRecord, Reason
from .model import DEFAULT_TTL_MS, AgentRecord, Capability

__all__ = [
    "A2A_PROTOCOL_VERSION",
    "AGENTP2P_EXTENSION_URI",
    "agent_card_to_record",
    "card_fields",
    "record_to_agent_card",
]

A2A_PROTOCOL_VERSION = "0.3.0"
AGENTP2P_EXTENSION_URI = "urn:agentp2p:a2a:record:v1"  # see docs/records.md
META_PREFIX = "a2a."

_SKILL_LISTS = {"tags": "tags", "examples": "examples",
                "inputModes": "input_modes", "outputModes": "output_modes"}
_SKILL_TEXT = {"id": "name", "name": "title", "description": "description"}


def _compact(value: Any) -> str:
    # Key order is kept (JSON Schema authors often order properties on purpose).
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _bad(detail: str) -> InvalidRecord:
    return InvalidRecord(Reason.FIELD, f"agent card: {detail}")


def _str_list(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{where} must be a list of strings")
    return tuple(value)


# --- card -> record -------------------------------------------------------------
def _skill_to_capability(skill: Any, ext: Mapping[str, Any]) -> Capability:
    if not isinstance(skill, dict):
        raise _bad("each skill must be an object")
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in skill.items():
        if key in _SKILL_TEXT:
            if not isinstance(value, str):
                raise _bad(f"skill {key} must be a string")
            kwargs[_SKILL_TEXT[key]] = value
        elif key in _SKILL_LISTS:
            kwargs[_SKILL_LISTS[key]] = _str_list(f"skill {key}", value)
        else:
            extra[key] = value
    if "name" not in kwargs:
        raise _bad("skill without id")
    more = ext.get(kwargs["name"], {})
    if not isinstance(more, dict):
        raise _bad("agentp2p extension skill entry must be an object")
    version = more.get("version", "")
    if not isinstance(version, str):
        raise _bad("agentp2p extension version must be a string")
    for src, dst in (("inputSchema", "input_schema_json"), ("outputSchema", "output_schema_json")):
        if src in more:
            if not isinstance(more[src], dict):
                raise _bad(f"agentp2p extension {src} must be an object")
            kwargs[dst] = _compact(more[src])
    return Capability(version=version, extra_json=_compact(extra) if extra else "", **kwargs)


def _pop_extension(card: dict[str, Any]) -> dict[str, Any]:
    """Remove our extension from ``card`` (a copy) and return its params."""
    caps = card.get("capabilities")
    if not isinstance(caps, dict) or not isinstance(caps.get("extensions"), list):
        return {}
    ours = [e for e in caps["extensions"] if isinstance(e, dict) and e.get("uri") == AGENTP2P_EXTENSION_URI]
    if not ours:
        return {}
    caps = dict(caps)
    caps["extensions"] = [e for e in caps["extensions"] if e not in ours]
    if not caps["extensions"]:
        del caps["extensions"]
    card["capabilities"] = caps
    params = ours[0].get("params", {})
    if not isinstance(params, dict):
        raise _bad("agentp2p extension params must be an object")
    return params


def card_fields(
    card: Mapping[str, Any] | str,
) -> tuple[str, str, tuple[Capability, ...], dict[str, str]]:
    """Split a card into (name, description, capabilities, metadata).

    Raises :class:`InvalidRecord` (reason FIELD) for cards that are not JSON
    objects or whose mapped fields have the wrong JSON types.
    """
    if isinstance(card, str):
        try:
            card = json.loads(card)
        except ValueError as exc:
            raise _bad(f"not JSON: {exc}") from exc
    if not isinstance(card, Mapping):
        raise _bad("must be a JSON object")
    card = dict(card)
    params = _pop_extension(card)
    skill_ext = params.get("skills", {})
    meta_ext = params.get("metadata", {})
    if not isinstance(skill_ext, dict) or not isinstance(meta_ext, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta_ext.items()
    ):
        raise _bad("malformed agentp2p extension params")
    name = card.pop("name", "")
    description = card.pop("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise _bad("name and description must be strings")
    skills = card.pop("skills", [])
    if not isinstance(skills, list):
        raise _bad("skills must be a list")
    capabilities = tuple(_skill_to_capability(s, skill_ext) for s in skills)
    metadata = {k: v for k, v in meta_ext.items() if not k.startswith(META_PREFIX)}
    metadata.update({META_PREFIX + k: _compact(v) for k, v in card.items()})
    return name, description, capabilities, metadata


def agent_card_to_record(
    card: Mapping[str, Any] | str,
    *,
    public_key: PublicKey,
    now_ms: int,
    seq: int,
    addrs: Iterable[Multiaddr] = (),
    ttl_ms: int = DEFAULT_TTL_MS,
) -> AgentRecord:
    """Make a validated record publishing ``card`` for ``public_key``'s peer."""
    name, description, capabilities, metadata = card_fields(card)
    return AgentRecord.new(
        public_key,
        name=name,
        description=description,
        capabilities=capabilities,
        metadata=metadata,
        addrs=addrs,
        now_ms=now_ms,
        seq=seq,
        ttl_ms=ttl_ms,
    )


# --- record -> card -------------------------------------------------------------
def _capability_to_skill(cap: Capability) -> dict[str, Any]:
    skill: dict[str, Any] = {
        "id": cap.name,
        "name": cap.title or cap.name,
        "description": cap.description,
        "tags": list(cap.tags),
    }
    for key, attr in (("examples", "examples"), ("inputModes", "input_modes"),
                      ("outputModes", "output_modes")):
        if getattr(cap, attr):
            skill[key] = list(getattr(cap, attr))
    if cap.extra_json:
        for key, value in json.loads(cap.extra_json).items():
            skill.setdefault(key, value)
    return skill


def record_to_agent_card(record: AgentRecord) -> dict[str, Any]:
    """Show ``record`` as an A2A Agent Card (a JSON-ready dict)."""
    card: dict[str, Any] = {
        "name": record.name,
        "description": record.description,
        "url": f"libp2p://{record.peer_id.to_base58()}",
        "version": "0.0.0",
        "protocolVersion": A2A_PROTOCOL_VERSION,
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
    }
    plain_meta: dict[str, str] = {}
    for key, value in sorted(record.metadata.items()):
        if key.startswith(META_PREFIX) and key[len(META_PREFIX):] not in ("name", "description", "skills"):
            try:
                card[key[len(META_PREFIX):]] = json.loads(value)
            except ValueError:
                card[key[len(META_PREFIX):]] = value  # not JSON: show the text as is
        elif not key.startswith(META_PREFIX):
            plain_meta[key] = value
    card["skills"] = [_capability_to_skill(c) for c in record.capabilities]

    skill_ext: dict[str, Any] = {}
    for cap in record.capabilities:
        entry: dict[str, Any] = {}
        if cap.version:
            entry["version"] = cap.version
        if cap.input_schema_json:
            entry["inputSchema"] = json.loads(cap.input_schema_json)
        if cap.output_schema_json:
            entry["outputSchema"] = json.loads(cap.output_schema_json)
        if entry:
            skill_ext[cap.name] = entry
    if skill_ext or plain_meta:
        params: dict[str, Any] = {}
        if skill_ext:
            params["skills"] = skill_ext
        if plain_meta:
            params["metadata"] = plain_meta
        caps = card["capabilities"] if isinstance(card["capabilities"], dict) else {}
        caps = dict(caps)
        others = caps.get("extensions", [])
        caps["extensions"] = (others if isinstance(others, list) else [others]) + [{
            "uri": AGENTP2P_EXTENSION_URI,
            "description": "agentp2p capability versions, JSON Schemas and metadata",
            "required": False,
            "params": params,
        }]
        card["capabilities"] = caps
    return card
