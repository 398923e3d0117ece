"""Reading and checking request input: bounded JSON bodies, payloads, peer IDs.

The body is read incrementally and abandoned as soon as it exceeds the limit,
so an oversized upload costs us at most ``limit`` bytes of memory; a declared
``Content-Length`` over the limit is refused before reading anything.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from libp2p.peer.id import ID
from starlette.requests import Request

from agentp2p.application.api.errors import bad_request, too_large
from agentp2p.network.addresses import parse_peer_id as _parse_peer_id


async def read_json_object(request: Request, limit: int, allowed: set[str]) -> dict[str, Any]:
    """The request body as a JSON object with only ``allowed`` keys."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large(f"request body of {declared} bytes exceeds the limit of {limit}")
        except ValueError:
            raise bad_request("invalid Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise bad_request("request body must be a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)}")
    return data


def require_str(data: Mapping[str, Any], key: str, *, max_len: int = 4096) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{key!r} must be a non-empty string")
    if len(value) > max_len:
        raise bad_request(f"{key!r} is longer than {max_len} characters")
    _check_unicode(value, key)
    return value


def _check_unicode(value: str, key: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"{key!r} is not valid Unicode (lone surrogate?)") from None


def payload(data: Mapping[str, Any], text_key: str, b64_key: str, limit: int) -> bytes:
    """Exactly one of ``text_key`` (UTF-8 text) or ``b64_key`` (base64 bytes)."""
    has_text, has_b64 = text_key in data, b64_key in data
    if has_text == has_b64:
        raise bad_request(f"give exactly one of {text_key!r} (text) or {b64_key!r} (base64)")
    if has_text:
        text = data[text_key]
        if not isinstance(text, str):
            raise bad_request(f"{text_key!r} must be a string")
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request(f"{text_key!r} is not valid Unicode (lone surrogate?)") from None
    else:
        encoded = data[b64_key]
        if not isinstance(encoded, str):
            raise bad_request(f"{b64_key!r} must be a base64 string")
        if len(encoded) > (limit + 2) // 3 * 4 + 4:
            raise too_large(f"payload exceeds the limit of {limit} bytes")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"{b64_key!r} is not valid base64") from None
    if len(raw) > limit:
        raise too_large(f"payload of {len(raw)} bytes exceeds the limit of {limit}")
    return raw


def parse_peer_id(text: Any) -> ID:
    """A base58 peer ID that decodes to a well-formed multihash: a typo is a
    400, not a dial to nowhere (:func:`agentp2p.network.addresses.parse_peer_id`)."""
    try:
        return _parse_peer_id(text)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def encode_payload(data: bytes, text_key: str = "data", b64_key: str = "data_b64") -> dict[str, Any]:
    """``{b64_key: base64, text_key: text or null}``: text only if ``data`` is UTF-8."""
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {b64_key: base64.b64encode(data).decode("ascii"), text_key: text}


def check_query(request: Request, allowed: set[str]) -> None:
    """400 for query parameters the endpoint does not take (a typo is not silently ignored)."""
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise bad_request(f"unknown query parameter(s): {', '.join(map(repr, unknown))}")


def query_int(request: Request, key: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"query parameter {key!r} must be an integer") from None
    if not lo <= value <= hi:
        raise bad_request(f"query parameter {key!r} must be between {lo} and {hi}")
    return value


def query_str(request: Request, key: str, *, max_len: int = 4096) -> str:
    values = request.query_params.getlist(key)
    if len(values) != 1 or not values[0]:
        raise bad_request(f"query parameter {key!r} is required (once, non-empty)")
    if len(values[0]) > max_len:
        raise bad_request(f"query parameter {key!r} is longer than {max_len} characters")
    _check_unicode(values[0], key)
    return values[0]
