"""Run nx-27017 (the embedded MongoDB-wire server) tuned for chat write rates.

Two changes from running its command line directly, both about latency:

- nx-27017 logs every command at INFO; at chat rates that is a measurable
  share of the store's CPU, so its loggers are raised to WARNING.
- SQLite in WAL mode checkpoints inside whichever commit crosses 1,000 WAL
  pages, so now and then one commit also copies megabytes into the database
  file; every message queued behind it waits (seen as commits over 50 ms in
  chatbench). Here commits never checkpoint; a background thread runs a
  PASSIVE checkpoint on its own connection every CHECKPOINT_INTERVAL_S, which
  neither blocks nor waits for writers (sqlite3 releases the GIL meanwhile).
  Durability is unchanged: a commit is durable once in the WAL.

And one change about restarts: nx-27017 refuses to start while its pid file
names a live process. After a ``kill -9`` that file stays behind, and by the
next start its PID may belong to any other program, so a pid file is removed
unless the process it names is a server started on this very pid file.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

CHECKPOINT_INTERVAL_S = 1.0
# Past this many WAL pages a commit checkpoints after all (a safety net in case
# the background thread falls behind): 100,000 pages is ~400 MB of WAL.
AUTOCHECKPOINT_PAGES = 100_000

log = logging.getLogger("devconnect.embedded_mongo")


def _no_inline_checkpoints() -> None:
    from neosqlite.connection import Connection

    configure = Connection._configure_connection

    def configure_then_defer_checkpoints(self: Connection) -> None:
        configure(self)
        self.db.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")

    Connection._configure_connection = configure_then_defer_checkpoints


def _checkpointer(data_dir: Path) -> None:
    connections: dict[Path, sqlite3.Connection] = {}
    while True:
        time.sleep(CHECKPOINT_INTERVAL_S)
        for path in data_dir.glob("*.db"):
            try:
                conn = connections.get(path)
                if conn is None:
                    conn = connections[path] = sqlite3.connect(path, timeout=0.1)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # a busy or vanished file: next round
                log.debug("checkpoint of %s skipped: %s", path, exc)
                connections.pop(path, None)


def _serves_from(pid: int, pid_file: Path) -> bool:
    """Whether process ``pid`` is a live server started on this pid file."""
    from core.embedded import proc_cmdline

    if pid <= 0 or pid == os.getpid():
        return False
    cmdline = proc_cmdline(pid)
    if cmdline is not None:
        return str(pid_file) in cmdline
    if Path("/proc/self").exists():
        return False  # /proc has no such process
    try:  # no /proc to read a command line from: keep the file of any live process
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_stale_pid_file(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        pid = 0  # unreadable, so it names nothing worth keeping it for
    if _serves_from(pid, pid_file):
        return  # a live server on these files: nx-27017 rightly refuses to start twice
    log.warning("removing the stale pid file %s (pid %d is no server on it)", pid_file, pid)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()


def main() -> None:
    for name in ("nx_27017", "neosqlite"):
        logging.getLogger(name).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--pid-file", type=Path)
    known, _ = parser.parse_known_args(sys.argv[1:])
    if known.pid_file is not None:
        _clear_stale_pid_file(known.pid_file)
    if known.data_dir is not None and str(known.data_dir) != "memory":
        _no_inline_checkpoints()
        threading.Thread(target=_checkpointer, args=(known.data_dir,), daemon=True).start()
    from nx_27017.nx_27017 import main as nx_main

    sys.argv = ["nx-27017", *sys.argv[1:]]
    nx_main()


if __name__ == "__main__":
    main()
