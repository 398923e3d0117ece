"""A trio agent program using two daemons through their APIs (see prog_asyncio_pubsub.py)."""

import json
import sys

import trio

from agentp2p.client import Client

TOPIC = "trio-topic"
N = 5


async def wait_topic_peer(client: Client, peer_id: str) -> None:
    with trio.fail_after(20):
        while peer_id not in await client.topic_peers(TOPIC):
            await trio.sleep(0.05)


async def main(home_a: str, home_b: str) -> dict:
    async with Client(home=home_a) as a, Client(home=home_b) as b:
        a_id, b_id = (await a.node()).peer_id, (await b.node()).peer_id
        assert await a.connect((await b.node()).addrs[0]) == b_id
        async with a.subscribe(TOPIC) as sub_a, b.subscribe(TOPIC) as sub_b:
            await wait_topic_peer(a, b_id)
            await wait_topic_peer(b, a_id)
            got: dict[str, list[str]] = {"a": [], "b": []}

            async def collect(name: str, sub) -> None:  # type: ignore[no-untyped-def]
                while len(got[name]) < 2 * N:
                    msg = await sub.receive()
                    got[name].append(f"{msg.sender[-6:]}:{msg.text}")

            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(collect, "a", sub_a)
                    nursery.start_soon(collect, "b", sub_b)
                    for i in range(N):
                        await a.publish(TOPIC, f"from a {i}")
                        await b.publish(TOPIC, f"from b {i}".encode())
    assert sorted(got["a"]) == sorted(got["b"]), got
    assert sum("from a" in m for m in got["b"]) == N and sum("from b" in m for m in got["a"]) == N
    return {"loop": "trio", "received": {k: len(v) for k, v in got.items()}}


if __name__ == "__main__":
    print(json.dumps(trio.run(main, sys.argv[1], sys.argv[2])))
