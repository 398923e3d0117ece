"""``/v1/pubsub``: publish, subscribe (an event stream), topics, their peers, meshes and scores.

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
    """A topic as our router sees it: who subscribes, who is in our mesh, and their scores.

    Any topic may be asked about: one nobody announced answers empty lists
    (``subscribed`` false, if we are not in it either) rather than 404, since
    "no peer subscribes to T yet" is the answer a program waiting for its
    first receiver polls for. An empty or over-long topic is a 400.
    """
    pubsub = context(request).node.pubsub
    topic = query_str(request, "topic", max_len=MAX_TOPIC)
    peers = pubsub.topic_peers(topic)
    mesh = pubsub.mesh_peers(topic)
    scored = {str(p): p for p in (*peers, *mesh)}
    return JSONResponse(
        {
            "topic": topic,
            "subscribed": topic in pubsub.topics(),
            "scoring": pubsub.scoring,
            "peers": [str(p) for p in peers],
            "mesh": [str(p) for p in mesh],
            "scores": {key: pubsub.peer_score(p) for key, p in sorted(scored.items())},
        }
    )


ROUTES = [
    route("/pubsub/publish", POST=publish),
    route("/pubsub/subscribe", GET=subscribe),
    route("/pubsub/topics", GET=topics),
    route("/pubsub/peers", GET=topic_peers),
]

__all__ = ["ROUTES", "message_event"]
