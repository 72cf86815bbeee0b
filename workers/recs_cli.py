"""``devconnect recs precompute|train|models|rollback``: the feed's operator commands.

``precompute`` fills the feed cache for recently active users in bounded
batches, printing progress. ``train`` runs the nightly training of the learned
ranker now, in this process (domain/feed/training.py); ``models`` lists the
model registry; ``rollback VERSION`` serves an earlier model from now on
(running restd instances follow within ``DEVCONNECT_FEED_MODEL_CHECK_S``).
They ship in the production image with the workers; ``recs eval``, a
development tool, is ``tooling/recs_cli.py`` (core/cli.py routes it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from core.settings import Settings


def _say(message: str) -> None:
    print(f"recs: {message}", flush=True)


def run_precompute(settings: Settings, argv: list[str]) -> int:
    from core.logs import configure_logging
    from domain.feed.precompute import precompute_active

    parser = argparse.ArgumentParser(prog="devconnect recs precompute")
    parser.add_argument("--batch", type=int, default=settings.feed_precompute_batch)
    parser.add_argument("--active-days", type=float, default=settings.feed_active_days)
    parser.add_argument("--max-users", type=int, default=None, help="stop after this many")
    args = parser.parse_args(argv)
    configure_logging("recs", settings.log_level, settings.log_format)
    if not settings.mongo_url or not settings.redis_urls:
        print(
            "recs precompute: DEVCONNECT_MONGO_URL and DEVCONNECT_REDIS_URLS must be set",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    done = asyncio.run(
        precompute_active(settings, args.batch, args.active_days, args.max_users, _say)
    )
    _say(f"precomputed {done} users in {time.monotonic() - started:.1f}s")
    return 0


def _needs_stores(settings: Settings, command: str) -> bool:
    if settings.mongo_url and settings.redis_urls:
        return True
    print(
        f"recs {command}: DEVCONNECT_MONGO_URL and DEVCONNECT_REDIS_URLS must be set",
        file=sys.stderr,
    )
    return False


def run_train(settings: Settings, argv: list[str]) -> int:
    from core.logs import configure_logging
    from core.runtime import open_stores
    from domain.feed.training import train_ranker

    argparse.ArgumentParser(
        prog="devconnect recs train",
        description="train on the feed's events now; promote only a better model",
    ).parse_args(argv)
    configure_logging("recs", settings.log_level, settings.log_format)
    if not _needs_stores(settings, "train"):
        return 2

    async def train() -> dict[str, Any]:
        stores = open_stores(settings)
        try:
            return (await train_ranker(stores)).as_dict()
        finally:
            await stores.close()

    result = asyncio.run(train())
    _say(f"{result['outcome']}: {result['reason']}")
    serving = result["serving"]
    _say(f"in service: {f'model v{serving}' if serving is not None else 'the priors (weights)'}")
    return 0


def _ndcg(info: Any) -> str:
    ndcg = info.metrics.get("heldOutNdcg") or {}
    if "new" not in ndcg:
        return "-"
    return f"{ndcg['new']:.4f} vs {ndcg['inService']:.4f}"


def run_models(settings: Settings, argv: list[str]) -> int:
    from core.runtime import open_stores
    from domain.feed.registry import ModelInfo, ModelRegistry

    parser = argparse.ArgumentParser(prog="devconnect recs models")
    parser.add_argument("--limit", type=int, default=20, help="newest first")
    args = parser.parse_args(argv)
    if not _needs_stores(settings, "models"):
        return 2

    async def listing() -> tuple[list[ModelInfo], int | None]:
        stores = open_stores(settings)
        try:
            registry = ModelRegistry(stores.db)
            return await registry.models(args.limit), await registry.promoted_version()
        finally:
            await stores.close()

    models, serving = asyncio.run(listing())
    if not models:
        print("no models yet: the feed ranks with the priors (weights)")
        return 0
    print("version  status       created (UTC)     NDCG@20 new vs served  queries  reason")
    for info in models:
        mark = "*" if info.version == serving else " "
        created = info.created_at.strftime("%Y-%m-%d %H:%M") if info.created_at else "-"
        print(
            f"{mark}{info.version:<7} {info.status:<12} {created:<17} {_ndcg(info):<22} "
            f"{info.metrics.get('trainQueries', '-')!s:<8} {info.reason}"
        )
    print("* in service" if serving is not None else "none in service: the priors (weights)")
    return 0


def run_rollback(settings: Settings, argv: list[str]) -> int:
    from core.logs import configure_logging
    from core.runtime import open_stores
    from domain.feed.registry import ModelRegistry, RegistryError

    parser = argparse.ArgumentParser(prog="devconnect recs rollback")
    parser.add_argument("version", type=int, help="the model version to serve from now on")
    parser.add_argument("--reason", default="", help="recorded on both models")
    args = parser.parse_args(argv)
    configure_logging("recs", settings.log_level, settings.log_format)
    if not _needs_stores(settings, "rollback"):
        return 2

    async def rollback() -> int | None:
        stores = open_stores(settings)
        try:
            return await ModelRegistry(stores.db).rollback(args.version, args.reason)
        finally:
            await stores.close()

    try:
        replaced = asyncio.run(rollback())
    except RegistryError as exc:
        print(f"recs rollback: {exc}", file=sys.stderr)
        return 1
    if replaced == args.version:
        _say(f"model v{args.version} is already in service")
    else:
        was = f"v{replaced}" if replaced is not None else "the priors"
        _say(
            f"model v{args.version} in service (was {was}); restd follows within "
            f"{settings.feed_model_check_s:g}s"
        )
    return 0


def main(settings: Settings, argv: list[str]) -> int:
    commands = {
        "precompute": run_precompute,
        "train": run_train,
        "models": run_models,
        "rollback": run_rollback,
    }
    if not argv or argv[0] not in commands:
        print(
            "usage: devconnect recs {eval,precompute,train,models,rollback} [options]",
            file=sys.stderr,
        )
        return 2
    return commands[argv[0]](settings, argv[1:])
