"""``devconnect up``: the whole stack on embedded defaults, on 127.0.0.1.

Starts the embedded MongoDB-wire server, redis-server and the SMTP sink (each
only when no URL is configured), runs the migrations, then restd, chatd, the
Celery worker and beat as child processes whose lines it prefixes with their
names. Ctrl-C or SIGTERM stops every process it started, by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import IO

from core.embedded import (
    ManagedProcess,
    mongo_process,
    port_open,
    redis_process,
    smtp_process,
)
from core.settings import Settings

READY_TIMEOUT_S = 90.0
CHILD_STOP_TIMEOUT_S = 15.0

APP_PROCESSES = ("restd", "chatd", "worker", "beat", "simulator")

# Development credentials shared by restd and the local PhonePe simulator (the
# simulator's own fallbacks); production must set real ones, and payments fail
# closed (503, webhooks 401) when they are missing.
SIMULATOR_ENV = {
    "DEVCONNECT_PHONEPE_CLIENT_ID": "DEVCONNECT_SIM",
    "DEVCONNECT_PHONEPE_CLIENT_SECRET": "sim-secret",
    "DEVCONNECT_PHONEPE_MERCHANT_ID": "DEVCONNECTSIM",
    "DEVCONNECT_PHONEPE_WEBHOOK_USERNAME": "devconnect",
    "DEVCONNECT_PHONEPE_WEBHOOK_PASSWORD": "simpass123",
}


def _argv(name: str) -> list[str]:
    if name == "simulator":
        return [sys.executable, "-m", "restd.payments.simulator"]
    return [sys.executable, "-m", "core.cli", name]


def _say(text: str) -> None:
    print(f"[up] {text}", flush=True)


def _pump(name: str, stream: IO[bytes]) -> None:
    width = max(len(n) for n in APP_PROCESSES)
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"[{name:<{width}}] {raw.decode(errors='replace')}")
        sys.stdout.flush()


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.var = settings.var_dir.resolve()
        self.lock_path = self.var / "up.pid"
        self.services: list[ManagedProcess] = []
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self._stopping = threading.Event()

    # -- single instance -------------------------------------------------------------
    def _claim_lock(self) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        if self.lock_path.exists():
            try:
                other = int(self.lock_path.read_text().strip())
                os.kill(other, 0)
            except (ValueError, ProcessLookupError, PermissionError):
                pass  # stale lock from a process that died without cleaning up
            else:
                raise SystemExit(
                    f"DevConnect is already running (pid {other}); stop it with Ctrl-C "
                    f"or `kill {other}` before starting another"
                )
        busy = [
            p
            for p in (self.settings.restd_port, self.settings.chatd_port, self.settings.smtp_port)
            if port_open(p)
        ]
        if busy:
            raise SystemExit(
                f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use by another "
                "program; free them or set DEVCONNECT_RESTD_PORT / CHATD_PORT / SMTP_PORT"
            )
        self.lock_path.write_text(str(os.getpid()))

    # -- start ------------------------------------------------------------------------
    def start(self) -> None:
        self._claim_lock()
        logs = self.var / "log"
        logs.mkdir(parents=True, exist_ok=True)
        env = {"DEVCONNECT_VAR_DIR": str(self.var)}
        if not self.settings.mongo_url:
            mongo = mongo_process(self.var / "mongo", log_path=logs / "mongo.log").start()
            self.services.append(mongo)
            env["DEVCONNECT_MONGO_URL"] = f"mongodb://127.0.0.1:{mongo.port}"
            _say(
                f"embedded MongoDB-wire server (nx-27017) on 127.0.0.1:{mongo.port}, "
                f"data in {self.var / 'mongo'}"
            )
        if not self.settings.redis_urls:
            redis = redis_process(
                data_dir=self.var / "redis", persist=True, log_path=logs / "redis.log"
            ).start()
            self.services.append(redis)
            env["DEVCONNECT_REDIS_URLS"] = f"redis://127.0.0.1:{redis.port}/0"
            _say(f"redis-server on 127.0.0.1:{redis.port}")
        smtp = smtp_process(
            self.var / "mail", port=self.settings.smtp_port, log_path=logs / "smtp.log"
        ).start()
        self.services.append(smtp)
        _say(f"SMTP sink on 127.0.0.1:{smtp.port}, mail saved under {self.var / 'mail'}")
        if self.settings.env != "production":
            env.setdefault("DEVCONNECT_COOKIE_SECURE", "false")  # plain http on localhost
            for key, value in SIMULATOR_ENV.items():
                if key not in os.environ:
                    env[key] = value
        self.env = {**os.environ, **env}

        migrate = subprocess.run(
            [sys.executable, "-m", "core.cli", "migrate"], env=self.env, check=False
        )
        if migrate.returncode != 0:
            raise SystemExit("migrations failed; see the lines above")

        for name in APP_PROCESSES:
            if name == "simulator" and self.settings.env == "production":
                continue
            proc = subprocess.Popen(
                _argv(name),
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            assert proc.stdout is not None
            threading.Thread(target=_pump, args=(name, proc.stdout), daemon=True).start()
            self.children[name] = proc

        host = self.settings.host
        urls = {
            "restd": f"http://{host}:{self.settings.restd_port}",
            "chatd": f"http://{host}:{self.settings.chatd_port}",
        }
        deadline = time.monotonic() + READY_TIMEOUT_S
        for name, url in urls.items():
            while not self._ready(url + "/readyz"):
                self._check_children()
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} was not ready within {READY_TIMEOUT_S:.0f}s")
                time.sleep(0.25)
        _say("DevConnect is up:")
        _say(f"  REST API     {urls['restd']}/api   (OpenAPI: {urls['restd']}/api/openapi.json)")
        _say(f"  chat socket  ws://{host}:{self.settings.chatd_port}/ws")
        _say(f"  metrics      {urls['restd']}/metrics  {urls['chatd']}/metrics")
        _say(f"  mail         {self.var / 'mail'}  (each message a .eml file)")
        _say(f"  PhonePe sim  http://127.0.0.1:{self.settings.phonepe_simulator_port}")
        _say("Ctrl-C stops everything.")

    @staticmethod
    def _ready(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def _check_children(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None and not self._stopping.is_set():
                raise SystemExit(f"{name} exited with code {proc.returncode}")

    # -- stop -------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()
        for proc in self.children.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT_S
        for proc in self.children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for service in reversed(self.services):
            service.stop()
        with contextlib.suppress(FileNotFoundError):
            if self.lock_path.read_text().strip() == str(os.getpid()):
                self.lock_path.unlink()
        _say("stopped every process it started")

    def wait(self) -> None:
        while not self._stopping.is_set():
            self._check_children()
            time.sleep(0.5)


def run(settings: Settings) -> int:
    stack = Stack(settings)

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        stack.start()
        stack.wait()
    except KeyboardInterrupt:
        _say("stopping")
    except SystemExit as exc:
        _say(str(exc))
        code = 1
    finally:
        # Started-but-not-claimed (lock refused) stacks have nothing to stop.
        if stack.children or stack.services:
            stack.stop()
    return code


if __name__ == "__main__":
    from core.settings import load_settings

    raise SystemExit(run(load_settings()))


def run_cli(settings: Settings, _argv: list[str]) -> int:
    return run(settings)
