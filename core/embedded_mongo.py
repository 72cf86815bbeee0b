"""Run nx-27017 (the embedded MongoDB-wire server) with its per-command INFO logging off.

nx-27017 logs every command at INFO; at chat rates that is a measurable share
of the store's CPU, so this launcher raises its loggers to WARNING first.
"""

from __future__ import annotations

import logging
import sys


def main() -> None:
    for name in ("nx_27017", "neosqlite"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from nx_27017.nx_27017 import main as nx_main

    sys.argv = ["nx-27017", *sys.argv[1:]]
    nx_main()


if __name__ == "__main__":
    main()
