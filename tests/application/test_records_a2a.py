"""A2A Agent Card <-> agent record, both directions."""

from __future__ import annotations

import copy
import json

import pytest
from libp2p.peer.id import ID
from tests.application.records_fixtures import NOW, TRANSLATE, keypair, make_record

from agentp2p.application.records import (
    AGENTP2P_EXTENSION_URI,
    AgentRecord,
    InvalidRecord,
    agent_card_to_record,
    open_record,
    record_to_agent_card,
    seal_record,
)

# Shaped after the A2A specification's sample Agent Card (protocol 0.3).
CARD_JSON = """
{
  "protocolVersion": "0.3.0",
  "name": "GeoSpatial Route Planner Agent",
  "description": "Provides advanced route planning, traffic analysis, and custom map generation services.",
  "url": "https://georoute-agent.example.com/a2a/v1",
  "preferredTransport": "JSONRPC",
  "additionalInterfaces": [
    {"url": "https://georoute-agent.example.com/a2a/v1", "transport": "JSONRPC"},
    {"url": "https://georoute-agent.example.com/a2a/grpc", "transport": "GRPC"}
  ],
  "provider": {"organization": "Example Geo Services Inc.", "url": "https://www.examplegeoservices.com"},
  "iconUrl": "https://georoute-agent.example.com/icon.png",
  "version": "1.2.0",
  "documentationUrl": "https://docs.examplegeoservices.com/georoute-agent/api",
  "capabilities": {"streaming": true, "pushNotifications": true, "stateTransitionHistory": false},
  "securitySchemes": {
    "google": {"type": "openIdConnect", "openIdConnectUrl": "https://accounts.google.com/.well-known/openid-configuration"}
  },
  "security": [{"google": ["openid", "profile", "email"]}],
  "defaultInputModes": ["application/json", "text/plain"],
  "defaultOutputModes": ["application/json", "image/png"],
  "skills": [
    {
      "id": "route-optimizer-traffic",
      "name": "Traffic-Aware Route Optimizer",
      "description": "Calculates the optimal driving route between two or more locations, taking into account real-time traffic conditions.",
      "tags": ["maps", "routing", "navigation", "directions", "traffic"],
      "examples": [
        "Plan a route from '1600 Amphitheatre Parkway, Mountain View, CA' to 'San Francisco International Airport' avoiding tolls.",
        "{\\"origin\\": {\\"lat\\": 37.422, \\"lng\\": -122.084}, \\"destination\\": {\\"lat\\": 37.7749, \\"lng\\": -122.4194}}"
      ],
      "inputModes": ["application/json", "text/plain"],
      "outputModes": ["application/json", "application/vnd.geo+json", "text/html"]
    },
    {
      "id": "custom-map-generator",
      "name": "Personalized Map Generator",
      "description": "Creates custom map images or interactive map views based on user-defined points of interest.",
      "tags": ["maps", "customization", "visualization", "cartography"],
      "examples": ["Generate a map of my upcoming road trip with all planned stops highlighted."],
      "inputModes": ["application/json"],
      "outputModes": ["image/png", "image/jpeg", "application/json", "text/html"],
      "security": [{"google": ["openid"]}]
    }
  ],
  "supportsAuthenticatedExtendedCard": true,
  "signatures": [{"protected": "eyJhbGciOiJFUzI1NiJ9", "signature": "QFdkNLNszlGj3z3u0YQGt_T9LixY3qtdQpZmsTdDHDe3fXV9y9-B3m2-XgCpzuhiLt8E0tV6HXoZKHv4GtHgKQ"}]
}
"""
CARD = json.loads(CARD_JSON)
KP = keypair(7)


def _record(card: object = CARD) -> AgentRecord:
    return agent_card_to_record(card, public_key=KP.public_key, now_ms=NOW, seq=1)  # type: ignore[arg-type]


def test_card_to_record_maps_skills_to_capabilities() -> None:
    record = _record()
    assert record.peer_id == ID.from_pubkey(KP.public_key)
    assert record.name == CARD["name"]
    cap = record.capability("route-optimizer-traffic")
    assert cap is not None
    assert cap.title == "Traffic-Aware Route Optimizer"
    assert cap.tags == ("maps", "routing", "navigation", "directions", "traffic")
    assert cap.output_modes[1] == "application/vnd.geo+json"
    assert json.loads(record.metadata["a2a.url"]) == CARD["url"]
    assert json.loads(record.capabilities[1].extra_json) == {"security": [{"google": ["openid"]}]}


def test_card_json_round_trip_through_signed_record() -> None:
    """card JSON -> record -> envelope bytes -> record -> card JSON: unchanged."""
    data = seal_record(_record(CARD_JSON), KP.private_key)
    card = record_to_agent_card(open_record(data, now_ms=NOW))
    assert json.loads(json.dumps(card)) == CARD


def test_record_as_card_and_back() -> None:
    record = make_record(KP)  # a native record: version, schemas, plain metadata
    card = record_to_agent_card(record)
    assert card["url"] == f"libp2p://{record.peer_id.to_base58()}"
    for required in ("name", "description", "version", "protocolVersion", "capabilities",
                     "defaultInputModes", "defaultOutputModes", "skills"):
        assert required in card
    skill = card["skills"][0]
    assert skill["id"] == "translate" and skill["name"] == "Translator"
    (ext,) = card["capabilities"]["extensions"]
    assert ext["uri"] == AGENTP2P_EXTENSION_URI and ext["required"] is False
    assert ext["params"]["skills"]["translate"]["version"] == "1.2.0"
    back = agent_card_to_record(json.dumps(card), public_key=KP.public_key, now_ms=NOW, seq=1)
    assert back.capabilities == (TRANSLATE,)
    assert back.metadata["owner"] == "tests"
    assert back.name == record.name and back.description == record.description
    # Once more: the card is stable.
    assert record_to_agent_card(back) == card


def test_card_with_other_extensions_keeps_them() -> None:
    card = copy.deepcopy(CARD)
    card["capabilities"]["extensions"] = [{"uri": "https://example.com/ext/v1", "required": False}]
    card["skills"][0]["x-version-note"] = "kept"
    rec = _record(card)
    rec = AgentRecord.from_bytes(rec.to_bytes())
    assert record_to_agent_card(rec) == card


@pytest.mark.parametrize(
    "bad",
    [
        "[1, 2]",
        "{not json",
        {"name": 5},
        {"name": "x", "skills": {"id": "a"}},
        {"name": "x", "skills": [{"name": "no id"}]},
        {"name": "x", "skills": [{"id": "a", "tags": "maps"}]},
        {"name": "x", "skills": [{"id": "a", "tags": ["maps", "maps"]}]},
        {"name": "x", "capabilities": {"extensions": [{"uri": AGENTP2P_EXTENSION_URI, "params": []}]}},
    ],
)
def test_malformed_cards_raise_invalid_record(bad: object) -> None:
    with pytest.raises(InvalidRecord):
        _record(bad)
