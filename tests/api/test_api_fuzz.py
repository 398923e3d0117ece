"""Schemathesis fuzzes a real daemon against openapi.json.

Generated requests, valid and invalid, must never get a 5xx; every answer
must be one the document declares, with the declared content type and
schema; and the daemon must still be running and answering afterwards.
The event streams (subscribe, incoming messages, request handling, member
events) are left out: a valid request never ends, and their error answers
are covered in test_api_http.py and test_api_messaging.py. So are send and
request: a valid one waits for the peer's acknowledgement up to its own
timeout (600 s allowed), which would only measure patience; their input
checks are in test_api_messaging.py.

Two connected daemons, so DHT operations have a peer to talk to and a
network failure would be a real finding, not an artefact of a lonely node.
The fuzzed one runs SWIM and a capability record, so membership and record
routes are exercised for real (not just answering 503).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from agentp2p.application.api.routes.node import OPENAPI_PATH
from agentp2p.testing import DaemonProcess, started_together

pytestmark = pytest.mark.slow  # real time, well over 10 s (see tests/conftest.py)

schema = schemathesis.openapi.from_path(str(OPENAPI_PATH))

MAX_EXAMPLES = 20
NOT_FUZZED = ["subscribe", "incomingMessages", "handleRequests", "memberEvents", "sendMessage", "sendRequest"]


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with started_together(
        DaemonProcess(tmp / "a", "--swim", "--agent-name", "fuzz", "--capability", "echo:test"),
        DaemonProcess(tmp / "b", "--swim"),
    ) as (a, b):
        r = httpx.post(f"http://{a.api_addr}/v1/peers", json={"addr": b.addrs[0]}, headers={"Authorization": f"Bearer {a.token}"})
        assert r.status_code == 200, r.text
        yield a
        # The daemon survived everything thrown at it, and still works.
        assert a.alive(), a.describe()
        ok = httpx.get(f"http://{a.api_addr}/v1/node", headers={"Authorization": f"Bearer {a.token}"})
        assert ok.status_code == 200 and ok.json()["peer_id"] == a.peer_id
        assert not [e for e in a.logs if e.get("level") in ("error", "critical") and e.get("logger", "").startswith("agentp2p.api")]


@schema.exclude(operation_id=NOT_FUZZED).parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzz_api(case: schemathesis.Case, fuzz_daemon: DaemonProcess) -> None:
    case.call_and_validate(
        base_url=f"http://{fuzz_daemon.api_addr}",
        headers={"Authorization": f"Bearer {fuzz_daemon.token}"},
        timeout=30,
        # JSON Schema cannot say "a valid multiaddr" or "a peer ID whose
        # multihash decodes", so schema-valid input may still earn a 400.
        # Every other default check stays on (no 5xx, declared statuses,
        # content types and schemas, negative data rejected, Allow headers).
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
