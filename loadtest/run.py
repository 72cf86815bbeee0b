"""``make loadtest``: a bounded headless Locust run against the local stack.

Uses the stack already answering on the restd port (``make run``); if none
answers, starts ``devconnect up`` itself (its data under a temporary
directory), waits for readiness, runs Locust, and stops the stack by its PID
afterwards. Locust writes its CSV files and HTML report under
``loadtest/results/``; a short summary of the chat and REST figures is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def stack(host: str, chat_port: int) -> Iterator[None]:
    """Yield with a stack answering at ``host``; start (and later stop) one if needed."""
    if ready(host):
        print(f"[loadtest] using the stack already running at {host}", flush=True)
        yield
        return
    with tempfile.TemporaryDirectory(prefix="devconnect-loadtest-") as tmp:
        log_path = Path(tmp) / "stack.log"
        env = {
            **os.environ,
            "DEVCONNECT_VAR_DIR": tmp,
            "DEVCONNECT_LOG_LEVEL": "WARNING",
            # The load generator plays a proxy on loopback: each simulated user's
            # X-Real-IP is honoured, so per-IP limits apply per simulated user.
            "DEVCONNECT_TRUSTED_PROXIES": "127.0.0.1/32",
        }
        print(f"[loadtest] no stack at {host}: starting `devconnect up` (log {log_path})")
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "core.cli", "up"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            chat = f"http://127.0.0.1:{chat_port}"
            while not (ready(host) and ready(chat)):
                if proc.poll() is not None:
                    raise SystemExit(f"devconnect up exited:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"stack not ready within {READY_TIMEOUT_S:.0f}s")
                time.sleep(0.5)
            print("[loadtest] stack is up", flush=True)
            yield
        finally:
            # devconnect up stops its children itself on SIGINT/SIGTERM.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            print("[loadtest] stack stopped", flush=True)


def summary(prefix: Path) -> str:
    """The chat and REST lines of Locust's stats CSV, as a small Markdown table."""
    path = Path(f"{prefix}_stats.csv")
    if not path.exists():
        return "(no stats file)"
    lines = [
        "| type | name | requests | failures | p50 ms | p95 ms | p99 ms | max ms | req/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            lines.append(
                f"| {row['Type']} | {row['Name']} | {row['Request Count']} | "
                f"{row['Failure Count']} | {row['50%']} | {row['95%']} | {row['99%']} | "
                f"{float(row['Max Response Time']):.0f} | {float(row['Requests/s']):.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=float, default=5)
    parser.add_argument("--duration", default="60s", help="Locust --run-time, e.g. 60s, 5m")
    parser.add_argument("--host", default="http://127.0.0.1:8080")
    parser.add_argument("--chat-url", default="ws://127.0.0.1:8081/ws")
    parser.add_argument("--prefix", default="loadtest/results/locust", help="CSV/HTML prefix")
    args = parser.parse_args(argv)

    prefix = (ROOT / args.prefix).resolve()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    chat_port = int(args.chat_url.rsplit(":", 1)[1].split("/", 1)[0])
    locust = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtest" / "locustfile.py"),
        "--headless",
        "--host",
        args.host,
        "--chat-url",
        args.chat_url,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        args.duration,
        "--stop-timeout",
        "10",
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--html",
        f"{prefix}_report.html",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with stack(args.host, chat_port):
        started = time.monotonic()
        code = subprocess.call(locust, cwd=ROOT, env=env)
        print(f"[loadtest] locust finished in {time.monotonic() - started:.0f}s (exit {code})")
    table = summary(prefix)
    stated = (
        f"Load: {args.users} users (ChatPair:ApiUser = 3:1), spawn rate {args.spawn_rate}/s, "
        f"{args.duration}, against {args.host} and {args.chat_url}.\n\n"
    )
    Path(f"{prefix}_summary.md").write_text(stated + table + "\n")
    print(stated + table)
    print(f"[loadtest] report: {prefix}_report.html, CSV: {prefix}_*.csv")
    # Locust exits 1 when any request failed; the report says which; keep that signal.
    return code


if __name__ == "__main__":
    raise SystemExit(main())
