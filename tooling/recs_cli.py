"""``devconnect recs eval``: the feed's offline evaluation, a development tool.

It ranks on the MUSAE GitHub network, read in place (GPL-3.0, evaluation
only; see its SOURCE.md), and writes a JSON report and a short Markdown
summary. The operator's ``recs`` commands (precompute, train, models,
rollback) ship with the workers: ``workers/recs_cli.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / ".." / "shared" / "data" / "musae-github"
RESULTS_DIR = REPO_ROOT / "loadtest" / "results"
# Learned weights are derived from GPL-3.0 data (../shared/data/musae-github/SOURCE.md):
# they are written outside the package, for an operator to adopt through
# DEVCONNECT_FEED_WEIGHTS once the licence review allows, never shipped by default.
WEIGHTS_FILE = REPO_ROOT / "var" / "feed-weights.json"


def _say(message: str) -> None:
    print(f"recs: {message}", flush=True)


def markdown_report(report: dict[str, Any]) -> str:
    metrics = report["metrics"]
    aa = metrics["adamic_adar"]["ndcg@20"]
    lines = [
        "# Feed ranking evaluation (`devconnect recs eval`)",
        "",
        f"Data: {report['dataset']}. Split: seed {report['split']['seed']}, "
        f"{int(report['split']['hiddenFraction'] * 100)}% of the edges of users with degree >= "
        f"{report['split']['minDegree']} hidden; {report['split']['testUsers']} held-out users "
        f"({report['split']['hiddenEdgesOfTestUsers']} hidden edges). Weights learned on the "
        "training graph only (a further slice hidden as positives). Every method ranked in "
        "the same run; baselines rank every non-neighbour, ours ranks the feed's own bounded "
        f"candidate list (cap {report['config']['candidateCap']}). `priors` is the same ranker "
        "with the hand-set weights the package ships; `ours` uses the weights fitted on this "
        "split (derived from GPL-3.0 data, so not shipped: see domain/feed/weights.py).",
        "",
        "| method | Recall@10 | Recall@20 | NDCG@20 | MRR | NDCG@20 vs Adamic-Adar |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in metrics.items():
        vs = f"{(row['ndcg@20'] / aa - 1) * 100:+.1f}%" if aa else "n/a"
        lines.append(
            f"| {name} | {row['recall@10']:.4f} | {row['recall@20']:.4f} | "
            f"{row['ndcg@20']:.4f} | {row['mrr']:.4f} | {vs} |"
        )
    cold = report.get("coldStart")
    if cold:
        cold_aa = cold["metrics"]["adamic_adar"]["ndcg@20"]
        lines += [
            "",
            f"Cold start: {cold['users']} users with {cold['maxTrainingConnections']} or fewer "
            "training connections (not in the table above).",
            "",
            "| method | Recall@20 | NDCG@20 | MRR | NDCG@20 vs Adamic-Adar |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, row in cold["metrics"].items():
            vs = f"{(row['ndcg@20'] / cold_aa - 1) * 100:+.1f}%" if cold_aa else "n/a"
            lines.append(
                f"| {name} | {row['recall@20']:.4f} | {row['ndcg@20']:.4f} | "
                f"{row['mrr']:.4f} | {vs} |"
            )
    if "learnedMsPerUser" in report:
        lambdarank = report["training"].get("lambdarank", {})
        lines += [
            "",
            "`learned` is the learning-to-rank pipeline a deployment trains on its own "
            "connections (domain/feed/learning.py, LightGBM lambdarank): fitted here on "
            f"{lambdarank.get('queries')} training users' candidate lists "
            f"({lambdarank.get('rows')} rows, {lambdarank.get('seconds')} s), the hidden slice "
            "of their edges as the accepted connections and every other candidate as ignored. "
            f"Scoring per user: p50 {report['learnedMsPerUser']['p50']} ms, "
            f"p99 {report['learnedMsPerUser']['p99']} ms.",
        ]
    lines += [
        "",
        f"Candidate recall (hidden edges inside our candidate list): {report['candidateRecall']}.",
        f"Ranking cost in-process per user: p50 {report['oursMsPerUser']['p50']} ms, "
        f"p99 {report['oursMsPerUser']['p99']} ms. Run time {report['runtimeSeconds']} s.",
        "",
        f"Weights (logits): `{json.dumps(report['weights'])}`; learned: "
        f"{', '.join(report['training']['learnedFeatures'])}; priors (no signal in this data): "
        f"{', '.join(report['training']['priorFeatures'])}.",
        "",
    ]
    return "\n".join(lines)


def run_eval(_settings: Settings, argv: list[str]) -> int:
    from tooling.feed_evaluation import EvalConfig, evaluate

    parser = argparse.ArgumentParser(prog="devconnect recs eval")
    parser.add_argument(
        "--data", dest="data_dir", type=Path, default=DEFAULT_DATA_DIR, help="musae-github dir"
    )
    parser.add_argument("--seed", type=int, default=EvalConfig.seed)
    parser.add_argument("--users", dest="test_users", type=int, default=EvalConfig.test_users)
    parser.add_argument("--train-users", type=int, default=EvalConfig.train_users)
    parser.add_argument("--candidate-cap", type=int, default=EvalConfig.candidate_cap)
    parser.add_argument("--expand", dest="expand_max", type=int, default=EvalConfig.expand_max)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="report directory")
    parser.add_argument(
        "--write-weights", action="store_true", help=f"write the learned weights to {WEIGHTS_FILE}"
    )
    # Every option but these two is a field of EvalConfig, under the field's name.
    options = vars(parser.parse_args(argv))
    out: Path = options.pop("out")
    write_weights: bool = options.pop("write_weights")
    cfg = EvalConfig(**options)
    if not (cfg.data_dir / "musae_git_edges.csv.gz").is_file():
        print(f"recs eval: no musae-github data in {cfg.data_dir} (see --data)", file=sys.stderr)
        return 2
    report = evaluate(cfg, _say)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"recs-eval-{stamp}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    json_path.with_suffix(".md").write_text(markdown_report(report))
    _say(f"wrote {json_path} and {json_path.with_suffix('.md').name}")
    if write_weights:
        WEIGHTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        WEIGHTS_FILE.write_text(json.dumps(report["weights"], indent=2) + "\n")
        _say(f"wrote {WEIGHTS_FILE}; use it with DEVCONNECT_FEED_WEIGHTS=$(cat {WEIGHTS_FILE})")
    print(markdown_report(report))
    return 0
