"""Day two: what opening a socket and listing conversations cost as the store grows.

`python -m loadtest.daytwo` (`make bench-daytwo`, also part of `make bench`).
One embedded store (nx-27017), one redis-server and one chatd, pinned to
core 0 as in chatbench (loadtest/chatbench/bench.py ``Stack``); this process,
the load generator and the seeder, runs on core 1. The store grows in steps
(by default 0, then 100,000, then 1,000,000 messages), and at each step a
chatd started fresh (cold caches, same store) and a fresh restd are measured:

1. ``hello``: from starting the websocket connect to receiving ``hello``, for
   newcomers (users with no message) and for users with history (at 1M each
   has 1,000 messages of their own), interleaved, a few at a time;
2. a reconnect storm: N sockets connected, all dropped at once with no close
   frame (``ChatClient.abort``), then N reconnecting at once: time until every
   hello, per-socket time to hello, failures, and chatd's and the store's CPU;
3. the REST conversation list (``GET /api/conversations?limit=50``) of a user
   with 1,000 conversations: the first page and a deep page (reached by
   following ``nextCursor``), restd as a real process, httpx as the client;
4. hello's and the list's store queries timed alone, with the store's CPU per
   call and their query plans, so a query whose cost follows the store's size
   can be named.

The machine is shared, and one p99 moves with the neighbours more than with
the store. So 1. is repeated in blocks alternating with a chatd on a second,
empty database of the same store (``Control``), and each storm round with a
storm on that database: the ratio of the two, taken at the same moment, is
the store's size's own effect. Each point also records the load average,
how busy core 0 was with other jobs (``Window``), how long a fixed loop took
on core 0 (``CALIBRATION``), and a digest of the code under test (other work
lands in the checkout while a run lasts; every chatd started reads it anew).

Messages are written by the product's own writer, exactly as chatd commits
them: ``chatd.store.MessageStore.submit`` in group commit, with a
``chatd.inbox.Inbox`` maintaining the conversation summaries and unread
counters. Users and accepted connections are inserted in bulk. The sizes
count the seeded history (1,000 pairs of users); the list user's 2,000
messages (one each way with each of 1,000 connected users) come on top, after
the first step's hello and storm, and every step reports the store's total.

``--quick`` is a short version (sizes 0 and 20,000, fewer sockets and requests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient

from chatd.inbox import Inbox
from chatd.store import MessageStore
from core.auth import TokenIssuer
from core.embedded import ManagedProcess, free_port
from core.ids import pair_key
from core.inbox import sort_range
from core.mongo import (
    BLOCKS,
    CONNECTION_REQUESTS,
    CONVERSATIONS,
    MESSAGES,
    USERS,
    Doc,
    make_client,
)
from core.relations import connections_of
from core.settings import Settings, settings_to_env
from loadtest.chatbench.bench import (
    CLIENT_CORE,
    ROOT,
    SERVER_CORE,
    Stack,
    _connect_all,
    _make_pairs,
    _percentiles,
    _pin,
    _proc_stats,
    _raise_fd_limit,
)
from proto.client import ChatClient, HandshakeRefused
from proto.cursor import Cursor

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 2.0  # hello p99 at the largest store / at the smallest

# -- the population ------------------------------------------------------------------
HISTORY_PAIRS = 1000  # 2,000 users with history: 1,000 messages each at 1M
NEWCOMER_PAIRS = 150  # 300 connected users who never send or receive a message
WARMUP_PAIRS = 16  # connect once before measuring: the process warms, not the users
LIST_CONVERSATIONS = 1000  # the list user's conversations

# -- seeding (the product's writer, as fast as it allows) -------------------------------
SEED_BATCH_MAX = 1000  # MessageStore batch_max: one insert_many per 1,000 messages
SEED_WAVE = 5000  # submits in flight per wave
# A wave writes to 100 pairs only (50 messages each): the inbox then flushes one
# conversation update and one counter update per pair and recipient for every
# 50 messages, not one per message. Waves rotate through the pairs, so every
# 50,000 messages each pair has received the same share.
SEED_PAIRS_PER_WAVE = 100
SEED_WAVES_IN_FLIGHT = 2  # the next wave queues while the last batches commit
SEED_WAVE_TIMEOUT_S = 300.0
SEED_FLUSH_TIMEOUT_S = 300.0
PROGRESS_EVERY = 100_000
TEXT = "day-two seed %d: a message of about the length people type in a chat, padded."

# -- measurements -----------------------------------------------------------------------
HELLO_TIMEOUT_S = 30.0
STORM_TIMEOUT_S = 90.0  # per socket; the whole storm is bounded a little above it
STORM_SETTLE_S = 2.0  # after the sockets are up and before they drop
REST_TIMEOUT_S = 30.0
REST_WARMUP = 2  # a fresh restd's first requests open its pools: reported apart
PROBE_RUNS = 200
IDLE_WINDOW_S = 3.0


@dataclass
class Plan:
    sizes: list[int]
    hello_connects: int  # per group (newcomers, with history)
    hello_concurrency: int
    storm_sockets: int
    storm_rounds: int  # the storm is repeated; the median round (by time to the last hello) leads
    rest_requests: int
    deep_page: int  # 1-based: reached by following nextCursor deep_page - 1 times
    quick: bool

    @classmethod
    def of(cls, quick: bool, sizes: list[int] | None) -> Plan:
        if quick:
            return cls(sizes or [0, 20_000], 100, 4, 500, 1, 20, 6, True)
        return cls(sizes or [0, 100_000, 1_000_000], 300, 4, 2000, 3, 50, 6, False)


@dataclass
class Population:
    pairs: list[tuple[str, str]]  # users with history, by conversation
    newcomers: list[str]
    warmup: list[str]
    list_user: str
    list_partners: list[str]
    sent: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)

    @property
    def with_history(self) -> list[str]:
        return [u for pair in self.pairs for u in pair]


def _store_files(workdir: Path) -> dict[str, int]:
    """Bytes of the embedded store's files (the database and its write-ahead log)."""
    return {
        path.name: path.stat().st_size
        for path in sorted((workdir / "mongo").glob("*.db*"))
        if path.is_file()
    }


# A fixed pure-Python loop: its CPU time on core 0 tells how fast that core is for us
# just now (other jobs on the machine share it, and on 2 vCPUs possibly its sibling).
CALIBRATION = """
import os, time
os.sched_setaffinity(0, {%d})
cpu, wall = time.process_time(), time.perf_counter()
x = 0
for i in range(3_000_000):
    x += i * i
print(time.process_time() - cpu, time.perf_counter() - wall)
"""
CALIBRATION_TIMEOUT_S = 60.0


async def _calibrate(core: int = SERVER_CORE) -> dict[str, float]:
    """CPU and wall milliseconds of CALIBRATION pinned to ``core``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CALIBRATION % core,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), CALIBRATION_TIMEOUT_S)
    cpu_s, wall_s = (float(x) for x in out.split())
    return {"cpuMs": _ms(cpu_s), "wallMs": _ms(wall_s)}


def _code_digest() -> str:
    """A digest of the code under test, to tell whether it changed during a run.

    Other work lands in this checkout while a run lasts, and every chatd and
    restd started reads the code anew.
    """
    digest = hashlib.sha256()
    for package in ("chatd", "core", "proto", "restd"):
        for path in sorted((ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# -- users and connections, in bulk ----------------------------------------------------


async def _make_star(db: Any, spokes: int) -> tuple[str, list[str]]:
    """One user connected to ``spokes`` others (accepted connectionRequests, as restd makes)."""
    hub = ObjectId()
    others = [ObjectId() for _ in range(spokes)]
    users = [hub, *others]
    for start in range(0, len(users), 1000):
        await db[USERS].insert_many(
            [
                {"_id": u, "name": f"u{u}", "email": f"{u}@bench.test"}
                for u in users[start : start + 1000]
            ]
        )
    docs = [
        {
            "fromUserId": str(other),
            "toUserId": str(hub),
            "status": "accepted",
            "pairKey": pair_key(str(other), str(hub)),
        }
        for other in others
    ]
    for start in range(0, len(docs), 1000):
        await db[CONNECTION_REQUESTS].insert_many(docs[start : start + 1000])
    return str(hub), [str(o) for o in others]


async def _populate(settings: Settings, db: Any) -> Population:
    pairs = await _make_pairs(settings, HISTORY_PAIRS)
    newcomers = [u for pair in await _make_pairs(settings, NEWCOMER_PAIRS) for u in pair]
    warmup = [u for pair in await _make_pairs(settings, WARMUP_PAIRS) for u in pair]
    list_user, partners = await _make_star(db, LIST_CONVERSATIONS)
    return Population(pairs, newcomers, warmup, list_user, partners)


# -- seeding through chatd's writer ---------------------------------------------------------


class Seeder:
    """chatd's MessageStore and Inbox, in this process, against the benchmark's store.

    The same group commit, stream keys, unread keys and counters as chatd; only
    the batch is larger and there is no pause between commits.
    """

    def __init__(self, settings: Settings, population: Population) -> None:
        # As chatd opens its client (chatd/app.py): no retryable-write machinery.
        self.client: AsyncMongoClient[Doc] = make_client(settings.mongo_url, retryWrites=False)
        self.db = self.client[settings.mongo_db]
        self.population = population
        self.errors: Counter[str] = Counter()
        self.inbox = Inbox(self.db, on_error=lambda what: self.errors.update([what]))
        self.store = MessageStore(self.db, self.inbox, batch_max=SEED_BATCH_MAX, min_interval_s=0.0)
        self.history_messages = 0  # seeded among the pairs
        self.total_messages = 0  # everything this seeder stored
        self._temp_ids = itertools.count(1)
        self._wave = 0

    def start(self) -> None:
        self.inbox.start()
        self.store.start()

    async def close(self) -> None:
        await self.store.close()
        await self.inbox.close()
        await self.client.close()

    async def _submit(self, sender: str, recipient: str) -> None:
        n = next(self._temp_ids)
        # tempIds are unique per sender because n is unique altogether.
        await self.store.submit(sender, recipient, f"seed{n}", TEXT % n, time.monotonic())
        self.population.sent[sender] += 1
        self.population.received[recipient] += 1
        self.total_messages += 1

    async def _settle(self, wave: asyncio.Future[list[Any]]) -> int:
        outcomes = await asyncio.wait_for(wave, SEED_WAVE_TIMEOUT_S)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                self.errors[type(outcome).__name__] += 1
        return sum(1 for outcome in outcomes if not isinstance(outcome, BaseException))

    async def counted(self) -> None:
        """Every message stored so far is in the conversation summaries and counters."""
        await asyncio.wait_for(self.inbox.flushed(), SEED_FLUSH_TIMEOUT_S)

    async def grow(self, count: int) -> dict[str, Any]:
        """Add ``count`` messages among the pairs, in waves; progress every 100,000."""
        pairs = self.population.pairs
        per_wave = min(SEED_PAIRS_PER_WAVE, len(pairs))
        blocks = max(1, len(pairs) // per_wave)
        started = time.perf_counter()
        last_mark, last_mark_at = self.history_messages, started
        in_flight: deque[asyncio.Future[list[Any]]] = deque()
        stored = 0

        async def settle_one() -> None:
            nonlocal stored, last_mark, last_mark_at
            stored_now = await self._settle(in_flight.popleft())
            stored += stored_now
            self.history_messages += stored_now
            if self.history_messages // PROGRESS_EVERY > last_mark // PROGRESS_EVERY:
                # Counting must keep up too (the inbox sheds past 200,000 pending).
                await self.counted()
                now = time.perf_counter()
                print(
                    f"  seeded {self.history_messages:,} messages: "
                    f"{(self.history_messages - last_mark) / (now - last_mark_at):,.0f} msg/s "
                    f"over the last {self.history_messages - last_mark:,}, "
                    f"{stored / (now - started):,.0f} msg/s in this step",
                    flush=True,
                )
                last_mark, last_mark_at = self.history_messages, now

        for offset in range(0, count, SEED_WAVE):
            size = min(SEED_WAVE, count - offset)
            first = (self._wave % blocks) * per_wave
            block = pairs[first : first + per_wave]
            self._wave += 1
            jobs = []
            for k in range(size):
                a, b = block[k % len(block)]
                if (k // len(block)) % 2:
                    a, b = b, a  # each pair's messages alternate direction
                jobs.append(self._submit(a, b))
            in_flight.append(asyncio.gather(*jobs, return_exceptions=True))
            if len(in_flight) >= SEED_WAVES_IN_FLIGHT:
                await settle_one()
        while in_flight:
            await settle_one()
        await self.counted()
        seconds = time.perf_counter() - started
        return {
            "added": stored,
            "asked": count,
            "seconds": round(seconds, 1),
            "messagesPerSecond": round(stored / seconds) if seconds else None,
            "historyMessagesAfter": self.history_messages,
            "errors": dict(self.errors),
        }

    async def conversations(self, user: str, partners: list[str]) -> dict[str, Any]:
        """One message each way between ``user`` and each partner: len(partners) conversations."""
        started = time.perf_counter()
        before = self.total_messages
        for direction in (0, 1):
            jobs = [
                self._submit(user, p) if direction == 0 else self._submit(p, user) for p in partners
            ]
            await self._settle(asyncio.gather(*jobs, return_exceptions=True))
        await self.counted()
        seconds = time.perf_counter() - started
        return {
            "conversations": len(partners),
            "messages": self.total_messages - before,
            "seconds": round(seconds, 2),
            "errors": dict(self.errors),
        }


# -- hello ----------------------------------------------------------------------------------


def _failure_name(exc: BaseException) -> str:
    if isinstance(exc, HandshakeRefused):
        return f"refused-{exc.status}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError) and "awaiting" in str(exc):
        return "closed-before-hello"
    return type(exc).__name__


def _ignore(_frame: dict[str, Any]) -> None:
    return None


async def _time_hello(url: str, token: str, timeout_s: float) -> tuple[float, ChatClient]:
    started = time.perf_counter()
    client = await ChatClient.connect(url, token, on_frame=_ignore, timeout_s=timeout_s)
    return time.perf_counter() - started, client


@dataclass
class Chatd:
    """A running chatd as measured: its socket URL, process and metrics port."""

    url: str
    pid: int
    metrics_port: int

    @classmethod
    def of_stack(cls, stack: Stack) -> Chatd:
        assert stack.chatd.pid
        return cls(stack.urls()[0], stack.chatd.pid, stack.metrics_ports[0])


class Hellos:
    """Timed connects, by group, each checked against what the seeder wrote."""

    def __init__(self, population: Population, concurrency: int) -> None:
        self.population = population
        self.gate = asyncio.Semaphore(concurrency)
        self.samples: dict[str, list[float]] = {}
        self.failures: dict[str, Counter[str]] = {}
        self.wrong: Counter[str] = Counter()
        self.unread: dict[str, list[int]] = {}

    async def connect(self, url: str, kind: str, user: str, token: str) -> None:
        async with self.gate:
            try:
                seconds, client = await _time_hello(url, token, HELLO_TIMEOUT_S)
            except Exception as exc:
                self.failures.setdefault(kind, Counter())[_failure_name(exc)] += 1
                return
            self.samples.setdefault(kind, []).append(seconds)
            hello = client.hello
            # What hello says must be what the seeder wrote: unread counter and cursor.
            sent, received = self.population.sent[user], self.population.received[user]
            if (
                Cursor.parse(hello.get("cursor")) != Cursor(received, sent)
                or hello.get("unreadCount") != received
            ):
                self.wrong[kind] += 1
            self.unread.setdefault(kind, []).append(int(hello.get("unreadCount") or 0))
            client.conn.close()

    async def run(self, url: str, jobs: list[tuple[str, str, str]]) -> None:
        await asyncio.wait_for(
            asyncio.gather(*(self.connect(url, *job) for job in jobs)),
            HELLO_TIMEOUT_S * max(1, len(jobs)),
        )

    def summary(self, kind: str, users: list[str]) -> dict[str, Any]:
        unread = self.unread.get(kind, [])
        own = [self.population.sent[u] + self.population.received[u] for u in users]
        return {
            "latencyMs": _percentiles(self.samples.get(kind, [])),
            "failures": dict(self.failures.get(kind, {})),
            "helloNotMatchingTheStore": self.wrong[kind],
            "meanUnreadCount": round(sum(unread) / len(unread), 1) if unread else None,
            "meanOwnMessages": round(sum(own) / len(own), 1) if own else 0,
        }


def _interleaved(issuer: TokenIssuer, groups: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """(group, user, token), taking one user of each group in turn."""
    return [
        (kind, user, issuer.issue_access(user))
        for users in itertools.zip_longest(*groups.values())
        for kind, user in zip(groups, users, strict=True)
        if user is not None
    ]


async def _warm(url: str, issuer: TokenIssuer, users: list[str], concurrency: int) -> list[float]:
    """A fresh chatd opens its store connections as concurrency asks: before measuring."""
    hellos = Hellos(Population([], [], [], "", []), concurrency)
    await hellos.run(url, _interleaved(issuer, {"warmup": users}))
    return [_ms(s) for s in hellos.samples.get("warmup", [])]


def _hello_groups(population: Population, plan: Plan) -> dict[str, list[str]]:
    return {
        "newcomer": population.newcomers[: plan.hello_connects],
        "withHistory": population.with_history[: plan.hello_connects],
    }


async def measure_hello(
    stack: Stack, chatd: Chatd, issuer: TokenIssuer, population: Population, plan: Plan
) -> dict[str, Any]:
    """Newcomers and users with history, interleaved, ``hello_concurrency`` at a time."""
    warmup = await _warm(chatd.url, issuer, population.warmup, plan.hello_concurrency)
    groups = _hello_groups(population, plan)
    jobs = _interleaved(issuer, groups)
    hellos = Hellos(population, plan.hello_concurrency)
    metrics0 = _scrape(chatd.metrics_port, STORM_METRICS)
    window = Window(stack, chatd.pid)
    await hellos.run(chatd.url, jobs)
    cpu = window.stop()
    metrics = _metric_deltas(metrics0, _scrape(chatd.metrics_port, STORM_METRICS))
    result: dict[str, Any] = {
        "concurrency": plan.hello_concurrency,
        "warmupMs": warmup,
        **cpu,
        "chatdCpuMsPerHello": round(cpu["chatdCpuSeconds"] / len(jobs) * 1000, 3),
        "storeCpuMsPerHello": round(cpu["storeCpuSeconds"] / len(jobs) * 1000, 3),
        "serverMeanHelloMs": _server_mean_hello_ms(metrics),
    }
    for kind, users in groups.items():
        result[kind] = hellos.summary(kind, users)
    return result


# -- the same, alternating with a chatd on an empty database ---------------------------------


@dataclass
class Control:
    """A second database on the same store, with users and connections but no message.

    Its own chatd (own Redis key prefix) is measured in blocks alternating with
    the main one, so whatever else the machine runs meanwhile hits both alike:
    the ratio of the two is the store's size's own effect.
    """

    settings: Settings
    users: list[str]
    warmup: list[str]
    chatd: ManagedProcess | None = None

    @classmethod
    async def create(cls, settings: Settings, users: int) -> Control:
        control = settings.model_copy(
            update={
                "mongo_db": f"{settings.mongo_db}_empty",
                "redis_key_prefix": f"{settings.redis_key_prefix}empty:",
            }
        )
        pairs = await _make_pairs(control, users // 2)
        warmup = await _make_pairs(control, WARMUP_PAIRS)
        return cls(control, [u for p in pairs for u in p], [u for p in warmup for u in p])

    def start(self, stack: Stack) -> Chatd:
        """A fresh chatd on the empty database (the previous one stopped)."""
        self.stop()
        node = self.settings.model_copy(
            update={
                "chatd_port": free_port(),
                "chatd_metrics_port": free_port(),
                "node_id": "empty",
            }
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVCONNECT_")}
        env.update(settings_to_env(node))
        env["PYTHONPATH"] = str(ROOT)
        self.chatd = ManagedProcess(
            "chatd-empty",
            [sys.executable, "-m", "core.cli", "chatd"],
            node.chatd_port,
            stack.workdir / "chatd-empty.log",
            env,
        ).start()
        assert self.chatd.pid
        _pin(self.chatd.pid, SERVER_CORE)
        return Chatd(
            f"ws://127.0.0.1:{node.chatd_port}/ws", self.chatd.pid, node.chatd_metrics_port
        )

    def stop(self) -> None:
        if self.chatd is not None:
            self.chatd.stop()
            self.chatd = None


PAIRED_BLOCK = 20  # connects per block; blocks alternate main, empty, empty, main, ...


async def measure_paired(
    chatd: Chatd,
    control: Control,
    empty: Chatd,
    issuer: TokenIssuer,
    population: Population,
    plan: Plan,
) -> dict[str, Any]:
    """hello on this store and on an empty one, in alternating blocks (ABBA)."""
    url, control_url = chatd.url, empty.url
    await _warm(url, issuer, population.warmup, plan.hello_concurrency)
    await _warm(control_url, issuer, control.warmup, plan.hello_concurrency)
    groups = _hello_groups(population, plan)
    main_jobs = _interleaved(issuer, groups)
    empty_users = control.users[: len(main_jobs)]
    empty_jobs = _interleaved(issuer, {"empty": empty_users})
    hellos = Hellos(population, plan.hello_concurrency)
    for block, at in enumerate(range(0, max(len(main_jobs), len(empty_jobs)), PAIRED_BLOCK)):
        runs = [(url, main_jobs[at : at + PAIRED_BLOCK])]
        runs.append((control_url, empty_jobs[at : at + PAIRED_BLOCK]))
        if block % 2:
            runs.reverse()
        for target, jobs in runs:
            await hellos.run(target, jobs)
    result: dict[str, Any] = {"blockSize": PAIRED_BLOCK, "concurrency": plan.hello_concurrency}
    for kind, users in groups.items():
        result[kind] = hellos.summary(kind, users)
    result["empty"] = hellos.summary("empty", empty_users)
    empty_p99 = result["empty"]["latencyMs"]["p99"]
    for kind in groups:
        p99 = result[kind]["latencyMs"]["p99"]
        result[f"{kind}P99OverEmpty"] = round(p99 / empty_p99, 2) if p99 and empty_p99 else None
    return result


# -- the reconnect storm ---------------------------------------------------------------------


def _scrape(port: int, prefixes: tuple[str, ...]) -> dict[str, float]:
    """chatd's metrics with these prefixes; none when they cannot be read (they are extras)."""
    import urllib.request

    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except (OSError, ValueError):
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefixes):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


STORM_METRICS = (
    "chatd_handshake_refusals_total",
    "chatd_bus_errors_total",
    "chatd_store_errors_total",
    "chatd_hello_seconds_count",
    "chatd_hello_seconds_sum",
    "chatd_connects_total",
)


def _server_mean_hello_ms(deltas: dict[str, float]) -> float | None:
    """chatd's own mean time from upgrade to hello sent (its chatd_hello_seconds histogram)."""
    count = deltas.get("chatd_hello_seconds_count", 0.0)
    return round(deltas.get("chatd_hello_seconds_sum", 0.0) / count * 1000, 2) if count else None


def _metric_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        name: round(value - before.get(name, 0.0), 3)
        for name, value in sorted(after.items())
        if value - before.get(name, 0.0)
    }


class Window:
    """CPU spent between start and stop: chatd, the store, Redis, this process, core 0 in all.

    Everything of ours that serves is pinned to core 0, so core 0's busy time
    minus our servers' CPU is what other jobs on the machine took from them.
    """

    def __init__(self, stack: Stack, chatd_pid: int | None = None) -> None:
        self.stack = stack
        self.chatd_pid = chatd_pid  # this chatd's CPU, not that of the stack's nodes
        self.wall = time.perf_counter()
        self.servers = self._servers()
        self.generator = time.process_time()
        self.core = _core_ticks(SERVER_CORE)

    def _servers(self) -> tuple[float, float, float]:
        nodes, store, redis = self.stack.cpu_seconds()
        if self.chatd_pid is not None:
            nodes = _proc_stats(self.chatd_pid)[1]
        return nodes, store, redis

    def stop(self) -> dict[str, float]:
        chatd, store, redis = (b - a for a, b in zip(self.servers, self._servers(), strict=True))
        busy0, total0 = self.core
        busy1, total1 = _core_ticks(SERVER_CORE)
        ticks = os.sysconf("SC_CLK_TCK")
        core_busy = (busy1 - busy0) / ticks
        return {
            "seconds": round(time.perf_counter() - self.wall, 3),
            "chatdCpuSeconds": round(chatd, 3),
            "storeCpuSeconds": round(store, 3),
            "redisCpuSeconds": round(redis, 3),
            # The generator has core 1; near 1 CPU second a second it adds latency of its own.
            "generatorCpuSeconds": round(time.process_time() - self.generator, 3),
            "core0BusySeconds": round(core_busy, 3),
            "core0ShareOfOtherJobs": round(
                max(0.0, core_busy - chatd - store - redis) / ((total1 - total0) / ticks), 3
            )
            if total1 > total0
            else 0.0,
        }


def _core_ticks(core: int) -> tuple[int, int]:
    """(busy, total) clock ticks of one core since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{core} "):
                values = [int(v) for v in line.split()[1:9]]
                return sum(values) - values[3] - values[4], sum(values)
    return 0, 0


async def _storm_round(
    stack: Stack, chatd: Chatd, sockets: list[tuple[str, ChatClient]]
) -> tuple[dict[str, Any], list[tuple[str, ChatClient]]]:
    """Drop every socket at once (no close frame), reconnect them all at once."""
    metrics0 = _scrape(chatd.metrics_port, STORM_METRICS)
    done_at: list[float] = []
    per_socket: list[float] = []
    failures: Counter[str] = Counter()
    reconnected: list[tuple[str, ChatClient]] = []

    async def one(token: str) -> None:
        began = time.perf_counter()
        try:
            seconds, client = await _time_hello(chatd.url, token, STORM_TIMEOUT_S)
        except Exception as exc:
            failures[_failure_name(exc)] += 1
            return
        per_socket.append(seconds)
        done_at.append(began + seconds)
        reconnected.append((token, client))

    window = Window(stack, chatd.pid)
    started = time.perf_counter()
    for _, client in sockets:
        client.abort()
    await asyncio.wait_for(
        asyncio.gather(*(one(token) for token, _ in sockets)), STORM_TIMEOUT_S + 30
    )
    last_hello = max(done_at) if done_at else time.perf_counter()
    cpu = window.stop()
    await asyncio.sleep(0.5)  # let the server finish counting what it refused, if anything
    metrics = _metric_deltas(metrics0, _scrape(chatd.metrics_port, STORM_METRICS))
    rss, _ = _proc_stats(chatd.pid)
    result = {
        "sockets": len(sockets),
        "secondsUntilEveryHello": round(last_hello - started, 3),
        "timeToHelloMs": _percentiles(per_socket),
        "reconnected": len(reconnected),
        "failures": dict(failures),
        "failureCount": sum(failures.values()),
        **cpu,
        "chatdCpuMsPerHello": round(cpu["chatdCpuSeconds"] / len(sockets) * 1000, 3),
        "storeCpuMsPerHello": round(cpu["storeCpuSeconds"] / len(sockets) * 1000, 3),
        "serverMeanHelloMs": _server_mean_hello_ms(metrics),
        "chatdMetrics": metrics,
        "chatdRssBytes": rss,
    }
    return result, reconnected


async def _open(chatd: Chatd, tokens: list[str]) -> list[tuple[str, ChatClient]]:
    clients = await asyncio.wait_for(
        _connect_all([chatd.url], tokens, None), HELLO_TIMEOUT_S * len(tokens) / 10
    )
    return list(zip(tokens, clients, strict=True))


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(rounds, key=lambda r: r["secondsUntilEveryHello"])[len(rounds) // 2]


async def measure_storm(
    stack: Stack,
    chatd: Chatd,
    issuer: TokenIssuer,
    users: list[str],
    rounds: int,
    empty: Chatd | None = None,
    empty_users: list[str] | None = None,
) -> dict[str, Any]:
    """``len(users)`` sockets up, then ``rounds`` times: all dropped, all reconnecting at once.

    With ``empty`` (a chatd on a database with no message), as many of its users'
    sockets storm in alternation (ABBA), so that the two are compared under
    whatever else the machine runs meanwhile.
    """
    connect_started = time.perf_counter()
    sockets = {"main": await _open(chatd, [issuer.issue_access(u) for u in users])}
    connect_s = time.perf_counter() - connect_started
    nodes = {"main": chatd}
    if empty is not None and empty_users:
        tokens = [issuer.issue_access(u) for u in empty_users[: len(users)]]
        sockets["empty"] = await _open(empty, tokens)
        nodes["empty"] = empty
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sockets}
    try:
        for n in range(rounds):
            order = list(sockets) if n % 2 == 0 else list(reversed(sockets))
            for name in order:
                await asyncio.sleep(STORM_SETTLE_S)
                result, sockets[name] = await _storm_round(stack, nodes[name], sockets[name])
                results[name].append(result)
                print(
                    f"    storm of {result['sockets']} ({name}): every hello in "
                    f"{result['secondsUntilEveryHello']} s, {result['failureCount']} failures, "
                    f"chatd {result['chatdCpuSeconds']} s, store {result['storeCpuSeconds']} s "
                    "CPU",
                    flush=True,
                )
    finally:
        for group in sockets.values():
            for _, client in group:
                client.conn.close()
    report = {
        **_median_round(results["main"]),
        "initialConnectSeconds": round(connect_s, 2),
        "rounds": results["main"],
        "failuresInAllRounds": sum(r["failureCount"] for r in results["main"]),
    }
    if results.get("empty"):
        median = _median_round(results["empty"])
        report["emptyStore"] = {
            "median": {
                key: median[key]
                for key in (
                    "sockets",
                    "secondsUntilEveryHello",
                    "timeToHelloMs",
                    "failureCount",
                    "chatdCpuMsPerHello",
                    "storeCpuMsPerHello",
                )
            },
            "rounds": results["empty"],
            "failuresInAllRounds": sum(r["failureCount"] for r in results["empty"]),
        }
        report["secondsOverEmptyStore"] = round(
            report["secondsUntilEveryHello"] / median["secondsUntilEveryHello"], 2
        )
    return report


# -- the REST conversation list --------------------------------------------------------------


def _start_restd(stack: Stack, settings: Settings) -> ManagedProcess:
    restd_settings = settings.model_copy(
        # The per-user request budget is restd's own (600 a minute): not what is measured.
        update={"restd_port": free_port(), "rate_user_count": 1_000_000}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVCONNECT_")}
    env.update(settings_to_env(restd_settings))
    env["PYTHONPATH"] = str(ROOT)
    restd = ManagedProcess(
        "restd",
        [sys.executable, "-m", "core.cli", "restd"],
        restd_settings.restd_port,
        stack.workdir / "restd.log",
        env,
    ).start()
    assert restd.pid
    _pin(restd.pid, SERVER_CORE)
    return restd


async def _timed_get(
    http: httpx.AsyncClient, params: dict[str, Any]
) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = await http.get("/api/conversations", params=params)
    return time.perf_counter() - started, response


async def measure_list(
    stack: Stack, settings: Settings, issuer: TokenIssuer, population: Population, plan: Plan
) -> dict[str, Any]:
    restd = _start_restd(stack, settings)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{restd.port}",
            headers={"Authorization": f"Bearer {issuer.issue_access(population.list_user)}"},
            timeout=REST_TIMEOUT_S,
        ) as http:
            cold = []
            for _ in range(REST_WARMUP):
                seconds, response = await _timed_get(http, {"limit": 50})
                response.raise_for_status()
                cold.append(seconds)
            # Every page once: all conversations listed, each once, newest first.
            seen: list[str] = []
            cursors: list[str | None] = [None]
            while len(cursors) <= LIST_CONVERSATIONS // 50 + 2:
                params: dict[str, Any] = {"limit": 50}
                if cursors[-1]:
                    params["before"] = cursors[-1]
                _, response = await _timed_get(http, params)
                response.raise_for_status()
                body = response.json()
                seen += [item["id"] for item in body["items"]]
                if not body.get("nextCursor"):
                    break
                cursors.append(body["nextCursor"])
            deep_cursor = cursors[min(plan.deep_page - 1, len(cursors) - 1)]
            first: list[float] = []
            deep: list[float] = []
            failures: Counter[str] = Counter()
            deep_items = 0
            for _ in range(plan.rest_requests):  # interleaved: noise hits both alike
                for samples, params in (
                    (first, {"limit": 50}),
                    (deep, {"limit": 50, "before": deep_cursor}),
                ):
                    seconds, response = await _timed_get(http, params)
                    if response.status_code != 200:
                        failures[str(response.status_code)] += 1
                        continue
                    samples.append(seconds)
                    if samples is deep:
                        deep_items = len(response.json()["items"])
    finally:
        restd.stop()
    return {
        "conversations": LIST_CONVERSATIONS,
        "listed": len(seen),
        "distinct": len(set(seen)),
        "pages": len(cursors),
        "coldFirstRequestsMs": [_ms(s) for s in cold],
        "firstPageMs": _percentiles(first),
        "deepPage": plan.deep_page,
        "deepPageItems": deep_items,
        "deepPageMs": _percentiles(deep),
        "failures": dict(failures),
    }


# -- the store queries behind hello and the list, timed alone ------------------------------


async def _time_runs(
    stack: Stack, runs: int, call: Callable[[], Awaitable[Any]]
) -> tuple[dict[str, float | None], float]:
    """Latency percentiles of ``runs`` sequential calls, and the store's CPU per call (us)."""
    samples = []
    store0 = stack.cpu_seconds()[1]
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return _percentiles(samples), round((stack.cpu_seconds()[1] - store0) / runs * 1e6, 1)


def _plan_text(explained: Doc) -> str:
    """The winning plan as nx-27017 or MongoDB states it, shortened."""
    planner = explained.get("queryPlanner", explained)
    winning = planner.get("winningPlan", planner)
    return json.dumps(winning, default=str)[:300]


async def probe_queries(stack: Stack, settings: Settings, population: Population) -> dict[str, Any]:
    client: AsyncMongoClient[Doc] = make_client(settings.mongo_url)
    db = client[settings.mongo_db]
    inbox = Inbox(db)
    store = MessageStore(db, inbox)
    veteran = population.pairs[0][0]
    newcomer = population.newcomers[0]
    me = population.list_user
    page_oids = [ObjectId(u) for u in population.list_partners[:50]]
    messages = db[MESSAGES]
    probes: dict[str, Callable[[], Awaitable[Any]]] = {
        # hello's reads (chatd/node.py open_session)
        "unreadTotal/withHistory": lambda: inbox.unread_total(veteran),
        "unreadTotal/newcomer": lambda: inbox.unread_total(newcomer),
        "connectionsOf/withHistory": lambda: connections_of(db, veteran),
        "connectionsOf/newcomer": lambda: connections_of(db, newcomer),
        # two newest-position reads (inKey, outKey), as with fresh=True at every hello
        "committedHead/withHistory": lambda: store.committed_head(veteran),
        "committedHead/newcomer": lambda: store.committed_head(newcomer),
        # the list's reads (domain/conversations.py list_conversations)
        "conversationsSide0/listUser": lambda: (
            db[CONVERSATIONS].find(sort_range(me, 0)).sort("sort0", -1).limit(51).to_list()
        ),
        "conversationsSide1/listUser": lambda: (
            db[CONVERSATIONS].find(sort_range(me, 1)).sort("sort1", -1).limit(51).to_list()
        ),
        "userSummaries$in50/listUser": lambda: (
            db[USERS].find({"_id": {"$in": page_oids}}, projection={"name": 1}).to_list()
        ),
        "blocks/listUser": lambda: db[BLOCKS].find({"blockerId": me}).to_list(),
        # For comparison: one id through $in, and one id by equality.
        "user$in1": lambda: db[USERS].find({"_id": {"$in": page_oids[:1]}}).to_list(),
        "userById": lambda: db[USERS].find_one({"_id": page_oids[0]}),
    }
    timings: dict[str, Any] = {}
    store_cpu: dict[str, float] = {}
    for name, call in probes.items():
        timings[name], store_cpu[name] = await _time_runs(stack, PROBE_RUNS, call)
    plans: dict[str, str] = {}
    explains: dict[str, Any] = {
        "committedHead inKey": messages.find(
            {"inKey": {"$gt": f"{veteran}:", "$lt": f"{veteran};"}}, projection={"inKey": 1}
        )
        .sort("inKey", -1)
        .limit(1),
        "conversations sort0": db[CONVERSATIONS]
        .find(sort_range(me, 0))
        .sort("sort0", -1)
        .limit(51),
        "connections fromUserId": db[CONNECTION_REQUESTS].find(
            {"fromUserId": veteran, "status": "accepted"}
        ),
    }
    for name, cursor in explains.items():
        try:
            plans[name] = _plan_text(await cursor.explain())
        except Exception as exc:  # explain is informative; the figures stand without it
            plans[name] = f"explain failed: {type(exc).__name__}: {exc}"[:300]
    await client.close()
    return {
        "runs": PROBE_RUNS,
        "latencyMs": timings,
        # Store CPU per call, from /proc (10 ms ticks, so about +-50 us at 200 runs of 1 ms).
        "storeCpuUsPerCall": store_cpu,
        "plans": plans,
    }


# -- the run -----------------------------------------------------------------------------------


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _summary_line(point: dict[str, Any]) -> str:
    def pair(*path: str) -> str:
        return f"{_get(point, *path, 'p50')}/{_get(point, *path, 'p99')}"

    return (
        f"store {point['messagesInStore']:,} msgs | hello p50/p99 newcomer "
        f"{pair('hello', 'newcomer', 'latencyMs')} ms, with history "
        f"{pair('hello', 'withHistory', 'latencyMs')} ms | storm "
        f"{_get(point, 'storm', 'sockets')}: {_get(point, 'storm', 'secondsUntilEveryHello')} s, "
        f"p50/p99 {pair('storm', 'timeToHelloMs')} ms, "
        f"{_get(point, 'storm', 'failuresInAllRounds')} failures, chatd "
        f"{_get(point, 'storm', 'chatdCpuSeconds')} s CPU, store "
        f"{_get(point, 'storm', 'storeCpuSeconds')} s, "
        f"{_get(point, 'storm', 'secondsOverEmptyStore')}x an empty store's | list p50/p99 first "
        f"{pair('conversationList', 'firstPageMs')} ms, page "
        f"{_get(point, 'conversationList', 'deepPage')} "
        f"{pair('conversationList', 'deepPageMs')} ms | alternating with an empty store: "
        f"p99 newcomer/empty {_get(point, 'pairedWithEmptyStore', 'newcomerP99OverEmpty')}, "
        f"with history/empty {_get(point, 'pairedWithEmptyStore', 'withHistoryP99OverEmpty')}"
    )


def _ratio(points: list[dict[str, Any]], kind: str) -> float | None:
    if not points:
        return None
    low = _get(points[0], "hello", kind, "latencyMs", "p99")
    high = _get(points[-1], "hello", kind, "latencyMs", "p99")
    return round(high / low, 2) if low and high is not None else None


def _mean_calibration_ms(point: dict[str, Any]) -> float | None:
    runs = [c["wallMs"] for c in point.get("core0Calibration", []) if "wallMs" in c]
    return sum(runs) / len(runs) if runs else None


async def _guarded(what: str, measurement: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A measurement that fails is recorded as failed; the next ones still run."""
    try:
        return await measurement
    except Exception as exc:
        traceback.print_exc()
        print(f"  {what} failed: {type(exc).__name__}: {exc}", flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


async def run(plan: Plan) -> dict[str, Any]:
    _raise_fd_limit()
    _pin(os.getpid(), CLIENT_CORE)
    report: dict[str, Any] = {
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python -m loadtest.daytwo", *sys.argv[1:]]),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadAverageAtStart": _load_average(),
        },
        "plan": asdict(plan),
        "targetRatio": TARGET_RATIO,
        "seeding": [],
        "points": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="daytwo-"))
    # restd serves /metrics on a port of its own (Stack picks chatd's): a free one.
    stack = Stack(workdir, overrides={"restd_metrics_port": free_port()})
    seeder: Seeder | None = None
    control: Control | None = None
    try:
        settings = stack.start()
        admin: AsyncMongoClient[Doc] = make_client(settings.mongo_url)
        population = await _populate(settings, admin[settings.mongo_db])
        await admin.close()
        report["population"] = {
            "usersWithHistory": len(population.with_history),
            "newcomers": len(population.newcomers),
            "warmupUsers": len(population.warmup),
            "listUserPartners": len(population.list_partners),
            "users": len(population.with_history)
            + len(population.newcomers)
            + len(population.warmup)
            + 1
            + len(population.list_partners),
        }
        control = await Control.create(settings, max(2 * plan.hello_connects, plan.storm_sockets))
        report["population"]["emptyDatabaseUsers"] = len(control.users)
        seeder = Seeder(settings, population)
        seeder.start()
        for index, size in enumerate(plan.sizes):
            if size > seeder.history_messages:
                print(f"seeding {size - seeder.history_messages:,} messages ...", flush=True)
                window = Window(stack)
                step = await seeder.grow(size - seeder.history_messages)
                step["cpu"] = window.stop()
                print(
                    f"  seeded {step['added']:,} in {step['seconds']} s "
                    f"({step['messagesPerSecond']:,} msg/s), errors {step['errors']}",
                    flush=True,
                )
                report["seeding"].append(step)
            if index:
                stack.restart_chatd()  # cold caches, same store
            chatd = Chatd.of_stack(stack)
            issuer = TokenIssuer(settings.jwt_secret, 3600)
            point: dict[str, Any] = {
                "historyMessages": seeder.history_messages,
                "messagesInStore": seeder.total_messages,
                "loadAverage": _load_average(),
                "storeFileBytes": _store_files(stack.workdir),
                "codeDigest": _code_digest(),
            }
            # What the servers burn with nothing asked of them (the store's checkpoints).
            idle = Window(stack)
            await asyncio.sleep(IDLE_WINDOW_S)
            point["idle"] = idle.stop()
            point["core0Calibration"] = [await _guarded("calibration", _calibrate())]
            print(
                f"measuring at {seeder.total_messages:,} messages "
                f"(load average {point['loadAverage']}) ...",
                flush=True,
            )
            point["hello"] = await _guarded(
                "hello", measure_hello(stack, chatd, issuer, population, plan)
            )
            empty = control.start(stack)
            # The sockets just closed go offline after the grace period (a batch of
            # presence and lastSeen writes in the main chatd): not during the next test.
            await asyncio.sleep(settings.presence_grace_s + 2)
            point["pairedWithEmptyStore"] = await _guarded(
                "paired hello",
                measure_paired(chatd, control, empty, issuer, population, plan),
            )
            await asyncio.sleep(settings.presence_grace_s + 2)  # their offline transitions
            storm_users = population.with_history[: plan.storm_sockets]
            point["storm"] = await _guarded(
                "storm",
                measure_storm(
                    stack, chatd, issuer, storm_users, plan.storm_rounds, empty, control.users
                ),
            )
            control.stop()
            await asyncio.sleep(settings.presence_grace_s + 2)
            if not population.received[population.list_user]:
                listing = await seeder.conversations(population.list_user, population.list_partners)
                report["listUserSeeding"] = listing
                point["messagesInStoreForList"] = seeder.total_messages
            point["conversationList"] = await _guarded(
                "conversation list", measure_list(stack, settings, issuer, population, plan)
            )
            point["queries"] = await _guarded("queries", probe_queries(stack, settings, population))
            point["core0Calibration"].append(await _guarded("calibration", _calibrate()))
            point["loadAverageAfter"] = _load_average()
            print("  " + _summary_line(point), flush=True)
            report["points"].append(point)
        report["seedingErrors"] = dict(seeder.errors)
    except Exception as exc:  # what was measured so far is still saved
        traceback.print_exc()
        report["error"] = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        if control is not None:
            control.stop()
        if seeder is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(seeder.close(), 30)
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    points = report["points"]
    report["codeDigestAtEnd"] = _code_digest()
    digests = {p["codeDigest"] for p in points} | {report["codeDigestAtEnd"]}
    # chatd and restd read the code when they start: one digest means one version measured.
    report["codeChangedDuringRun"] = len(digests) > 1
    report["ratios"] = {
        "from": points[0]["messagesInStore"],
        "to": points[-1]["messagesInStore"],
        "newcomerHelloP99": _ratio(points, "newcomer"),
        "withHistoryHelloP99": _ratio(points, "withHistory"),
    }
    # The same ratios with each point's p99 divided by how slow core 0 was just then
    # (CALIBRATION's wall time, mean of before and after): the machine is shared.
    speed = [_mean_calibration_ms(p) for p in points[:1] + points[-1:]]
    if len(speed) == 2 and all(speed):
        slowdown = speed[1] / speed[0]
        report["ratios"]["core0SlowdownLastToFirst"] = round(slowdown, 2)
        for kind in ("newcomer", "withHistory"):
            raw = report["ratios"][f"{kind}HelloP99"]
            report["ratios"][f"{kind}HelloP99AdjustedForCore0"] = (
                round(raw / slowdown, 2) if raw is not None else None
            )
    # Measured in alternation with a chatd on an empty database at the same moment.
    for label, point in (("first", points[:1]), ("last", points[-1:])):
        report["ratios"][f"stormSecondsOverEmptyAt{label.title()}"] = (
            _get(point[0], "storm", "secondsOverEmptyStore") if point else None
        )
        for kind in ("newcomer", "withHistory"):
            report["ratios"][f"{kind}HelloP99OverEmptyAt{label.title()}"] = (
                _get(point[0], "pairedWithEmptyStore", f"{kind}P99OverEmpty") if point else None
            )
    report["ratios"]["underTarget"] = all(
        r is not None and r < TARGET_RATIO
        for r in (report["ratios"]["newcomerHelloP99"], report["ratios"]["withHistoryHelloP99"])
    )
    seeded = [s for s in report["seeding"] if s.get("added")]
    if seeded:
        added = sum(s["added"] for s in seeded)
        seconds = sum(s["seconds"] for s in seeded)
        report["seedingTotal"] = {
            "messages": added,
            "seconds": round(seconds, 1),
            "messagesPerSecond": round(added / seconds) if seconds else None,
        }
    report["machine"]["loadAverageAtEnd"] = _load_average()
    report["finishedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return report


def _sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or sizes != sorted(sizes) or sizes[0] < 0:
        raise argparse.ArgumentTypeError("sizes: non-negative, ascending, comma-separated")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="sizes 0,20000 and smaller runs")
    parser.add_argument(
        "--sizes", type=_sizes, default=None, help="store sizes, e.g. 0,100000,1000000"
    )
    args = parser.parse_args()
    plan = Plan.of(args.quick, args.sizes)
    report = asyncio.run(run(plan))
    for point in report["points"]:
        print(_summary_line(point))
    ratios = report["ratios"]
    print(
        f"hello p99 at {ratios['to']:,} / at {ratios['from']:,} messages: newcomers "
        f"{ratios['newcomerHelloP99']}, with history {ratios['withHistoryHelloP99']} "
        f"(target under {TARGET_RATIO}: {'met' if ratios['underTarget'] else 'NOT met'}); "
        f"at {ratios['to']:,}, alternating with an empty store: newcomers "
        f"{ratios.get('newcomerHelloP99OverEmptyAtLast')}, with history "
        f"{ratios.get('withHistoryHelloP99OverEmptyAtLast')}"
    )
    if report.get("codeChangedDuringRun"):
        print("warning: the code under test changed during the run (see codeDigest per point)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "daytwo-quick" if args.quick else "daytwo"
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {path}")
    if "error" in report:
        sys.exit(f"stopped early: {report['error']}")


if __name__ == "__main__":
    main()
