"""The learned ranker end to end: training on a deployment's own feed events (through
the product's writer, ``FeedEvents``), the model registry, promotion only when the
held-out NDCG improves, a real Celery worker, and a running restd that serves the
promoted model, a pinned one and a rollback without a restart.

The synthetic deployments: each user was shown 40 candidates whose feature values
are random; the user requested (and got accepted) the ones a single feature marks
out, with noise, and had a few other requests rejected. The priors ignore
``popularity`` and ``recency`` (weights 0 and 0.4), so a model that learns either
beats them; labels inverted in the training slice make a model that loses.
"""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bson import ObjectId

from core.metrics import new_registry
from core.mongo import FEED_EVENTS, FEED_MODELS
from core.settings import Settings
from core.tasks import RECS_TRAIN_MODEL
from domain.feed.events import FeedEvents
from domain.feed.features import FEATURES
from domain.feed.learning import Query, fit
from domain.feed.metrics import TrainingMetrics
from domain.feed.models import Explain, FeedItem, FeedProfile
from domain.feed.registry import ModelRegistry, RegistryError
from domain.feed.training import train_ranker
from domain.feed.variants import Variants
from domain.feed.weights import default_weights
from tests.harness import ROOT, Services, celery_worker, make_settings, settings_env
from tests.restd_harness import Api, User, running_restd
from workers.app import make_celery

CANDIDATES = 40
# Small deployments train: 10 useful queries and 20 positives are enough here.
TRAINABLE = {
    "feed_training_min_queries": 10,
    "feed_training_min_positives": 20,
    "rate_signup_ip_count": 500,
    "connection_requests_per_day_free": 500,
}


async def seed(
    events: FeedEvents, users: int, feature: str, seed: int, *, inverted: bool = False
) -> None:
    """``users`` users' impressions and outcomes, written by the product's own writer."""
    rng = np.random.default_rng(seed)
    column = FEATURES.index(feature)

    async def one(x: np.ndarray, noise: np.ndarray, rejected: np.ndarray) -> None:
        user = str(ObjectId())
        items = [
            FeedItem(
                profile=FeedProfile(id=str(ObjectId()), name="candidate"),
                score=0.0,
                explain=Explain(
                    contributions={},
                    reasons=[],
                    values={name: float(v) for name, v in zip(FEATURES, row, strict=True)},
                ),
            )
            for row in x
        ]
        await events.impressions(user, items, "main", 0)
        signal = 1.0 - x[:, column] if inverted else x[:, column]
        for i, item in enumerate(items):
            if signal[i] + 0.2 * noise[i] > 0.95:
                await events.outcome("request", user, item.profile.id)
                await events.outcome("accept", user, item.profile.id)
            elif rejected[i]:
                await events.outcome("request", user, item.profile.id)
                await events.outcome("reject", user, item.profile.id)

    batch = [
        (rng.random((CANDIDATES, len(FEATURES))), rng.random(CANDIDATES), rng.random(CANDIDATES))
        for _ in range(users)
    ]
    await asyncio.gather(*(one(x, noise, r < 0.05) for x, noise, r in batch))


async def models(api: Api) -> dict[int, dict[str, Any]]:
    cursor = api.stores.db[FEED_MODELS].find({}, projection={"model": 0})
    return {int(doc["_id"]): doc async for doc in cursor}


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "recs", *args],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_worker_promotes_a_better_model_and_refuses_a_worse_one(
    services: Services, tmp_path: Path
) -> None:
    settings = make_settings(services, **TRAINABLE)
    async with running_restd(settings) as api:
        events = FeedEvents(api.stores.db)
        app = make_celery(settings)
        with celery_worker(settings, tmp_path / "worker.log"):
            await seed(events, 60, "popularity", 1)
            sent = app.send_task(RECS_TRAIN_MODEL)
            first = await asyncio.to_thread(sent.get, timeout=180)
            assert first["outcome"] == "promoted", first
            assert (first["version"], first["serving"]) == (1, 1)
            ndcg = first["metrics"]["heldOutNdcg"]
            assert ndcg["new"] > ndcg["inService"] + 0.1, ndcg  # the priors ignore popularity
            assert first["metrics"]["inServiceVersion"] is None

            # Then behaviour the training slice gets wrong (inverted labels, twice as many
            # users as before) while the most recent, held-out users behave as before.
            await seed(events, 120, "popularity", 2, inverted=True)
            await seed(events, 45, "popularity", 3)
            second = await asyncio.to_thread(app.send_task(RECS_TRAIN_MODEL).get, timeout=180)
        assert second["outcome"] == "refused", second
        assert (second["version"], second["serving"]) == (2, 1)
        ndcg = second["metrics"]["heldOutNdcg"]
        assert ndcg["new"] < ndcg["inService"], ndcg
        assert "does not beat model v1's" in second["reason"]

        stored = await models(api)
        assert stored[1]["status"] == "promoted"
        assert stored[2]["status"] == "refused"
        assert stored[2]["reason"] == second["reason"]
        assert stored[2]["metrics"]["inServiceVersion"] == 1
        assert stored[2]["features"] == list(FEATURES)
        assert stored[2]["window"]["cut"] <= stored[2]["window"]["last"]
        assert await ModelRegistry(api.stores.db).promoted_version() == 1
        app.close()


async def test_too_little_data_keeps_the_priors_and_says_so(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(services)  # the shipped minimums: 100 queries, 200 positives
    async with running_restd(settings) as api:
        await seed(FeedEvents(api.stores.db), 8, "popularity", 4)
        done = cli(settings, "train")
        assert done.returncode == 0, done.stderr
        assert "too_little_data: too little data to train" in done.stdout
        assert "keeping the priors" in done.stdout
        assert "in service: the priors (weights)" in done.stdout

        registry = new_registry()
        metrics = TrainingMetrics(registry)
        with caplog.at_level(logging.WARNING, logger="domain.feed.training"):
            result = await train_ranker(api.stores, metrics)
        assert result.outcome == "too_little_data"
        assert (result.version, result.serving) == (None, None)
        assert "(need 100)" in result.reason and "(need 200)" in result.reason
        assert any("keeping the priors" in r.getMessage() for r in caplog.records)
        value = registry.get_sample_value(
            "feed_training_runs_total", {"outcome": "too_little_data"}
        )
        assert value == 1.0
        assert await models(api) == {}
        listing = cli(settings, "models")
        assert "no models yet" in listing.stdout, listing


async def _served(api: Api, user: User) -> tuple[list[dict[str, Any]], set[int | None]]:
    """A fresh first page and the model versions its impressions recorded."""
    collection = api.stores.db[FEED_EVENTS]
    query = {"kind": "impression", "userId": user.id}
    before = await collection.count_documents(query)
    resp = await user.http.get("/api/feed", params={"limit": 10})
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert items
    for _ in range(200):  # impressions are written off the page's path
        if await collection.count_documents(query) >= before + len(items):
            found = await collection.find(query).sort("_id", -1).limit(len(items)).to_list()
            return items, {doc["modelVersion"] for doc in found}
        await asyncio.sleep(0.05)
    raise AssertionError("the page's impressions were not recorded")


async def _until_served(api: Api, user: User, version: int | None) -> list[dict[str, Any]]:
    """restd checks the registry every feed_model_check_s: a few pages at most."""
    for _ in range(50):
        items, versions = await _served(api, user)
        if versions == {version}:
            return items
        await asyncio.sleep(0.1)
    raise AssertionError(f"restd never served model {version}")


async def _users_in(api: Api, settings: Settings, wanted: set[str]) -> dict[str, User]:
    variants = Variants(
        default_weights(),
        settings.feed_variants,
        settings.feed_variant_salt,
        settings.feed_variant_models,
    )
    found: dict[str, User] = {}
    while set(found) != wanted:
        user = await api.signup()
        found.setdefault(variants.assign(user.id), user)
    return found


async def test_restd_serves_promotions_pins_and_rollbacks_without_a_restart(
    services: Services,
) -> None:
    settings = make_settings(
        services,
        feed_variants={"main": {}, "pinned": {}},
        feed_variant_models={"pinned": 1},
        feed_model_check_s=0.2,
        **TRAINABLE,
    )
    async with running_restd(settings) as api:
        users = await _users_in(api, settings, {"main", "pinned"})
        main, pinned = users["main"], users["pinned"]
        friend = await api.signup("Friend")
        for user in (main, pinned, *[await api.signup() for _ in range(4)]):
            await api.connect(friend, user)

        # No model yet: both rank with weights (the pinned version does not exist).
        items = await _until_served(api, main, None)
        assert set(items[0]["explain"]["contributions"]) == set(FEATURES)
        await _until_served(api, pinned, None)

        events = FeedEvents(api.stores.db)
        await seed(events, 60, "popularity", 5)
        first = await train_ranker(api.stores)
        assert (first.outcome, first.version) == ("promoted", 1), first
        items = await _until_served(api, main, 1)
        model = await ModelRegistry(api.stores.db).load(1)
        for item in items:
            parts = item["explain"]["contributions"]
            assert list(parts) == [*FEATURES, "bias"]
            assert math.fsum(parts.values()) == item["score"]  # exactly, as shown
            x = np.array([[item["explain"]["values"][name] for name in FEATURES]])
            expected = np.round(model.contributions(x)[0], 6)
            np.testing.assert_allclose(list(parts.values()), expected, atol=1e-9)
            assert item["explain"]["reasons"]  # the human reasons stay
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)
        await _until_served(api, pinned, 1)

        # Behaviour changes (recency now decides); the next model learns it and is promoted.
        await seed(events, 120, "recency", 6)
        second = await train_ranker(api.stores)
        assert (second.outcome, second.version) == ("promoted", 2), second
        await _until_served(api, main, 2)
        await _until_served(api, pinned, 1)  # pinned stays on its version

        done = cli(settings, "rollback", "1", "--reason", "v2 hurt the accept rate")
        assert done.returncode == 0, done.stderr
        assert "model v1 in service (was v2)" in done.stdout
        await _until_served(api, main, 1)
        stored = await models(api)
        assert stored[1]["status"] == "promoted"
        assert (stored[2]["status"], stored[2]["reason"]) == (
            "rolled_back",
            "v2 hurt the accept rate",
        )
        listing = cli(settings, "models")
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        assert any(line.startswith("*1 ") and "promoted" in line for line in lines), lines
        assert any(line.startswith(" 2 ") and "rolled_back" in line for line in lines), lines
        unknown = cli(settings, "rollback", "7")
        assert unknown.returncode == 1
        assert "no feed model version 7" in unknown.stderr


async def test_old_models_lose_their_text_but_never_the_served_or_a_pinned_one(
    services: Services,
) -> None:
    rng = np.random.default_rng(7)
    x = rng.random((400, len(FEATURES)))
    y = (x[:, 0] > 0.8).astype(np.float64)
    queries = [Query(x[i : i + 40], y[i : i + 40]) for i in range(0, 400, 40)]
    model = fit(queries, rounds=3)
    async with running_restd(make_settings(services)) as api:
        registry = ModelRegistry(api.stores.db)
        for status in ("promoted", "refused", "refused", "refused", "refused"):
            await registry.add(model, status=status, reason="", metrics={}, window={})
        assert await registry.prune(keep=2, pinned={2}) == 1  # v3: not promoted, pinned or new
        with pytest.raises(RegistryError, match="pruned"):
            await registry.load(3)
        with pytest.raises(RegistryError, match="pruned"):
            await registry.rollback(3)
        for version in (1, 2, 4, 5):
            await registry.load(version)
        listed = {info.version: info for info in await registry.models()}
        assert [v for v, info in listed.items() if not info.has_text] == [3]
        assert await registry.promoted_version() == 1


def test_variant_models_are_checked_when_the_feed_starts() -> None:
    weights = default_weights()
    variants = Variants(weights, {"a": {}, "b": {"skills": 2.0}}, "s", {"a": 3, "b": "weights"})
    assert (variants.model_for("a"), variants.model_for("b")) == (3, "weights")
    assert Variants(weights, {"a": {}}, "s").model_for("a") == "promoted"
    with pytest.raises(ValueError, match="unknown variants"):
        Variants(weights, {"a": {}}, "s", {"c": 1})
    for bad in (0, -1, True, "latest"):
        with pytest.raises(ValueError, match="a model version"):
            Variants(weights, {"a": {}}, "s", {"a": bad})
