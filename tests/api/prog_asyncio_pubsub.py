"""An asyncio agent program (plain ``asyncio.run``) using two daemons through their APIs.

Usage: prog_asyncio_pubsub.py HOME_A HOME_B — each HOME holds a daemon's
identity, api.addr and api.token. Connects A to B, then each side publishes
and each receives the other's messages. Prints a JSON summary; exit 0 on success.
"""

import asyncio
import json
import sys

from agentp2p.client import Client

TOPIC = "asyncio-topic"
N = 5


async def wait_topic_peer(client: Client, peer_id: str) -> None:
    async with asyncio.timeout(20):
        while peer_id not in await client.topic_peers(TOPIC):
            await asyncio.sleep(0.05)


async def main(home_a: str, home_b: str) -> dict:
    async with Client(home=home_a) as a, Client(home=home_b) as b:
        a_id, b_id = (await a.node()).peer_id, (await b.node()).peer_id
        assert await a.connect((await b.node()).addrs[0]) == b_id
        async with a.subscribe(TOPIC) as sub_a, b.subscribe(TOPIC) as sub_b:
            await wait_topic_peer(a, b_id)
            await wait_topic_peer(b, a_id)
            for i in range(N):
                await a.publish(TOPIC, f"from a {i}")
                await b.publish(TOPIC, f"from b {i}".encode())  # bytes travel as base64
            got: dict[str, list[str]] = {"a": [], "b": []}
            async with asyncio.timeout(20):
                for name, sub in (("a", sub_a), ("b", sub_b)):
                    while len(got[name]) < 2 * N:  # each sees its own and the other's
                        msg = await sub.receive()
                        got[name].append(f"{msg.sender[-6:]}:{msg.text}")
    assert sorted(got["a"]) == sorted(got["b"]), got
    assert sum("from a" in m for m in got["b"]) == N and sum("from b" in m for m in got["a"]) == N
    return {"loop": "asyncio", "received": {k: len(v) for k, v in got.items()}}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
