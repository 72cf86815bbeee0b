"""``devconnect up``: the whole stack on embedded defaults, on 127.0.0.1.

Starts the embedded MongoDB-wire server, redis-server and the SMTP sink (each
only when no URL is configured), runs the migrations, then restd, chatd, the
Celery worker and beat as child processes whose lines it prefixes with their
names. Ctrl-C or SIGTERM stops every process it started, by PID.

A stop cannot be cut short: signal handlers only set flags that the main
thread polls, so a second Ctrl-C (or a SIGTERM during the stop) hurries the
stop (SIGKILL after HURRY_GRACE_S) instead of abandoning children mid-way.
Nothing outlives a ``kill -9`` of ``up`` either: every child gets
PR_SET_PDEATHSIG, and var/up.json records each child's PID, start time and
command line, so the next start finds whatever survived and stops it, and
never a process that merely reuses one of those PIDs. var/up.pid is the
single-instance lock, held with flock so that the kernel releases it however
its holder dies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from types import FrameType
from typing import IO, Any

from core.embedded import (
    HURRY_GRACE_S,
    NX_PID_FILE,
    STOP_TIMEOUT_S,
    ManagedProcess,
    ProcessRecord,
    StartAborted,
    boot_id,
    die_with_parent,
    mongo_process,
    port_open,
    proc_cmdline,
    proc_start_time,
    redis_process,
    smtp_process,
    stop_pids,
)
from core.settings import Settings

READY_TIMEOUT_S = 90.0
CHILD_STOP_TIMEOUT_S = 15.0  # chatd drains its sockets within DEVCONNECT_DRAIN_TIMEOUT_S
SERVICE_STOP_TIMEOUT_S = 10.0
RECLAIM_TIMEOUT_S = 10.0  # for the leftovers of an earlier run, before SIGKILL
POLL_S = 0.1
STATE_VERSION = 1

APP_PROCESSES = ("restd", "chatd", "worker", "beat", "simulator")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

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


class StopRequested(Exception):
    """A stop signal arrived while the stack was still starting."""


def _argv(name: str) -> list[str]:
    if name == "simulator":
        return [sys.executable, "-m", "tooling.phonepe_simulator"]
    return [sys.executable, "-m", "core.cli", name]


def _say(text: str) -> None:
    # A closed terminal (SIGHUP) must not cut a stop short.
    with contextlib.suppress(OSError, ValueError):
        print(f"[up] {text}", flush=True)


def _pump(name: str, stream: IO[bytes]) -> None:
    width = max(len(n) for n in APP_PROCESSES)
    for raw in iter(stream.readline, b""):
        # Drained even once our stdout is gone: a full pipe would block the child.
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.write(f"[{name:<{width}}] {raw.decode(errors='replace')}")
            sys.stdout.flush()


def _describe(groups: dict[str, dict[int, int]]) -> str:
    return ", ".join(f"{n} (pid {', '.join(map(str, sorted(p)))})" for n, p in groups.items())


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.var = settings.var_dir.resolve()
        self.lock_path = self.var / "up.pid"
        self.state_path = self.var / "up.json"
        self.services: list[ManagedProcess] = []
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.records: dict[str, ProcessRecord] = {}
        self.env: dict[str, str] = {}
        # Set by the signal handler, read by the main thread. Plain attributes, not
        # threading.Event: Event.set takes a lock the interrupted main thread may hold.
        self.stop_requested = False
        self.hurry = False
        self.signal_name = ""
        self._hurry_said = False
        self._stopping = False
        self._lock_fd: int | None = None

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread: flags only, no I/O (a print
        # here could re-enter one the main thread is in the middle of).
        if self.stop_requested:
            self.hurry = True
        self.stop_requested = True
        self.signal_name = signal.Signals(signum).name

    def _checkpoint(self) -> None:
        if self.stop_requested:
            raise StopRequested

    # -- single instance --------------------------------------------------------------
    def _claim_lock(self) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise SystemExit(
                    f"DevConnect is already running (pid {other}); stop it with Ctrl-C "
                    f"or `kill {other}` before starting another"
                ) from None
            # A stopping instance removes the file after we may have opened it: the
            # lock only counts on the file that is there now.
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        stale = os.read(fd, 64).decode(errors="replace").strip()
        if stale:
            _say(f"{self.lock_path.name} names pid {stale}, which no longer holds it: a stale lock")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is None:
            return  # never ours: a refused start leaves the running instance's lock alone
        with contextlib.suppress(FileNotFoundError):
            self.lock_path.unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    def _check_ports(self) -> None:
        s = self.settings
        ports = [s.restd_port, s.chatd_port, s.smtp_port]
        if s.env != "production":
            ports.append(s.phonepe_simulator_port)
        metrics = (s.worker_metrics_port, s.restd_metrics_port, s.chatd_metrics_port)
        ports += [p for p in metrics if p]
        busy = [p for p in ports if port_open(p)]
        if busy:
            raise SystemExit(
                f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use by another "
                "program; free them or set DEVCONNECT_RESTD_PORT / CHATD_PORT / SMTP_PORT / "
                "PHONEPE_SIMULATOR_PORT / WORKER_METRICS_PORT / RESTD_METRICS_PORT / "
                "CHATD_METRICS_PORT"
            )

    # -- what an earlier run left ---------------------------------------------------------
    def _earlier_records(self) -> list[ProcessRecord]:
        try:
            state = json.loads(self.state_path.read_text())
            if state.get("bootId") != boot_id():
                return []  # start times count from boot: nothing recorded before it runs now
            return [ProcessRecord.from_json(doc) for doc in state.get("children", [])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            _say(f"ignoring an unreadable {self.state_path.name}: {exc}")
            return []

    def _nx_leftover(self) -> dict[int, int]:
        """An nx-27017 still serving var/mongo that up.json does not name (say it was lost)."""
        if self.settings.mongo_url:
            return {}
        pid_file = self.var / "mongo" / NX_PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return {}
        start = proc_start_time(pid)
        cmdline = proc_cmdline(pid) or []
        # Started on this very pid file, which only an `up` on this var does (and we hold
        # its lock), so it is ours even unrecorded.
        return {pid: start} if start is not None and str(pid_file) in cmdline else {}

    def _reclaim(self) -> None:
        """Stop what an earlier run left running (a kill -9 of `up`, say), then forget it."""
        groups: dict[str, dict[int, int]] = {}
        for record in self._earlier_records():
            if members := record.session():
                groups[record.name] = members
        nx = self._nx_leftover()
        if nx and not any(set(nx) & set(members) for members in groups.values()):
            groups["nx-27017"] = nx
        if groups:
            leftovers = {pid: t for members in groups.values() for pid, t in members.items()}
            _say(
                f"found {len(leftovers)} process(es) of an earlier run still running: "
                f"{_describe(groups)}; stopping them"
            )
            # A Ctrl-C meanwhile hurries this too, but it still finishes: no orphans.
            killed = stop_pids(leftovers, RECLAIM_TIMEOUT_S, lambda: self.stop_requested)
            alive = sorted(pid for pid, start in leftovers.items() if proc_start_time(pid) == start)
            if alive:
                raise SystemExit(f"could not stop pid(s) {alive} of an earlier run")
            how = f" (SIGKILL for pid {', '.join(map(str, killed))})" if killed else ""
            _say(f"stopped the earlier run's processes{how}")
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()

    # -- state file -----------------------------------------------------------------------
    def _write_state(self) -> None:
        up = ProcessRecord.of("up", os.getpid(), proc_cmdline(os.getpid()) or sys.argv)
        doc: dict[str, Any] = {
            "version": STATE_VERSION,
            "bootId": boot_id(),
            "up": up.to_json(),
            "children": [record.to_json() for record in self.records.values()],
        }
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.state_path)  # a reader never sees half a file

    def _remember(self, name: str, pid: int, argv: list[str]) -> None:
        self.records[name] = ProcessRecord.of(name, pid, argv)
        self._write_state()

    def _forget(self, name: str) -> None:
        self.records.pop(name, None)
        self._write_state()

    def _refresh_cmdlines(self) -> None:
        # Some programs rewrite their title once running (redis-server): record that too.
        for name, record in self.records.items():
            if proc_start_time(record.pid) == record.start_time:
                self.records[name] = dataclasses.replace(record, cmdline=proc_cmdline(record.pid))
        self._write_state()

    # -- start ----------------------------------------------------------------------------
    def _start_service(self, service: ManagedProcess) -> ManagedProcess:
        self._checkpoint()
        proc = service.launch()
        self.services.append(service)
        self._remember(service.name, proc.pid, list(service.argv))
        return service.wait_ready(abort=lambda: self.stop_requested)

    def _spawn(self, name: str, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        self._checkpoint()
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            # Its own session: a terminal's Ctrl-C reaches `up` only, which stops the
            # children in order; and the session id finds whatever a child forked.
            start_new_session=True,
            preexec_fn=die_with_parent(),
            **popen,
        )
        self.children[name] = proc
        self._remember(name, proc.pid, argv)
        return proc

    def start(self) -> None:
        self._claim_lock()
        self._reclaim()
        self._check_ports()
        self._write_state()
        self.env = {**os.environ, **self._start_services()}
        self._migrate()
        for name in APP_PROCESSES:
            if name == "simulator" and self.settings.env == "production":
                continue
            proc = self._spawn(name, _argv(name), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert proc.stdout is not None
            threading.Thread(target=_pump, args=(name, proc.stdout), daemon=True).start()
        s, base = self.settings, f"http://{self.settings.host}"
        urls = {"restd": f"{base}:{s.restd_port}", "chatd": f"{base}:{s.chatd_port}"}
        self._wait_ready(urls)
        self._refresh_cmdlines()
        self._announce(urls)

    def _start_services(self) -> dict[str, str]:
        """The embedded services no URL is configured for; returns the children's env."""
        var, logs = self.var, self.var / "log"
        logs.mkdir(parents=True, exist_ok=True)
        env = {"DEVCONNECT_VAR_DIR": str(var)}
        if not self.settings.mongo_url:
            mongo = self._start_service(mongo_process(var / "mongo", log_path=logs / "mongo.log"))
            env["DEVCONNECT_MONGO_URL"] = f"mongodb://127.0.0.1:{mongo.port}"
            _say(
                f"embedded MongoDB-wire server (nx-27017) on 127.0.0.1:{mongo.port}, "
                f"data in {var / 'mongo'}"
            )
        if not self.settings.redis_urls:
            spec = redis_process(data_dir=var / "redis", persist=True, log_path=logs / "redis.log")
            redis = self._start_service(spec)
            env["DEVCONNECT_REDIS_URLS"] = f"redis://127.0.0.1:{redis.port}/0"
            _say(f"redis-server on 127.0.0.1:{redis.port}")
        spec = smtp_process(var / "mail", port=self.settings.smtp_port, log_path=logs / "smtp.log")
        smtp = self._start_service(spec)
        _say(f"SMTP sink on 127.0.0.1:{smtp.port}, mail saved under {var / 'mail'}")
        if self.settings.env != "production":
            env.setdefault("DEVCONNECT_COOKIE_SECURE", "false")  # plain http on localhost
            env |= {key: value for key, value in SIMULATOR_ENV.items() if key not in os.environ}
        return env

    def _migrate(self) -> None:
        # Its lines go straight to our stdout; polled, so a Ctrl-C need not wait for it.
        migrate = self._spawn("migrate", [sys.executable, "-m", "core.cli", "migrate"])
        while migrate.poll() is None:
            self._checkpoint()
            time.sleep(POLL_S)
        del self.children["migrate"]
        self._forget("migrate")
        if migrate.returncode != 0:
            raise SystemExit("migrations failed; see the lines above")

    def _wait_ready(self, urls: dict[str, str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for name, url in urls.items():
            while not self._ready(url + "/readyz"):
                self._checkpoint()
                self._check_children()
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} was not ready within {READY_TIMEOUT_S:.0f}s")
                time.sleep(0.25)

    def _announce(self, urls: dict[str, str]) -> None:
        s = self.settings
        ports = (s.restd_metrics_port, s.chatd_metrics_port, s.worker_metrics_port)
        metrics = [f"http://{s.host}:{port}/metrics" for port in ports if port]
        for line in (
            "DevConnect is up:",
            f"  web app      {urls['restd']}/   (`devconnect demo` seeds people to meet)",
            f"  REST API     {urls['restd']}/api   (OpenAPI: {urls['restd']}/api/openapi.json)",
            f"  chat socket  ws://{s.host}:{s.chatd_port}/ws",
            f"  metrics      {'  '.join(metrics) or '(off)'}",
            f"  mail         {self.var / 'mail'}  (each message a .eml file)",
            f"  PhonePe sim  http://127.0.0.1:{s.phonepe_simulator_port}",
            f"  processes    {self.state_path}",
            "Ctrl-C stops everything.",
        ):
            _say(line)

    @staticmethod
    def _ready(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def _check_children(self) -> None:
        if self._stopping:
            return
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with code {proc.returncode}")
        for service in self.services:
            if service.proc is not None and service.proc.poll() is not None:
                raise SystemExit(f"{service.name} exited with code {service.proc.returncode}")

    def wait(self) -> None:
        while not self.stop_requested:
            self._check_children()
            time.sleep(POLL_S)

    # -- stop -----------------------------------------------------------------------------
    def _hurried(self) -> bool:
        if self.hurry and not self._hurry_said:
            self._hurry_said = True
            _say(f"signal again: SIGKILL in {HURRY_GRACE_S:.0f}s for whatever has not exited")
        return self.hurry

    def _terminate(
        self, procs: list[tuple[str, subprocess.Popen[bytes], bool]], timeout_s: float
    ) -> None:
        """SIGTERM (to the process group where ``group``), wait, SIGKILL what is left.

        These are our own children, not yet reaped while poll() is None, so their
        PIDs (and process groups) cannot have passed to anyone else.
        """

        def send(sig: int) -> None:
            for _, proc, group in procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        if group:
                            os.killpg(proc.pid, sig)
                        else:
                            proc.send_signal(sig)

        send(signal.SIGTERM)
        send(signal.SIGCONT)  # a stopped child (Ctrl-Z) acts on SIGTERM only once continued
        deadline = time.monotonic() + timeout_s
        while any(p.poll() is None for _, p, _ in procs) and time.monotonic() < deadline:
            if self._hurried():
                deadline = min(deadline, time.monotonic() + HURRY_GRACE_S)
            time.sleep(0.05)
        left = [name for name, proc, _ in procs if proc.poll() is None]
        if left:
            _say(f"{', '.join(left)} still running: SIGKILL")
            send(signal.SIGKILL)
        for _, proc, _ in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        self._stopping = True
        try:
            if self.children or self.services:
                self._stop_processes()
        finally:
            self._release_lock()

    def _stop_processes(self) -> None:
        # The apps first (they drain into Mongo and Redis), then the services.
        self._terminate([(n, p, True) for n, p in self.children.items()], CHILD_STOP_TIMEOUT_S)
        services = [(s.name, s.proc, False) for s in self.services if s.proc is not None]
        self._terminate(services, SERVICE_STOP_TIMEOUT_S)
        # Whatever a child forked and left behind in its session (a pool process, say).
        stragglers = {name: pids for name, r in self.records.items() if (pids := r.session())}
        if stragglers:
            _say(f"stopping what the children left behind: {_describe(stragglers)}")
            merged = {pid: start for pids in stragglers.values() for pid, start in pids.items()}
            stop_pids(merged, HURRY_GRACE_S if self.hurry else STOP_TIMEOUT_S, self._hurried)
        survivors = {name: r for name, r in self.records.items() if r.session()}
        if survivors:
            # Kept in up.json, so the next start stops them.
            self.records = survivors
            self._write_state()
            _say(f"could not stop {', '.join(survivors)}; the next start will try again")
            return
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        _say("stopped every process it started")


def run(settings: Settings) -> int:
    stack = Stack(settings)
    for sig in STOP_SIGNALS:
        signal.signal(sig, stack.on_signal)
    code = 0
    try:
        stack.start()
        stack.wait()
        _say(f"{stack.signal_name}: stopping")
    except (StopRequested, StartAborted):
        _say(f"{stack.signal_name}: stopping while starting")
    # RuntimeError: a service that would not start (core.embedded).
    except (SystemExit, RuntimeError) as exc:
        _say(str(exc))
        code = 1
    finally:
        stack.stop()
    return code


if __name__ == "__main__":
    from core.settings import load_settings

    raise SystemExit(run(load_settings()))


def run_cli(settings: Settings, _argv: list[str]) -> int:
    return run(settings)
