"""restd's memory under hostile bodies and a login flood (a benchmark, not a test).

`python -m loadtest.restd_memory` (`make bench-memory`). Starts an embedded
store (nx-27017) and a redis-server on free ports, then restd as a real process
(``python -m core.cli restd``), all on 127.0.0.1 and each stopped by its PID.
A thread samples restd's ``VmRSS`` and ``VmHWM`` from ``/proc/<pid>/status``
every 20 ms, and each phase reports the peak RSS seen while it ran:

1. idle: restd up, four users signed up, nothing in flight;
2. hostile bodies: 8 connections in parallel each announce and start sending a
   32 MiB body to ``POST /api/auth/login``; restd must refuse them with 413
   from the ``Content-Length`` alone, before buffering the body (status codes
   and the bytes each client managed to send are counted);
3. a login flood: 1,000 attempts with wrong passwords, half for the known
   emails and half for unknown ones, 32 in flight at a time.

Two restd configurations are measured, each a fresh process on the same store:
``defaults`` (the shipped rate limits, so most of the flood is refused before
any hashing) and ``limits-raised`` (every login budget out of reach, so each
attempt reaches argon2 and only the hashing budget bounds memory).
The JSON lands in ``loadtest/results/restd-memory-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.embedded import ManagedProcess, free_port, mongo_process, redis_process
from core.settings import Settings, settings_to_env

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadtest" / "results"
SAMPLE_INTERVAL_S = 0.020
IDLE_S = 2.0
HOSTILE_BODIES = 8
HOSTILE_BODY_BYTES = 32 * 1024 * 1024
HOSTILE_CHUNK_BYTES = 64 * 1024
FLOOD_ATTEMPTS = 1_000
FLOOD_CONCURRENCY = 32
KNOWN_USERS = 4
PASSWORD = "correct horse battery staple"
MIB = 1024 * 1024
GENEROUS = 1_000_000
RAISED_LIMITS: dict[str, object] = {
    "rate_login_ip_count": GENEROUS,
    "rate_login_email_count": GENEROUS,
    "rate_login_email_ip_count": GENEROUS,
    "rate_login_device_count": GENEROUS,
    "rate_signup_ip_count": GENEROUS,
}


def proc_memory_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB from /proc/<pid>/status, or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if len(values) < 2:
        return None
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Sampler:
    """Samples one PID's RSS every 20 ms in a thread; ``mark`` starts a new phase window."""

    pid: int
    samples: int = 0
    _peak_kib: int = 0
    _last: tuple[int, int] = (0, 0)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            got = proc_memory_kib(self.pid)
            if got is not None:
                with self._lock:
                    self._last = got
                    self._peak_kib = max(self._peak_kib, got[0])
                    self.samples += 1
            self._stop.wait(SAMPLE_INTERVAL_S)

    def mark(self) -> None:
        with self._lock:
            self._peak_kib = self._last[0]

    def window(self) -> dict[str, float]:
        """Peak RSS since the last mark, the RSS now and the process's high-water mark."""
        with self._lock:
            return {
                "peak_rss_mib": round(self._peak_kib / 1024, 1),
                "rss_now_mib": round(self._last[0] / 1024, 1),
                "vm_hwm_mib": round(self._last[1] / 1024, 1),
            }

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


async def hostile_body(port: int) -> dict[str, Any]:
    """Announce a 32 MiB login body and send it until restd answers; returns what happened."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /api/auth/login HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {HOSTILE_BODY_BYTES}\r\n\r\n"
    ).encode()
    writer.write(head)
    status_line = asyncio.ensure_future(reader.readline())
    chunk = b"x" * HOSTILE_CHUNK_BYTES
    sent = 0
    write_error = None
    try:
        while sent < HOSTILE_BODY_BYTES and not status_line.done():
            writer.write(chunk)
            # A server that stopped reading leaves drain waiting: give up after a while.
            await asyncio.wait_for(writer.drain(), 10)
            sent += len(chunk)
    except (ConnectionError, TimeoutError) as exc:
        write_error = type(exc).__name__
    # restd closes the connection right after its 413, with the client's bytes still
    # unread: its kernel answers those with a reset, which can discard the 413 from
    # the client's buffer before it is read. Such a refusal counts as "reset" here;
    # restd's own access log (counted by the caller) has every answer it wrote.
    status = "reset"
    try:
        line = await asyncio.wait_for(status_line, 30)
        parts = line.split()
        if len(parts) > 1:
            status = parts[1].decode()
    except (ConnectionError, TimeoutError, ValueError):
        pass
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return {"status": status, "bytes_sent": sent, "write_error": write_error}


async def login_flood(base: str, known: list[str]) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    gate = asyncio.Semaphore(FLOOD_CONCURRENCY)
    limits = httpx.Limits(max_connections=FLOOD_CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, timeout=60.0, limits=limits) as http:

        async def attempt(i: int) -> None:
            email = known[i % len(known)] if i % 2 == 0 else f"nobody{i}@example.com"
            async with gate:
                try:
                    resp = await http.post(
                        "/api/auth/login", json={"email": email, "password": f"wrong-{i}"}
                    )
                    statuses[str(resp.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1

        started = time.monotonic()
        await asyncio.gather(*(attempt(i) for i in range(FLOOD_ATTEMPTS)))
        elapsed = time.monotonic() - started
    return {
        "attempts": FLOOD_ATTEMPTS,
        "concurrency": FLOOD_CONCURRENCY,
        "statuses": dict(sorted(statuses.items())),
        "elapsed_s": round(elapsed, 2),
    }


async def signup_users(base: str) -> list[str]:
    emails = []
    async with httpx.AsyncClient(base_url=base, timeout=60.0) as http:
        for n in range(KNOWN_USERS):
            email = f"mem{n}-{uuid.uuid4().hex[:6]}@example.com"
            resp = await http.post(
                "/api/auth/signup", json={"name": f"Mem {n}", "email": email, "password": PASSWORD}
            )
            resp.raise_for_status()
            emails.append(email)
    return emails


def logged_413s(log_path: Path) -> int:
    """The 413s for /api/auth/login in restd's access log so far."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return 0
    return text.count(" 413 POST /api/auth/login ")


def restd_settings(mongo_url: str, redis_url: str, workdir: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "mongo_url": mongo_url,
        "mongo_db": f"restdmem{uuid.uuid4().hex[:8]}",
        "redis_urls": [redis_url],
        "redis_key_prefix": f"restdmem{uuid.uuid4().hex[:8]}:",
        "cookie_secure": False,
        "log_format": "text",
        "var_dir": workdir / "var",
        "restd_port": free_port(),
        "restd_metrics_port": free_port(),
        "chatd_port": free_port(),
        "chatd_metrics_port": free_port(),
        "worker_metrics_port": 0,
        "smtp_port": free_port(),
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def process_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVCONNECT_")}
    env.update(settings_to_env(settings))
    env["PYTHONPATH"] = str(ROOT)
    return env


async def measure(name: str, settings: Settings, workdir: Path) -> dict[str, Any]:
    log_path = workdir / f"restd-{name}.log"
    restd = ManagedProcess(
        "restd",
        [sys.executable, "-m", "core.cli", "restd"],
        settings.restd_port,
        log_path,
        process_env(settings),
    )
    restd.launch()
    try:
        restd.wait_ready()
        assert restd.pid is not None
        sampler = Sampler(restd.pid).start()
        try:
            base = f"http://127.0.0.1:{settings.restd_port}"
            known = await signup_users(base)
            await asyncio.sleep(0.5)
            sampler.mark()
            await asyncio.sleep(IDLE_S)
            idle = sampler.window()
            print(f"[{name}] idle: {idle}", flush=True)

            sampler.mark()
            before = logged_413s(log_path)
            results = await asyncio.gather(
                *(hostile_body(settings.restd_port) for _ in range(HOSTILE_BODIES))
            )
            await asyncio.sleep(0.5)
            bodies: dict[str, Any] = {
                "bodies": HOSTILE_BODIES,
                "announced_bytes_each": HOSTILE_BODY_BYTES,
                "client_statuses": dict(Counter(str(r["status"]) for r in results)),
                "restd_logged_413": logged_413s(log_path) - before,
                "max_bytes_sent_by_a_client": max(r["bytes_sent"] for r in results),
                "write_errors": dict(Counter(str(r["write_error"]) for r in results)),
                **sampler.window(),
            }
            print(f"[{name}] hostile bodies: {bodies}", flush=True)

            sampler.mark()
            flood = await login_flood(base, known)
            await asyncio.sleep(0.5)
            flood.update(sampler.window())
            print(f"[{name}] login flood: {flood}", flush=True)
            return {
                "name": name,
                "settings": {
                    "auth_body_max_bytes": settings.auth_body_max_bytes,
                    "password_hash_memory_budget_mib": settings.password_hash_memory_budget_mib,
                    "rate_login_ip_count": settings.rate_login_ip_count,
                    "rate_login_email_count": settings.rate_login_email_count,
                    "rate_login_email_ip_count": settings.rate_login_email_ip_count,
                },
                "idle": idle,
                "hostile_bodies": bodies,
                "login_flood": flood,
                "samples": sampler.samples,
            }
        finally:
            sampler.stop()
    finally:
        restd.stop()


async def run(workdir: Path) -> dict[str, Any]:
    mongo = mongo_process(workdir / "mongo", log_path=workdir / "mongo.log")
    redis = redis_process(log_path=workdir / "redis.log")
    mongo.start()
    try:
        redis.start()
        try:
            mongo_url = f"mongodb://127.0.0.1:{mongo.port}"
            redis_url = f"redis://127.0.0.1:{redis.port}/0"
            configs = []
            for name, extra in (("defaults", {}), ("limits-raised", RAISED_LIMITS)):
                settings = restd_settings(mongo_url, redis_url, workdir, **extra)
                configs.append(await measure(name, settings, workdir))
            return {
                "benchmark": "restd-memory",
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                },
                "sample_interval_ms": int(SAMPLE_INTERVAL_S * 1000),
                "configs": configs,
            }
        finally:
            redis.stop()
    finally:
        mongo.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="restd-memory-"))
    try:
        result = asyncio.run(run(workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"restd-memory-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
