"""The whole stack, ``python -m core.cli up``, as a subprocess on free ports.

Its own var directory and no Mongo or Redis URL, so that it starts its own
embedded services; ``cleanup`` kills whatever it started by PID (checked
against the start time recorded in var/up.json), whatever happened. Used by
the restart tests and the browser tests.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.embedded import ProcessRecord, die_with_parent, free_port, stop_pids
from tests.harness import ROOT

UP_READY_S = 90.0  # the whole stack, on a busy 2-core machine
UP_EXIT_S = 60.0


def _stable_port() -> int:
    """A free port below the kernel's ephemeral range.

    The stack is started several times on the same ports; a port from
    ``free_port()`` lies in the ephemeral range, where any outgoing connection
    on the machine may take it between two starts ("Address already in use").
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12_000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return free_port()


@dataclass
class Launcher:
    workdir: Path
    env: dict[str, str]
    ports: dict[str, int]
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    seen: dict[tuple[int, int | None], ProcessRecord] = field(default_factory=dict)

    @classmethod
    def create(cls, workdir: Path) -> Launcher:
        ports = {
            name: _stable_port()
            for name in (
                "restd",
                "chatd",
                "smtp",
                "phonepe_simulator",
                "worker_metrics",
                "restd_metrics",
                "chatd_metrics",
            )
        }
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DEVCONNECT_", "OTEL_", "TEST_MONGO"))
        }
        env.update({f"DEVCONNECT_{name.upper()}_PORT": str(port) for name, port in ports.items()})
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "DEVCONNECT_ENV": "development",
                "DEVCONNECT_HOST": "127.0.0.1",
                "DEVCONNECT_VAR_DIR": str(workdir / "var"),
                "DEVCONNECT_PHONEPE_BASE_URL": f"http://127.0.0.1:{ports['phonepe_simulator']}",
            }
        )
        return cls(workdir, env, ports)

    @property
    def var(self) -> Path:
        return self.workdir / "var"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['restd']}"

    @property
    def url(self) -> str:
        """The web app's origin: the API's, where restd serves the app."""
        return self.api

    @property
    def chat_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports['chatd']}/ws"

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['phonepe_simulator']}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"up-{self.runs}.log"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def up_lines(self) -> str:
        return "\n".join(line for line in self.output().splitlines() if line.startswith("[up]"))

    # -- the launcher's life ------------------------------------------------------
    def start(self) -> None:
        self.runs += 1
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "core.cli", "up"],
                cwd=self.workdir,  # no .env of the checkout
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # our signals only, sent by PID
                preexec_fn=die_with_parent(),
            )
        deadline = time.monotonic() + UP_READY_S
        while "Ctrl-C stops everything." not in self.output():
            assert self.proc.poll() is None, (
                f"up exited with {self.proc.returncode}:\n{self.tail()}"
            )
            assert time.monotonic() < deadline, f"not up within {UP_READY_S:.0f}s:\n{self.tail()}"
            time.sleep(0.2)
        self.recorded()  # remembered for the cleanup
        for port in (self.ports["restd"], self.ports["chatd"]):
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200

    def tail(self) -> str:
        return "\n".join(self.output().splitlines()[-40:])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def wait_exit(self) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(UP_EXIT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"up still running after {UP_EXIT_S:.0f}s:\n{self.tail()}"
            ) from None

    def stop(self) -> None:
        records = self.recorded()
        self.signal(signal.SIGINT)
        assert self.wait_exit() == 0, self.tail()
        assert "stopped every process it started" in self.up_lines(), self.tail()
        assert_gone(records)
        assert not (self.var / "up.json").exists()
        assert not (self.var / "up.pid").exists()

    def recorded(self) -> list[ProcessRecord]:
        state = json.loads((self.var / "up.json").read_text())
        records = [ProcessRecord.from_json(doc) for doc in state["children"]]
        for record in records:
            self.seen[(record.pid, record.start_time)] = record
        return records

    def redis_port(self) -> int:
        found = re.findall(r"\[up\] redis-server on 127\.0\.0\.1:(\d+)", self.output())
        assert found, self.tail()
        return int(found[-1])

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        leftovers: dict[int, int] = {}
        for record in self.seen.values():
            leftovers.update(record.session())
        stop_pids(leftovers, 5.0)


def assert_gone(records: list[ProcessRecord]) -> None:
    alive = {r.name: r.session() for r in records}
    assert not {name: pids for name, pids in alive.items() if pids}, alive
