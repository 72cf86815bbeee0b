"""Soak: two chatd nodes and two Redis shards under load; a node and a shard die mid-run.

    python -m loadtest.soak --pairs 50 --rate 200 --duration 60

Senders send at the offered rate, waiting for each ack and retrying with the
same tempId on another node when theirs dies. Readers keep their cursor; when
their socket is lost they reconnect to a live node and ``sync`` (ignoring live
frames until the sync result, as PROTOCOL.md says). At a third of the run node
0 is killed with SIGKILL; at half, shard 1 stops for a few seconds and comes
back on its port; at two thirds node 0 starts again. At the end every reader
syncs once more, and the counts are printed as JSON: sent, acked, delivered
live, recovered by sync, and acked messages missing (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from core.auth import TokenIssuer
from core.embedded import redis_process
from loadtest.chatbench.bench import Stack, _make_pairs, _raise_fd_limit
from proto.client import ChatClient

RECONNECT_PAUSE_S = 0.2


class Reader:
    def __init__(self, user: str, token: str) -> None:
        self.user = user
        self.token = token
        self.cursor = "0.0"
        self.syncing = False
        self.live: list[str] = []
        self.synced: list[str] = []
        self.client: ChatClient | None = None
        self.reconnects = 0
        self._result: asyncio.Future[None] | None = None

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind, data = frame["type"], frame["data"]
        if kind == "incoming-message" and not self.syncing:
            self.live.append(data["messageId"])
            self.cursor = data["cursor"]
        elif kind == "sync-result" and self._result is not None and not self._result.done():
            self.synced.extend(m["messageId"] for m in data["messages"])
            self.cursor = data["cursor"]
            self.syncing = bool(data["hasMore"])
            self._result.set_result(None)

    async def connect(self, urls: list[str]) -> None:
        while True:
            for url in random.sample(urls, len(urls)):
                with contextlib.suppress(Exception):
                    self.syncing = True
                    self.client = await ChatClient.connect(url, self.token, on_frame=self.on_frame)
                    await self.catch_up()
                    return
            await asyncio.sleep(RECONNECT_PAUSE_S)

    async def catch_up(self) -> None:
        assert self.client is not None
        self.syncing = True
        while self.syncing:
            self._result = asyncio.get_running_loop().create_future()
            await self.client.send("sync", {"cursor": self.cursor, "limit": 500})
            await asyncio.wait_for(self._result, 15)

    async def run(self, urls: list[str], stop: asyncio.Event) -> None:
        await self.connect(urls)
        while not stop.is_set():
            assert self.client is not None
            closed = asyncio.ensure_future(self.client.closed.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            stopped.cancel()
            if stop.is_set():
                break
            self.reconnects += 1
            await self.connect(urls)


async def sender(
    user: str,
    to: str,
    token: str,
    urls: list[str],
    interval_s: float,
    stop: asyncio.Event,
    counts: dict[str, Any],
) -> None:
    client: ChatClient | None = None
    n = 0
    while not stop.is_set():
        if client is None or client.closed.is_set():
            client = None
            for url in random.sample(urls, len(urls)):
                with contextlib.suppress(Exception):
                    client = await ChatClient.connect(url, token)
                    break
            if client is None:
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
        temp = f"{user}-{n}"
        try:
            await client.private_message(to, f"soak {n}", temp_id=temp)
            counts["sent"] += 1
            ack = await client.wait_for(
                "message-delivered", lambda d, t=temp: d["tempId"] == t, timeout=5
            )
        except (ConnectionError, TimeoutError, OSError):
            client = None  # retried with the same tempId: idempotent
            continue
        counts["acked"].add(ack["messageId"])
        n += 1
        await asyncio.sleep(interval_s * random.uniform(0.5, 1.5))
    if client is not None:
        await client.close()


async def soak(pairs: int, rate: float, duration_s: float) -> dict[str, Any]:
    _raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    stack = Stack(workdir, nodes=2, shards=2)
    events: list[str] = []
    try:
        settings = stack.start()
        users = await _make_pairs(settings, pairs)
        issuer = TokenIssuer(settings.jwt_secret, 3600)
        urls = stack.urls()
        stop = asyncio.Event()
        counts: dict[str, Any] = {"sent": 0, "acked": set()}
        readers = [Reader(b, issuer.issue_access(b)) for _, b in users]
        interval = pairs / rate
        tasks = [asyncio.create_task(r.run(urls, stop)) for r in readers]
        tasks += [
            asyncio.create_task(sender(a, b, issuer.issue_access(a), urls, interval, stop, counts))
            for a, b in users
        ]
        started = time.monotonic()

        async def at(fraction: float) -> None:
            await asyncio.sleep(max(0.0, started + duration_s * fraction - time.monotonic()))

        await at(1 / 3)
        stack.chatds[0].stop(signal.SIGKILL)
        events.append(f"{time.monotonic() - started:.1f}s kill -9 node 0")
        await at(1 / 2)
        shard_port = stack.redis[1].port
        stack.redis[1].stop()
        events.append(f"{time.monotonic() - started:.1f}s shard 1 stopped")
        await asyncio.sleep(3.0)
        stack.redis[1] = redis_process(port=shard_port).start()
        stack.processes.append(stack.redis[1])  # so that it is stopped at the end
        events.append(f"{time.monotonic() - started:.1f}s shard 1 back")
        await at(2 / 3)
        stack.chatds[0].start()
        events.append(f"{time.monotonic() - started:.1f}s node 0 back")
        await at(1.0)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for reader in readers:  # a last catch-up, as a returning device would
            with contextlib.suppress(Exception):
                if reader.client is None or reader.client.closed.is_set():
                    await reader.connect(urls)
                else:
                    await reader.catch_up()
        seen = [m for r in readers for m in r.live + r.synced]
        acked: set[str] = counts["acked"]
        return {
            "pairs": pairs,
            "offeredRate": rate,
            "durationS": duration_s,
            "events": events,
            "sent": counts["sent"],
            "acked": len(acked),
            "deliveredLive": sum(len(r.live) for r in readers),
            "recoveredBySync": sum(len(r.synced) for r in readers),
            "readerReconnects": sum(r.reconnects for r in readers),
            "duplicates": len(seen) - len(set(seen)),
            "ackedMissing": len(acked - set(seen)),
        }
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    result = asyncio.run(soak(args.pairs, args.rate, args.duration))
    print(json.dumps(result, indent=2))
    raise SystemExit(0 if result["ackedMissing"] == 0 else 1)


if __name__ == "__main__":
    main()
