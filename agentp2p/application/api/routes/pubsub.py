"""``/v1/pubsub``: publish, subscribe (an event stream), topics and their peers.

A subscription stream starts with a ``subscribed`` event once the node is
subscribed, so a client can publish right after seeing it and know its own
subscription is in place. Each message is a ``message`` event; if the
client reads slower than messages arrive and the node's per-subscription
buffer overflows, a ``dropped`` event says how many were lost — never a
silent gap.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from agentp2p.application.api.body import encode_payload, payload, query_str, read_json_object, require_str
from agentp2p.application.api.context import context
from agentp2p.application.api.routing import route
from agentp2p.application.api.sse import EventSender, EventStream, event_stream
from agentp2p.protocol.pubsub import Message

MAX_TOPIC = 256


def message_event(msg: Message) -> dict[str, Any]:
    return {
        "topic": msg.topic,
        "sender": str(msg.sender),
        "seqno": msg.seqno.hex(),
        **encode_payload(msg.data),
    }


async def publish(request: Request) -> JSONResponse:
    ctx = context(request)
    body = await read_json_object(request, ctx.max_body, {"topic", "data", "data_b64"})
    topic = require_str(body, "topic", max_len=MAX_TOPIC)
    data = payload(body, "data", "data_b64", ctx.node.config.pubsub.max_message_size)
    await ctx.node.publish(topic, data)  # PubSubError -> 503
    return JSONResponse({"topic": topic, "size": len(data)})


async def subscribe(request: Request) -> EventStream:
    ctx = context(request)
    topic = query_str(request, "topic", max_len=MAX_TOPIC)

    async def produce(send: EventSender) -> None:
        async with ctx.node.subscribe(topic) as sub:
            await send("subscribed", {"topic": topic})
            reported = 0
            async for msg in sub:
                dropped = sub.dropped  # read once: more may be dropped while we send
                if dropped > reported:
                    await send("dropped", {"topic": topic, "count": dropped - reported})
                    reported = dropped
                await send("message", message_event(msg))

    return event_stream(ctx, produce)


async def topics(request: Request) -> JSONResponse:
    node = context(request).node
    return JSONResponse(
        {"topics": [{"topic": t, "peers": [str(p) for p in node.topic_peers(t)]} for t in node.pubsub.topics()]}
    )


async def topic_peers(request: Request) -> JSONResponse:
    node = context(request).node
    topic = query_str(request, "topic", max_len=MAX_TOPIC)
    return JSONResponse({"topic": topic, "peers": [str(p) for p in node.topic_peers(topic)]})


ROUTES = [
    route("/pubsub/publish", POST=publish),
    route("/pubsub/subscribe", GET=subscribe),
    route("/pubsub/topics", GET=topics),
    route("/pubsub/peers", GET=topic_peers),
]

__all__ = ["ROUTES", "message_event"]
