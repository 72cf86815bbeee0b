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
import gc
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

import redis.asyncio as aioredis
from bson import ObjectId

from core import relations
from core.auth import TokenIssuer
from core.embedded import ManagedProcess, free_port, mongo_process, redis_process
from core.heads import record_new_accounts
from core.ids import pair_key
from core.metrics import MetricFactory, new_registry, observe_gc_pauses
from core.runtime import open_stores
from core.settings import Settings, settings_to_env
from proto.client import ChatClient, HandshakeRefused

ROOT = Path(__file__).resolve().parents[2]
CONNECT_CONCURRENCY = 20  # a connect storm of 2,000 at once is its own benchmark
CONNECT_ATTEMPTS = 20
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
    """Store, Redis shards and chatd nodes for one run, stopped by PID afterwards.

    Every server is pinned to one core (SERVER_CORE) and the load generator to
    the other, so runs compare designs on the same single core.
    """

    workdir: Path
    nodes: int = 1
    shards: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)
    settings: Settings | None = None
    chatds: list[ManagedProcess] = field(default_factory=list)
    redis: list[ManagedProcess] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    metrics_ports: dict[int, int] = field(default_factory=dict)  # node -> its metrics port

    @property
    def chatd(self) -> ManagedProcess:
        return self.chatds[0]

    def start(self) -> Settings:
        mongo = mongo_process(self.workdir / "mongo", log_path=self.workdir / "mongo.log").start()
        self.processes.append(mongo)
        assert mongo.pid
        _pin(mongo.pid, SERVER_CORE)
        for i in range(self.shards):
            shard = redis_process(log_path=self.workdir / f"redis{i}.log").start()
            assert shard.pid
            _pin(shard.pid, SERVER_CORE)
            self.redis.append(shard)
            self.processes.append(shard)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            env="test",
            mongo_url=f"mongodb://127.0.0.1:{mongo.port}",
            mongo_db="bench",
            redis_urls=[f"redis://127.0.0.1:{r.port}/0" for r in self.redis],
            log_level="WARNING",
            msg_rate_per_s=1000.0,
            msg_burst=1000,
        )
        settings = settings.model_copy(update=self.overrides)
        for i in range(self.nodes):
            chatd = self._start_chatd(settings, i)
            self.chatds.append(chatd)
            self.processes.append(chatd)
            self.ports.append(chatd.port)
        self.settings = settings
        return settings

    def _start_chatd(self, settings: Settings, i: int) -> ManagedProcess:
        node = settings.model_copy(
            update={
                "chatd_port": free_port(),
                # Metrics are served on their own port, one per node.
                "chatd_metrics_port": free_port(),
                "node_id": f"bench{i}",
            }
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVCONNECT_")}
        env.update(settings_to_env(node))
        env["PYTHONPATH"] = str(ROOT)
        chatd = ManagedProcess(
            f"chatd{i}",
            [sys.executable, "-m", "core.cli", "chatd"],
            node.chatd_port,
            self.workdir / f"chatd{i}.log",
            env,
        ).start()
        assert chatd.pid
        _pin(chatd.pid, SERVER_CORE)
        self.metrics_ports[i] = node.chatd_metrics_port
        return chatd

    def restart_chatd(self, i: int = 0) -> ManagedProcess:
        """Node i in a new process (cold caches) on the same store, Redis and node id.

        The old process gets SIGTERM, so it drains and flushes its counts before
        it exits (SIGKILL only if it outlives ManagedProcess.stop's bound).
        """
        assert self.settings is not None, "start() first"
        old = self.chatds[i]
        old.stop(signal.SIGTERM)
        self.processes.remove(old)
        chatd = self._start_chatd(self.settings, i)
        self.chatds[i] = chatd
        self.processes.append(chatd)
        self.ports[i] = chatd.port
        return chatd

    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{port}/ws" for port in self.ports]

    async def reset_redis_stats(self) -> None:
        for shard in self.redis:
            client = aioredis.Redis(port=shard.port)
            await client.config_resetstat()
            await client.aclose()

    async def redis_commands(self) -> dict[str, int]:
        """Commands run on all shards since the reset, by command (INFO commandstats)."""
        totals: dict[str, int] = {}
        for shard in self.redis:
            client = aioredis.Redis(port=shard.port)
            stats = await client.info("commandstats")
            await client.aclose()
            for name, value in stats.items():
                command = name.removeprefix("cmdstat_")
                totals[command] = totals.get(command, 0) + int(value["calls"])
        totals.pop("info", None)
        totals.pop("config|resetstat", None)
        return totals

    def cpu_seconds(self) -> tuple[float, float, float]:
        """(chatd nodes, store, redis shards) CPU seconds so far."""
        nodes = sum(_proc_stats(p.pid)[1] for p in self.chatds if p.pid)
        store = _proc_stats(self.processes[0].pid)[1] if self.processes[0].pid else 0.0
        shards = sum(_proc_stats(p.pid)[1] for p in self.redis if p.pid)
        return nodes, store, shards

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(signal.SIGKILL if proc in self.chatds else signal.SIGTERM)


async def _make_pairs(
    settings: Settings, pairs: int, signup_heads: bool = True
) -> list[tuple[str, str]]:
    """``pairs`` pairs of connected users, written as restd writes them: the accounts
    (with their empty stream heads, as signup records them, unless ``signup_heads``
    is off: then every first hello reads its heads from the store), the accepted
    requests and every user's contact list."""
    stores = open_stores(settings)
    db = stores.db
    users = [ObjectId() for _ in range(pairs * 2)]
    for start in range(0, len(users), 1000):
        await db.users.insert_many(
            [
                {"_id": u, "name": f"u{u}", "email": f"{u}@bench.test"}
                for u in users[start : start + 1000]
            ]
        )
    ids = [str(u) for u in users]
    if signup_heads:
        for start in range(0, len(ids), 1000):
            await record_new_accounts(stores.redis, stores.keys, ids[start : start + 1000])
    result = [(ids[2 * i], ids[2 * i + 1]) for i in range(pairs)]
    docs = [
        {"fromUserId": a, "toUserId": b, "status": "accepted", "pairKey": pair_key(a, b)}
        for a, b in result
    ]
    for start in range(0, len(docs), 1000):
        await db.connectionRequests.insert_many(docs[start : start + 1000])
    # As restd does after each accept: every user's contact list, built ahead of hello.
    for start in range(0, len(ids), 200):
        await asyncio.gather(
            *(relations.contacts_changed(db, (u,)) for u in ids[start : start + 200])
        )
    await stores.close()
    return result


def _scrape(port: int) -> dict[str, float]:
    """Every sample on a node's /metrics, by its name and labels as printed."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _histogram(
    name: str, after: dict[str, float], before: dict[str, float] | None = None
) -> dict[str, Any]:
    """Count, mean and p50/p99 upper bounds (bucket edges, ms) of one histogram,
    over the window between two scrapes (or since start without ``before``)."""
    before = before or {}

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    buckets: list[tuple[float, float]] = []
    prefix = f'{name}_bucket{{le="'
    for key in after:
        if key.startswith(prefix):
            edge = key[len(prefix) : -2]
            buckets.append((float("inf") if edge == "+Inf" else float(edge), delta(key)))
    buckets.sort()
    count = delta(f"{name}_count")

    def upper(q: float) -> float | None:
        for edge, cumulative in buckets:
            if count and cumulative >= q * count:
                return None if edge == float("inf") else round(edge * 1000, 3)
        return None

    return {
        "count": int(count),
        "meanMs": round(delta(f"{name}_sum") / count * 1000, 3) if count else None,
        "p50UpToMs": upper(0.50),
        "p99UpToMs": upper(0.99),
        "maxBucketMs": next((round(e * 1000, 3) for e, c in reversed(buckets) if c < count), 0.0)
        if count
        else None,
    }


def _gc_pauses(
    name: str, after: dict[str, float], before: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Garbage collections between two readings of a pause histogram labelled by
    generation: per generation, how many and the seconds they held the interpreter."""

    def delta(part: str, generation: int) -> float:
        key = f'{name}_{part}{{generation="{generation}"}}'
        return after.get(key, 0.0) - before.get(key, 0.0)

    return {
        str(g): {"collections": int(delta("count", g)), "seconds": round(delta("sum", g), 3)}
        for g in range(3)
    }


def _errors(values: dict[str, float]) -> dict[str, float]:
    """Bus, store and refusal counters that are not zero."""
    return {
        key: value
        for key, value in values.items()
        if key.startswith(
            ("chatd_bus_errors_total", "chatd_store_errors_total", "chatd_handshake_refusals_total")
        )
        and value
    }


def _persist_histogram(port: int) -> dict[str, Any]:
    """Node 0's group-commit batches: count, mean size, and how many took over 50 ms."""
    values = _scrape(port)
    count = values.get("chatd_persist_latency_seconds_count", 0.0)
    under_50ms = values.get('chatd_persist_latency_seconds_bucket{le="0.05"}', 0.0)
    size_sum = values.get("chatd_persist_batch_size_sum", 0.0)
    return {
        "batches": int(count),
        "meanBatchSize": round(size_sum / count, 2) if count else None,
        "meanCommitMs": round(
            values.get("chatd_persist_latency_seconds_sum", 0.0) / count * 1000, 2
        )
        if count
        else None,
        "commitsOver50ms": int(count - under_50ms),
        "commitLatency": _histogram("chatd_persist_latency_seconds", values),
        "loopLag": _histogram("chatd_loop_lag_seconds", values),
        "errors": _errors(values),
    }


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


async def _connect_all(
    urls: list[str],
    tokens: list[str],
    load: Load | None,
    concurrency: int = CONNECT_CONCURRENCY,
) -> list[ChatClient]:
    """Socket k connects to node k % len(urls): pair members land on different nodes."""
    gate = asyncio.Semaphore(concurrency)

    async def one(k: int, token: str) -> ChatClient:
        async with gate:
            for attempt in range(CONNECT_ATTEMPTS):
                try:
                    return await ChatClient.connect(
                        urls[k % len(urls)],
                        token,
                        on_frame=load.on_frame if load else lambda f: None,
                    )
                except HandshakeRefused as exc:  # 503 while busy: back off, as clients do
                    if exc.status != 503 or attempt == CONNECT_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.1 * (attempt + 1))
            raise AssertionError("unreachable")

    # While every client built so far survives, the generator's collector would walk
    # them all again and again (measured: 3-4 s of its core in a storm of 10,000, which
    # made the generator, not the server, the limit). Off while the sockets connect;
    # what they built is frozen after, since it lives until the run ends.
    gc.disable()
    try:
        return list(await asyncio.gather(*(one(k, t) for k, t in enumerate(tokens))))
    finally:
        gc.enable()
        gc.freeze()


async def run_load(
    sockets: int,
    rate: float,
    duration_s: float,
    text_bytes: int = 100,
    nodes: int = 1,
    shards: int = 1,
    overrides: dict[str, Any] | None = None,
    connect_concurrency: int = CONNECT_CONCURRENCY,
) -> dict[str, Any]:
    _raise_fd_limit()
    _pin(os.getpid(), CLIENT_CORE)
    workdir = Path(tempfile.mkdtemp(prefix="chatbench-"))
    stack = Stack(workdir, nodes=nodes, shards=shards, overrides=overrides or {})
    try:
        settings = stack.start()
        pairs = await _make_pairs(settings, max(1, sockets // 2))
        issuer = TokenIssuer(settings.jwt_secret, 3600)
        load = Load()
        tokens = [issuer.issue_access(u) for pair in pairs for u in pair]
        clients = await _connect_all(stack.urls(), tokens, load, connect_concurrency)
        senders = [(clients[2 * i], b) for i, (_, b) in enumerate(pairs)]
        await asyncio.sleep(1.0)  # let presence and holder announcements settle
        assert stack.chatd.pid
        rss_before, _ = _proc_stats(stack.chatd.pid)
        await stack.reset_redis_stats()
        nodes_cpu0, store_cpu0, redis_cpu0 = stack.cpu_seconds()
        gen_cpu0 = time.process_time()
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
            frame = {
                "type": "private-message",
                "data": {"toUserId": to, "tempId": temp, "text": f"{temp}|{padding}"},
            }
            writes.append(client.conn.write_message(client.codec.encode(frame)))
        offered_s = loop.time() - start
        load.target = total
        load._check_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.done.wait(), DRAIN_GRACE_S)
        await asyncio.gather(*writes, return_exceptions=True)
        elapsed = loop.time() - start
        rss_after, _ = _proc_stats(stack.chatd.pid)
        nodes_cpu1, store_cpu1, redis_cpu1 = stack.cpu_seconds()
        gen_cpu = time.process_time() - gen_cpu0
        commands = await stack.redis_commands()
        persist = _persist_histogram(stack.metrics_ports[0])
        for client in clients:
            client.conn.close()
        acked = max(1, len(load.acked))
        cpu_s = nodes_cpu1 - nodes_cpu0
        store_s = store_cpu1 - store_cpu0
        redis_s = redis_cpu1 - redis_cpu0

        def per_msg(seconds: float) -> float:
            return round(seconds / acked * 1e6, 1)

        def share(seconds: float) -> float:
            return round(seconds / elapsed, 3) if elapsed else 0.0

        return {
            "nodes": nodes,
            "shards": shards,
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
            "lostAcked": len(load.acked - load.received),
            "unacked": total - len(load.acked),
            "errors": load.errors,
            "ackLatencyMs": _percentiles(load.ack_latency),
            "endToEndLatencyMs": _percentiles(load.e2e_latency),
            "serverRssBytes": rss_after,
            "serverRssBeforeLoadBytes": rss_before,
            "chatdCpuUsPerMessage": per_msg(cpu_s),
            "storeCpuUsPerMessage": per_msg(store_s),
            "redisCpuUsPerMessage": per_msg(redis_s),
            "serverCoreUtilization": share(cpu_s + store_s + redis_s),
            # The load generator has the other core; near 1.0 it adds latency of its own.
            "generatorCoreUtilization": share(gen_cpu),
            "redisCommandsPerMessage": round(sum(commands.values()) / acked, 3),
            "persistBatches": persist,
            "redisCommands": dict(sorted(commands.items(), key=lambda kv: -kv[1])[:10]),
        }
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        gc.unfreeze()  # what this run's clients froze: the next run's collector frees it


async def run_idle(
    sockets: int,
    window_s: float = 30.0,
    concurrency: int = CONNECT_CONCURRENCY,
    overrides: dict[str, Any] | None = None,
    signup_heads: bool = True,
) -> dict[str, Any]:
    """N sockets connect (at most ``concurrency`` handshakes in flight) and sit idle,
    then all drop and reconnect (``reconnect``: users the node has seen before).
    Without ``signup_heads`` the first connect is of users whose stream heads Redis
    has never held (a Redis restarted empty): every hello reads them from the store.

    Reports the connect and reconnect times and rates, hello latency, chatd's memory per idle
    socket (RSS with N open sockets minus RSS with one), and over an idle window
    of ``window_s`` (long enough for presence heartbeats and websocket pings):
    CPU of chatd, the store and Redis as a share of the core, the event loop's
    lag, and any bus, store or refusal errors.
    """
    _raise_fd_limit()
    _pin(os.getpid(), CLIENT_CORE)
    workdir = Path(tempfile.mkdtemp(prefix="chatbench-idle-"))
    stack = Stack(workdir, overrides=overrides or {})
    try:
        settings = stack.start()
        pairs = await _make_pairs(settings, max(1, sockets // 2), signup_heads)
        issuer = TokenIssuer(settings.jwt_secret, 3600)
        url = stack.urls()[0]
        port = stack.metrics_ports[0]
        assert stack.chatd.pid
        # Warm up: one socket, so that imports and caches are not counted per socket.
        warm = await ChatClient.connect(url, issuer.issue_access(pairs[0][0]))
        await asyncio.sleep(0.5)
        base_rss, _ = _proc_stats(stack.chatd.pid)
        tokens = [issuer.issue_access(u) for pair in pairs for u in pair]

        # The generator's own collections: with 10,000 clients they are a cost of its own.
        gc_registry = new_registry()
        gc_metric = "generator_gc_pause_seconds"
        generator_gc = MetricFactory(gc_registry).histogram(
            gc_metric, "The load generator's collections", ["generation"]
        )
        unobserve_gc = observe_gc_pauses(generator_gc)

        def generator_gc_now() -> dict[str, float]:
            return {
                f'{gc_metric}_{part}{{generation="{g}"}}': gc_registry.get_sample_value(
                    f"{gc_metric}_{part}", {"generation": str(g)}
                )
                or 0.0
                for g in range(3)
                for part in ("sum", "count")
            }

        async def storm() -> tuple[list[ChatClient], dict[str, Any], dict[str, float]]:
            """Every socket connects: the clients, what the storm cost (time, CPU of the
            servers and the generator, collections, hello latency, loop lag), and chatd's
            metrics after it."""
            print(f"chatbench: {len(tokens)} sockets connecting", file=sys.stderr, flush=True)
            scraped0, cpu0 = _scrape(port), (*stack.cpu_seconds(), time.process_time())
            gc0 = generator_gc_now()
            started = time.perf_counter()
            clients = await _connect_all([url], tokens, None, concurrency)
            seconds = time.perf_counter() - started
            cpu1 = (*stack.cpu_seconds(), time.process_time())
            generator_gc_spent = _gc_pauses(gc_metric, generator_gc_now(), gc0)
            await asyncio.sleep(2.0)
            scraped = _scrape(port)
            spent = (after - before for after, before in zip(cpu1, cpu0, strict=True))
            names = ("chatd", "store", "redis", "generator")
            return (
                clients,
                {
                    "seconds": round(seconds, 2),
                    "handshakesPerSecond": round(len(clients) / seconds, 1),
                    "cpuSeconds": {n: round(s, 2) for n, s in zip(names, spent, strict=True)},
                    "gc": {
                        "chatd": _gc_pauses("chatd_gc_pause_seconds", scraped, scraped0),
                        "generator": generator_gc_spent,
                    },
                    "helloLatency": _histogram("chatd_hello_seconds", scraped, scraped0),
                    "loopLag": _histogram("chatd_loop_lag_seconds", scraped, scraped0),
                    "errorsSinceStart": _errors(scraped),
                },
                scraped,
            )

        clients, connect, connected = await storm()
        rss, _ = _proc_stats(stack.chatd.pid)
        cpu0 = stack.cpu_seconds()
        await asyncio.sleep(window_s)
        cpu1 = stack.cpu_seconds()
        idle = _scrape(port)
        per_socket = (rss - base_rss) / len(clients)
        # Day two: every socket drops at once (a node restart, a network blip) and
        # comes back, for users the node has seen before.
        for client in clients:
            client.conn.close()
        await asyncio.sleep(settings.presence_grace_s + 2.0)
        clients, reconnect, _ = await storm()
        unobserve_gc()
        for client in [warm, *clients]:
            client.conn.close()
        chatd_s, store_s, redis_s = (
            after - before for after, before in zip(cpu1, cpu0, strict=True)
        )
        return {
            "sockets": len(clients),
            "connectConcurrency": concurrency,
            "signupHeads": signup_heads,
            "connectSeconds": connect["seconds"],
            "handshakesPerSecond": connect["handshakesPerSecond"],
            "connectCpuSeconds": connect["cpuSeconds"],
            "connectGc": connect["gc"],
            "helloLatency": connect["helloLatency"],
            "connectLoopLag": connect["loopLag"],
            "reconnect": reconnect,
            "baseRssBytes": base_rss,
            "rssBytes": rss,
            "bytesPerIdleSocket": round(per_socket),
            "kibPerIdleSocket": round(per_socket / 1024, 2),
            "idleWindowSeconds": window_s,
            "idleCoreShare": {
                "chatd": round(chatd_s / window_s, 4),
                "store": round(store_s / window_s, 4),
                "redis": round(redis_s / window_s, 4),
                "chatdAndStore": round((chatd_s + store_s) / window_s, 4),
            },
            "idleLoopLag": _histogram("chatd_loop_lag_seconds", idle, connected),
            "errors": _errors(idle),
        }
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        gc.unfreeze()  # what this run's clients froze: the next run's collector frees it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--text-bytes", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a chatd setting for this run, e.g. presence_ttl_s=3600",
    )
    parser.add_argument(
        "--idle",
        type=float,
        metavar="SECONDS",
        help="connect the sockets, then measure them idle for this long",
    )
    parser.add_argument("--connect-concurrency", type=int, default=CONNECT_CONCURRENCY)
    parser.add_argument(
        "--no-signup-heads",
        action="store_true",
        help="idle run: seed users without the stream heads signup records (a cold Redis)",
    )
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    if args.idle:
        result = asyncio.run(
            run_idle(
                args.sockets,
                args.idle,
                args.connect_concurrency,
                overrides,
                signup_heads=not args.no_signup_heads,
            )
        )
    else:
        result = asyncio.run(
            run_load(
                args.sockets,
                args.rate,
                args.duration,
                args.text_bytes,
                args.nodes,
                args.shards,
                overrides,
            )
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
