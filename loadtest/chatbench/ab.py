"""A before/after of chatd settings in one run: the same points, alternated.

``python -m loadtest.chatbench.ab --before inbox_busy_flush_interval_ms=50
--points 1000x1000,2000x2000 --rounds 2`` runs every point with the settings
named (``before``) and with the defaults, or those named by ``--after``
(``after``), alternating, each on a
fresh stack (chatbench's ``run_load``), and writes the results under
loadtest/results/ as ``chatbench-ab-*.json`` with a one-line summary per run.
Alternating spreads the machine's drift over both sides; compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.chatbench.bench import run_load

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _setting(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    e2e = run["endToEndLatencyMs"]
    return {
        "p50Ms": e2e["p50"],
        "p99Ms": e2e["p99"],
        "chatdUsPerMsg": run["chatdCpuUsPerMessage"],
        "storeUsPerMsg": run["storeCpuUsPerMessage"],
        "serverCore": run["serverCoreUtilization"],
        "lost": run["lostAcked"] + run["unacked"],
    }


async def compare(
    before: dict[str, Any],
    after: dict[str, Any],
    points: list[tuple[int, float]],
    rounds: int,
    duration: float,
) -> list[dict[str, Any]]:
    runs = []
    for sockets, rate in points:
        for _ in range(rounds):
            for side, overrides in (("before", before), ("after", after)):
                result = await run_load(sockets, rate, duration, overrides=overrides)
                row = {"sockets": sockets, "rate": rate, "side": side, **_summary(result)}
                print(json.dumps(row), flush=True)
                runs.append({**row, "result": result})
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.chatbench.ab")
    parser.add_argument("--before", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--after", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--points", default="1000x1000,2000x2000", help="SOCKETSxRATE,...")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args(argv)
    before = dict(_setting(s) for s in args.before)
    after = dict(_setting(s) for s in args.after)
    points = [(int(s), float(r)) for s, r in (p.split("x") for p in args.points.split(","))]
    runs = asyncio.run(compare(before, after, points, args.rounds, args.duration))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"chatbench-ab-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    result = {"before": before, "after": after or "defaults", "runs": runs}
    path.write_text(json.dumps(result, indent=1))
    print(f"chatbench-ab: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
