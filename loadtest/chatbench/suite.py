"""`make bench`: the chat benchmark suite; results saved under loadtest/results/.

1. The three target loads on one node and one shard: (200 sockets, 500 msg/s),
   (1,000, 1,000/s), (2,000, 2,000/s).
2. A saturation search at 1,000 sockets: the highest offered rate whose p99
   end-to-end stays under the 20 ms objective with nothing lost.
3. chatd's memory per idle socket at 10,000 sockets.
4. One node and one shard against two nodes and two shards at the same load
   (every server on the same core, so the comparison shows routing cost, not
   scale-out), with Redis commands per message from INFO commandstats.

Options shrink it for a quick look: ``--quick`` runs short loads and 2,000 idle
sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path
from typing import Any

from loadtest.chatbench.bench import run_idle, run_load

RESULTS = Path(__file__).resolve().parents[1] / "results"
OBJECTIVE_P99_MS = 20.0


def _summary(result: dict[str, Any]) -> str:
    e2e = result["endToEndLatencyMs"]
    return (
        f"{result['nodes']}n/{result['shards']}s {result['sockets']} sockets "
        f"@{result['offeredRate']:.0f}/s: achieved {result['achievedRate']}/s, "
        f"e2e p50 {e2e['p50']} p99 {e2e['p99']} ms, lost {result['lostAcked']}, "
        f"unacked {result['unacked']}, chatd {result['chatdCpuUsPerMessage']} us/msg, "
        f"store {result['storeCpuUsPerMessage']} us/msg, "
        f"redis cmds/msg {result['redisCommandsPerMessage']}"
    )


def _ok(result: dict[str, Any]) -> bool:
    p99 = result["endToEndLatencyMs"]["p99"]
    return (
        p99 is not None
        and p99 < OBJECTIVE_P99_MS
        and result["lostAcked"] == 0
        and result["unacked"] == 0
    )


async def suite(quick: bool) -> dict[str, Any]:
    duration = 5.0 if quick else 15.0
    report: dict[str, Any] = {
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "objectiveP99Ms": OBJECTIVE_P99_MS,
        "targets": [],
        "saturation": [],
        "cluster": [],
    }
    for sockets, rate in ((200, 500.0), (1000, 1000.0), (2000, 2000.0)):
        result = await run_load(sockets, rate, duration)
        print(_summary(result), flush=True)
        report["targets"].append(result)

    best = None
    for rate in (500.0, 750.0, 1000.0, 1250.0, 1500.0, 2000.0, 2500.0, 3000.0):
        result = await run_load(1000, rate, 5.0 if quick else 8.0)
        print("saturation:", _summary(result), flush=True)
        report["saturation"].append(result)
        if _ok(result):
            best = rate
        elif best is not None or rate >= 1000.0:
            break
    report["highestRateWithinObjective"] = best

    idle = await run_idle(2000 if quick else 10_000)
    print(f"idle: {idle}", flush=True)
    report["idle"] = idle

    for nodes, shards in ((1, 1), (2, 2)):
        result = await run_load(1000, 800.0, duration, nodes=nodes, shards=shards)
        print("cluster:", _summary(result), flush=True)
        report["cluster"].append(result)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(suite(args.quick))
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "chatbench-quick" if args.quick else "chatbench"
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
