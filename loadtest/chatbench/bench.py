"""chatbench: N sockets as sender/recipient pairs, an offered rate R for D seconds.

Starts its own embedded store, Redis and chatd (pinned to one core with the
store; the load generator runs on the other), creates the users and their
connections, then offers messages open-loop at the rate asked, and reports
end-to-end (send -> recipient receive) and ack latency percentiles, the rate
achieved, lost messages, and chatd's RSS and CPU per message, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from core.auth import TokenIssuer
from core.embedded import ManagedProcess, free_port, mongo_process, redis_process
from core.ids import pair_key
from core.settings import Settings, settings_to_env
from proto.client import ChatClient

ROOT = Path(__file__).resolve().parents[2]
CONNECT_CONCURRENCY = 100
DRAIN_GRACE_S = 5.0
SERVER_CORE = 0
CLIENT_CORE = 1


def _pin(pid: int, core: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        if (os.cpu_count() or 1) > core:
            os.sched_setaffinity(pid, {core})


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _proc_stats(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds user+system) of a process, from /proc."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def _percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p95": None, "p99": None, "max": None, "count": 0}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "p50": pick(0.50),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "max": round(ordered[-1] * 1000, 3),
        "count": len(ordered),
    }


@dataclass
class Stack:
    """Store, Redis and chatd for one benchmark run, stopped by PID afterwards."""

    workdir: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    settings: Settings | None = None
    chatd: ManagedProcess | None = None

    def start(self, env_overrides: dict[str, str] | None = None) -> Settings:
        mongo = mongo_process(self.workdir / "mongo", log_path=self.workdir / "mongo.log").start()
        redis = redis_process(log_path=self.workdir / "redis.log").start()
        self.processes += [mongo, redis]
        assert mongo.pid and redis.pid
        _pin(mongo.pid, SERVER_CORE)
        _pin(redis.pid, SERVER_CORE)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            env="test",
            mongo_url=f"mongodb://127.0.0.1:{mongo.port}",
            mongo_db="bench",
            redis_urls=[f"redis://127.0.0.1:{redis.port}/0"],
            chatd_port=free_port(),
            log_level="WARNING",
            msg_rate_per_s=1000.0,
            msg_burst=1000,
            node_id="bench-node",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVCONNECT_")}
        env.update(settings_to_env(settings))
        env.update(env_overrides or {})
        env["PYTHONPATH"] = str(ROOT)
        chatd = ManagedProcess(
            "chatd",
            [sys.executable, "-m", "core.cli", "chatd"],
            settings.chatd_port,
            self.workdir / "chatd.log",
            env,
        )
        chatd.start()
        assert chatd.pid
        _pin(chatd.pid, SERVER_CORE)
        self.processes.append(chatd)
        self.chatd = chatd
        self.settings = settings
        return settings

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(signal.SIGKILL if proc is self.chatd else signal.SIGTERM)


async def _make_pairs(settings: Settings, pairs: int) -> list[tuple[str, str]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    db = client[settings.mongo_db]
    users = [ObjectId() for _ in range(pairs * 2)]
    for start in range(0, len(users), 1000):
        await db.users.insert_many(
            [
                {"_id": u, "name": f"u{u}", "email": f"{u}@bench.test"}
                for u in users[start : start + 1000]
            ]
        )
    ids = [str(u) for u in users]
    result = [(ids[2 * i], ids[2 * i + 1]) for i in range(pairs)]
    docs = [
        {"fromUserId": a, "toUserId": b, "status": "accepted", "pairKey": pair_key(a, b)}
        for a, b in result
    ]
    for start in range(0, len(docs), 1000):
        await db.connectionRequests.insert_many(docs[start : start + 1000])
    await client.close()
    return result


class Load:
    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.ack_latency: list[float] = []
        self.e2e_latency: list[float] = []
        self.acked: set[str] = set()
        self.received: set[str] = set()
        self.errors: dict[str, int] = {}
        self.target = -1
        self.done = asyncio.Event()

    def _check_done(self) -> None:
        if len(self.acked) >= self.target and len(self.received) >= self.target:
            self.done.set()

    def on_frame(self, frame: dict[str, Any]) -> None:
        now = time.perf_counter()
        kind = frame["type"]
        data = frame["data"]
        if kind == "message-delivered":
            temp = data["tempId"]
            started = self.sent.get(temp)
            if started is not None:
                self.ack_latency.append(now - started)
                self.acked.add(temp)
                self._check_done()
        elif kind == "incoming-message":
            temp = data["text"].split("|", 1)[0]
            started = self.sent.get(temp)
            if started is not None:
                self.e2e_latency.append(now - started)
                self.received.add(temp)
                self._check_done()
        elif kind == "error":
            self.errors[data["code"]] = self.errors.get(data["code"], 0) + 1


async def _connect_all(url: str, tokens: list[str], load: Load | None) -> list[ChatClient]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(token: str) -> ChatClient:
        async with gate:
            return await ChatClient.connect(
                url, token, on_frame=load.on_frame if load else lambda f: None
            )

    return list(await asyncio.gather(*(one(t) for t in tokens)))


async def run_load(
    sockets: int, rate: float, duration_s: float, text_bytes: int = 100
) -> dict[str, Any]:
    _raise_fd_limit()
    _pin(os.getpid(), CLIENT_CORE)
    workdir = Path(tempfile.mkdtemp(prefix="chatbench-"))
    stack = Stack(workdir)
    try:
        settings = stack.start()
        pairs = await _make_pairs(settings, max(1, sockets // 2))
        issuer = TokenIssuer(settings.jwt_secret, 3600)
        url = f"ws://127.0.0.1:{settings.chatd_port}/ws"
        load = Load()
        tokens = [issuer.issue_access(u) for pair in pairs for u in pair]
        clients = await _connect_all(url, tokens, load)
        senders = [(clients[2 * i], b) for i, (_, b) in enumerate(pairs)]
        assert stack.chatd and stack.chatd.pid
        rss_before, cpu_before = _proc_stats(stack.chatd.pid)
        store_pid = stack.processes[0].pid
        assert store_pid
        _, store_cpu_before = _proc_stats(store_pid)
        padding = "x" * max(0, text_bytes - 30)
        interval = 1.0 / rate
        total = int(rate * duration_s)
        loop = asyncio.get_running_loop()
        start = loop.time()
        late = 0
        writes: list[Any] = []
        for n in range(total):
            due = start + n * interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                late += 1
            client, to = senders[n % len(senders)]
            temp = f"b{n}"
            load.sent[temp] = time.perf_counter()
            # Not awaited one by one: an open-loop generator must not slow down with the server.
            writes.append(
                client.conn.write_message(
                    client.codec.encode(
                        {
                            "type": "private-message",
                            "data": {"toUserId": to, "tempId": temp, "text": f"{temp}|{padding}"},
                        }
                    )
                )
            )
        offered_s = loop.time() - start
        load.target = total
        load._check_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.done.wait(), DRAIN_GRACE_S)
        await asyncio.gather(*writes, return_exceptions=True)
        rss_after, cpu_after = _proc_stats(stack.chatd.pid)
        _, store_cpu_after = _proc_stats(store_pid)
        store_cpu_s = store_cpu_after - store_cpu_before
        elapsed = loop.time() - start
        cpu_s = cpu_after - cpu_before
        for client in clients:
            client.conn.close()
        lost_acked = len(load.acked - load.received)
        return {
            "sockets": sockets,
            "offeredRate": rate,
            "durationS": duration_s,
            "textBytes": text_bytes,
            "sent": total,
            "achievedRate": round(len(load.acked) / elapsed, 1) if elapsed else 0,
            "offerSeconds": round(offered_s, 3),
            "generatorLateSends": late,
            "acked": len(load.acked),
            "received": len(load.received),
            "lostAcked": lost_acked,
            "unacked": total - len(load.acked),
            "errors": load.errors,
            "ackLatencyMs": _percentiles(load.ack_latency),
            "endToEndLatencyMs": _percentiles(load.e2e_latency),
            "serverRssBytes": rss_after,
            "serverRssBeforeLoadBytes": rss_before,
            "serverCpuSeconds": round(cpu_s, 3),
            "serverCpuUsPerMessage": round(cpu_s / max(1, len(load.acked)) * 1e6, 1),
            "serverCpuUtilization": round(cpu_s / elapsed, 3) if elapsed else 0,
            "storeCpuUsPerMessage": round(store_cpu_s / max(1, len(load.acked)) * 1e6, 1),
            "storeCpuUtilization": round(store_cpu_s / elapsed, 3) if elapsed else 0,
            "sharedCoreUtilization": round((cpu_s + store_cpu_s) / elapsed, 3) if elapsed else 0,
        }
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def run_idle_memory(sockets: int) -> dict[str, Any]:
    """chatd's memory per idle socket: RSS with N open sockets minus RSS with none."""
    _raise_fd_limit()
    _pin(os.getpid(), CLIENT_CORE)
    workdir = Path(tempfile.mkdtemp(prefix="chatbench-idle-"))
    stack = Stack(workdir)
    try:
        settings = stack.start()
        pairs = await _make_pairs(settings, max(1, sockets // 2))
        issuer = TokenIssuer(settings.jwt_secret, 3600)
        url = f"ws://127.0.0.1:{settings.chatd_port}/ws"
        assert stack.chatd and stack.chatd.pid
        # Warm up: one socket, so that imports and caches are not counted per socket.
        warm = await ChatClient.connect(url, issuer.issue_access(pairs[0][0]))
        await asyncio.sleep(0.5)
        base_rss, _ = _proc_stats(stack.chatd.pid)
        tokens = [issuer.issue_access(u) for pair in pairs for u in pair]
        started = time.perf_counter()
        clients = await _connect_all(url, tokens, None)
        connect_s = time.perf_counter() - started
        await asyncio.sleep(2.0)
        rss, _ = _proc_stats(stack.chatd.pid)
        for client in [warm, *clients]:
            client.conn.close()
        per_socket = (rss - base_rss) / len(clients)
        return {
            "sockets": len(clients),
            "baseRssBytes": base_rss,
            "rssBytes": rss,
            "bytesPerIdleSocket": round(per_socket),
            "kibPerIdleSocket": round(per_socket / 1024, 2),
            "connectSeconds": round(connect_s, 2),
        }
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--text-bytes", type=int, default=100)
    parser.add_argument("--idle", action="store_true", help="measure memory per idle socket")
    args = parser.parse_args()
    if args.idle:
        result = asyncio.run(run_idle_memory(args.sockets))
    else:
        result = asyncio.run(run_load(args.sockets, args.rate, args.duration, args.text_bytes))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
