"""Agent capability records (issue #6), sans-IO.

What an agent can do, signed by the agent, findable by capability.

* ``model``     — AgentRecord / Capability values, protobuf encoding, field rules
* ``signed``    — seal into / open from an RFC 0002 signed envelope (the trust gate)
* ``keys``      — DHT record key ``/agentrec/<hash of peer id>``, capability provider CIDs
* ``validator`` — py-libp2p DHT Validator for the ``agentrec`` namespace
* ``republish`` — when our own record must be re-signed and re-published
* ``cache``     — local record cache with expiry
* ``ranking``   — filtering and ordering candidates for find_agents
* ``a2a``       — A2A Agent Card conversion both ways
* ``errors``    — InvalidRecord, the one error for rejected records

The network glue (DHT put/get, provider announcements, the
/agentp2p/record/1.0.0 protocol, the announcement topic) is ``service``.
"""

from .a2a import AGENTP2P_EXTENSION_URI, agent_card_to_record, card_fields, record_to_agent_card
from .cache import CachedRecord, RecordCache
from .errors import InvalidRecord, Reason
from .keys import NAMESPACE, capability_cid, capability_multihash, record_key, record_key_matches
from .model import DEFAULT_TTL_MS, MAX_TTL_MS, AgentRecord, Capability
from .ranking import Liveness, RankedAgent, rank_agents
from .republish import repub_at_ms, repub_due
from .signed import MAX_CLOCK_SKEW_MS, RECORD_DOMAIN, RECORD_PAYLOAD_TYPE
from .signed import open as open_record
from .signed import seal as seal_record
from .validator import AgentRecordValidator

__all__ = [
    "AGENTP2P_EXTENSION_URI",
    "DEFAULT_TTL_MS",
    "MAX_CLOCK_SKEW_MS",
    "MAX_TTL_MS",
    "NAMESPACE",
    "RECORD_DOMAIN",
    "RECORD_PAYLOAD_TYPE",
    "AgentRecord",
    "AgentRecordValidator",
    "CachedRecord",
    "Capability",
    "InvalidRecord",
    "Liveness",
    "RankedAgent",
    "Reason",
    "RecordCache",
    "agent_card_to_record",
    "capability_cid",
    "capability_multihash",
    "card_fields",
    "open_record",
    "record_key_matches",
    "rank_agents",
    "record_key",
    "record_to_agent_card",
    "repub_at_ms",
    "repub_due",
    "seal_record",
]
