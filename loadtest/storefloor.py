"""The store's round trip, alone: the floor under a light-load commit.

``python -m loadtest.storefloor`` starts the embedded store (nx-27017) pinned to
core 0, as chatbench does, and from core 1 times, one at a time with a pause
between them: a ``ping``, a lone message inserted into the messages collection
with its indexes (what a commit of one message sends), and the same document
into a collection with no secondary index. With ``--mongo-url`` it measures that
server instead. Writes ``loadtest/results/storefloor-*.json``.

A message's end-to-end latency at light load is this insert plus chatd's own
hops (the frame in, the heads recorded in Redis, the frames out), so the insert
measured here is a floor no chatd change can go under.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from core import messages
from core.embedded import mongo_process
from core.mongo import ensure_indexes
from loadtest.chatbench.bench import CLIENT_CORE, SERVER_CORE, _percentiles, _pin

RESULTS = Path(__file__).resolve().parent / "results"
PAUSE_S = 0.005


async def measure(url: str, calls: int) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, retryWrites=False)
    db = client[f"storefloor{time.time_ns()}"]
    await ensure_indexes(db)
    result: dict[str, Any] = {}
    try:
        cases = (("ping", None), ("insertMessage", "messages"), ("insertPlain", "plain"))
        for name, collection in cases:
            latencies: list[float] = []
            for i in range(calls):
                doc = messages.new_document(
                    "a" * 24, "b" * 24, f"{name}{i}", "x" * 100, datetime.now(UTC), i + 1, i + 1
                )
                started = time.perf_counter()
                if collection is None:
                    await db.command("ping")
                else:
                    await db[collection].insert_many([doc], ordered=False)
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(PAUSE_S)
            result[name] = _percentiles(latencies)
    finally:
        await client.drop_database(db.name)
        await client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--mongo-url", help="measure this server instead of an embedded one")
    args = parser.parse_args()
    _pin(0, CLIENT_CORE)
    if args.mongo_url:
        timings = asyncio.run(measure(args.mongo_url, args.calls))
        store = "given"
    else:
        process = mongo_process(Path(tempfile.mkdtemp(prefix="storefloor-")))
        process.start()
        try:
            assert process.pid
            _pin(process.pid, SERVER_CORE)
            timings = asyncio.run(measure(f"mongodb://127.0.0.1:{process.port}/", args.calls))
        finally:
            process.stop()
        store = "nx-27017 (embedded)"
    report = {"store": store, "calls": args.calls, "pauseS": PAUSE_S, "latencyMs": timings}
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"storefloor-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"storefloor: wrote {path}")


if __name__ == "__main__":
    main()
