"""feedbench: GET /api/feed latency over a synthetic 100,000-user population.

Starts its own embedded store (nx-27017), Redis and restd (`devconnect restd`),
loads the population (population.py) straight into the store, then measures
over real HTTP, one request at a time:

- first page, cold store: the first page of users never ranked before, with
  the feature store (the Redis copy of connection lists and profile cards)
  empty, so filled from Mongo as ranking reads it (a lost Redis shard);
- first-ever page: the first page of other users never ranked before, with
  the feature store as the hooks keep it (warmed at sign-up and on every
  connection change; here by ``FeatureStore.backfill``, the same lists and
  cards in one pass, since the population is loaded straight into the store);
- cached: the first page again and the following pages by cursor;
- uncached: the first page after the ranked snapshot is dropped (what a TTL
  expiry or an invalidation leaves), with the feature store warm.

Targets (issue 5, issue 17): p99 under 20 ms cached, under 150 ms uncached,
under 250 ms for the first-ever page. Writes the figures to
loadtest/results/feedbench-<stamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis as redis_lib
from pymongo import MongoClient

from core.auth import TokenIssuer
from core.embedded import ManagedProcess, free_port, mongo_process, redis_process
from core.keys import FeedKeys, Keys
from core.mongo import CONNECTION_REQUESTS, INDEXES, USERS
from core.runtime import open_stores
from core.settings import Settings, settings_to_env
from domain.feed.featurestore import FeatureStore
from loadtest.feedbench.model import serve_learned_model
from loadtest.feedbench.population import Population, connection_docs, generate

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "loadtest" / "results"
INSERT_BATCH = 2000
CACHED_PAGES_PER_USER = 5
TARGET_CACHED_P99_MS = 20.0
TARGET_UNCACHED_P99_MS = 150.0
TARGET_FIRST_EVER_P99_MS = 250.0


def _percentiles(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples)
    return {
        "n": len(samples),
        "p50": round(float(np.percentile(a, 50)), 2),
        "p90": round(float(np.percentile(a, 90)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "max": round(float(a.max()), 2),
    }


def load(mongo_url: str, db_name: str, pop: Population) -> dict[str, float]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url, tz_aware=True)
    db = client[db_name]
    started = time.monotonic()
    for i in range(0, len(pop.users), INSERT_BATCH):
        db[USERS].insert_many(pop.users[i : i + INSERT_BATCH], ordered=False)
    users_s = time.monotonic() - started
    batch: list[dict[str, Any]] = []
    for doc in connection_docs(pop):
        batch.append(doc)
        if len(batch) >= INSERT_BATCH:
            db[CONNECTION_REQUESTS].insert_many(batch, ordered=False)
            batch = []
    if batch:
        db[CONNECTION_REQUESTS].insert_many(batch, ordered=False)
    edges_s = time.monotonic() - started - users_s
    for name, models in {**INDEXES}.items():
        db[name].create_indexes(models)
    client.close()
    return {
        "usersS": round(users_s, 1),
        "edgesS": round(edges_s, 1),
        "indexesS": round(time.monotonic() - started - users_s - edges_s, 1),
    }


def _first_pages(
    http: httpx.Client, tokens: dict[str, str], served: dict[str, int] | None = None
) -> tuple[list[float], list[int]]:
    """First pages; ``served`` counts them by what ranked them (a model's explanation
    carries its bias)."""
    served = {} if served is None else served
    times: list[float] = []
    sizes: list[int] = []
    for token in tokens.values():
        t0 = time.perf_counter()
        resp = http.get(
            "/api/feed", params={"limit": 20}, headers={"Authorization": f"Bearer {token}"}
        )
        times.append((time.perf_counter() - t0) * 1000)
        resp.raise_for_status()
        items = resp.json()["items"]
        sizes.append(len(items))
        by_model = any("bias" in i["explain"]["contributions"] for i in items)
        ranker = "model" if by_model else "weights"
        served[ranker] = served.get(ranker, 0) + 1
    return times, sizes


def _cached_pages(http: httpx.Client, tokens: dict[str, str]) -> list[float]:
    cached: list[float] = []
    for token in tokens.values():
        headers = {"Authorization": f"Bearer {token}"}
        cursor = None
        for _ in range(CACHED_PAGES_PER_USER):
            params: dict[str, Any] = {"limit": 20}
            if cursor:
                params["cursor"] = cursor
            t0 = time.perf_counter()
            resp = http.get("/api/feed", params=params, headers=headers)
            cached.append((time.perf_counter() - t0) * 1000)
            resp.raise_for_status()
            cursor = resp.json()["nextCursor"]
            if not cursor:
                break
    return cached


def backfill(settings: Settings) -> dict[str, Any]:
    """What the sign-up and connection hooks leave in the feature store, in one pass."""

    async def run() -> dict[str, Any]:
        stores = open_stores(settings)
        try:
            features = FeatureStore(stores.db, stores.redis, FeedKeys(stores.keys))
            started = time.monotonic()
            counts = await features.backfill(settings.feed_neighbours_max)
            return {**counts, "seconds": round(time.monotonic() - started, 1)}
        finally:
            await stores.close()

    return asyncio.run(run())


def measure(
    base_url: str,
    tokens: dict[str, str],
    cold_tokens: dict[str, str],
    warm_store: Any,
    drop_snapshots: Any,
) -> dict[str, Any]:
    """First pages on an empty feature store, then on a warm one; cached pages; uncached."""
    with httpx.Client(base_url=base_url, timeout=30.0) as http:
        served: dict[str, int] = {"model": 0, "weights": 0}
        cold_store, _ = _first_pages(http, cold_tokens, served)
        warmed = warm_store()
        first, sizes = _first_pages(http, tokens, served)
        cached = _cached_pages(http, tokens)
        # The ranked lists expire (TTL) or are invalidated; the feature store stays.
        drop_snapshots(list(tokens))
        uncached, _ = _first_pages(http, tokens, served)
    return {
        "firstEverMs": _percentiles(first),
        "firstEverColdStoreMs": _percentiles(cold_store),
        "uncachedMs": _percentiles(uncached),
        "cachedMs": _percentiles(cached),
        "firstPageItems": _percentiles([float(s) for s in sizes]),
        "featureStoreBackfill": warmed,
        "firstPagesRankedBy": served,
    }


def _population(pop: Population, picked: np.ndarray) -> dict[str, Any]:
    deg = pop.degree
    return {
        "users": len(pop.users),
        "connections": len(pop.edges),
        "degreeMedian": float(np.median(deg)),
        "degreeMean": round(float(deg.mean()), 2),
        "degreeMax": int(deg.max()),
        "sampledDegreeMedian": float(np.median(deg[picked])),
        "sampledDegreeMax": int(deg[picked].max()),
    }


def _targets(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "cachedP99Ms": TARGET_CACHED_P99_MS,
        "uncachedP99Ms": TARGET_UNCACHED_P99_MS,
        "firstEverP99Ms": TARGET_FIRST_EVER_P99_MS,
        "cachedMet": figures["cachedMs"]["p99"] < TARGET_CACHED_P99_MS,
        "uncachedMet": figures["uncachedMs"]["p99"] < TARGET_UNCACHED_P99_MS,
        "firstEverMet": figures["firstEverMs"]["p99"] < TARGET_FIRST_EVER_P99_MS,
    }


def _tokens(pop: Population, indices: np.ndarray, issuer: TokenIssuer) -> dict[str, str]:
    return {
        str(pop.users[i]["_id"]): issuer.issue_access(str(pop.users[i]["_id"])) for i in indices
    }


def _start(
    args: argparse.Namespace, workdir: Path, processes: list[ManagedProcess]
) -> tuple[Population, float, dict[str, float], Settings, dict[str, Any] | None]:
    """Generate and load the population, then start restd on it (processes to stop later)."""
    print(f"feedbench: generating {args.users} users", flush=True)
    t0 = time.monotonic()
    pop = generate(args.users, args.seed)
    gen_s = time.monotonic() - t0
    mongo = mongo_process(workdir / "mongo", log_path=workdir / "mongo.log").start()
    redis = redis_process(log_path=workdir / "redis.log").start()
    processes += [mongo, redis]
    mongo_url = f"mongodb://127.0.0.1:{mongo.port}"
    print(f"feedbench: loading {len(pop.users)} users, {len(pop.edges)} connections", flush=True)
    load_times = load(mongo_url, "feedbench", pop)
    print(f"feedbench: loaded {load_times}", flush=True)

    settings = Settings(
        _env_file=None,
        env="test",
        mongo_url=mongo_url,
        mongo_db="feedbench",
        redis_urls=[f"redis://127.0.0.1:{redis.port}/0"],
        restd_port=free_port(),
        log_level="WARNING",
        log_format="text",
        cookie_secure=False,
        rate_user_count=100_000,
        var_dir=workdir / "var",
        **({} if args.expand is None else {"feed_expand_max": args.expand}),
    )
    model = serve_learned_model(settings, args.seed) if args.model == "learned" else None
    print(f"feedbench: ranking with {model or 'the priors'}", flush=True)
    env = {**settings_to_env(settings), "PYTHONPATH": str(ROOT)}
    restd = ManagedProcess(
        "restd",
        [sys.executable, "-m", "core.cli", "restd"],
        settings.restd_port,
        workdir / "restd.log",
        env,
    ).start()
    processes.append(restd)

    return pop, gen_s, load_times, settings, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.feedbench.bench")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=200, help="users whose feed is measured")
    parser.add_argument(
        "--cold-sample", type=int, default=100, help="other users, ranked on an empty store"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--expand", type=int, default=None, help="feed_expand_max (default: the setting's)"
    )
    parser.add_argument(
        "--model",
        choices=("learned", "priors"),
        default="learned",
        help="rank with a learned model in service (the issue's point) or the priors",
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="feedbench-"))
    processes: list[ManagedProcess] = []
    try:
        pop, gen_s, load_times, settings, model = _start(args, workdir, processes)
        rng = np.random.default_rng(args.seed)
        # Only the sampled users' feeds are measured; any user may be a candidate.
        picked = rng.choice(len(pop.users), size=args.sample, replace=False)
        # Drawn after the main sample, so that one stays the users earlier runs measured.
        others = np.setdiff1d(np.arange(len(pop.users)), picked)
        cold_picked = rng.choice(others, size=args.cold_sample, replace=False)
        issuer = TokenIssuer(settings.jwt_secret, 3600)
        tokens = _tokens(pop, picked, issuer)
        cold_tokens = _tokens(pop, cold_picked, issuer)
        print(f"feedbench: measuring {args.sample} users over HTTP", flush=True)
        keys = Keys(settings.redis_key_prefix)
        shard = redis_lib.Redis.from_url(settings.redis_urls[0])

        def drop_snapshots(users: list[str]) -> None:
            shard.delete(*[keys.recommendations(u) for u in users])

        figures = measure(
            f"http://127.0.0.1:{settings.restd_port}",
            tokens,
            cold_tokens,
            lambda: backfill(settings),
            drop_snapshots,
        )
        shard.close()
        result = {
            "bench": "feedbench",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "population": {
                **_population(pop, picked),
                "generateS": round(gen_s, 1),
                **load_times,
            },
            "settings": {
                "ranker": args.model,
                "model": model,
                "candidateCap": settings.feed_candidate_cap,
                "expandMax": settings.feed_expand_max,
                "snapshotSize": settings.feed_snapshot_size,
                "pageLimit": 20,
            },
            **figures,
            "targets": _targets(figures),
            "machine": {"cpus": os.cpu_count(), "store": "nx-27017 (embedded)"},
        }
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"feedbench-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        print(f"feedbench: wrote {path}")
        return 0
    finally:
        for proc in reversed(processes):
            proc.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
