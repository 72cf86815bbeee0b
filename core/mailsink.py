"""A local SMTP server (aiosmtpd) that saves every accepted mail as a file.

``--refuse-first N`` answers the first N deliveries with a transient 451, and
``--refuse-always`` answers every one that way: the test harness uses them to
prove the workers' retries.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class SavingHandler:
    def __init__(self, mail_dir: Path, refuse_first: int, refuse_always: bool) -> None:
        self.mail_dir = mail_dir
        self.refuse_left = refuse_first
        self.refuse_always = refuse_always
        self.counter = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_always or self.refuse_left > 0:
            self.refuse_left -= 1
            return "451 4.3.0 temporarily refusing mail (test switch)"
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{next(self.counter):06d}.eml"
        tmp = self.mail_dir / (name + ".tmp")
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(self.mail_dir / name)  # atomic: readers never see half a mail
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser(description="DevConnect SMTP sink")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=Path("var/mail"))
    parser.add_argument("--refuse-first", type=int, default=0)
    parser.add_argument("--refuse-always", action="store_true")
    args = parser.parse_args()
    handler = SavingHandler(args.dir, args.refuse_first, args.refuse_always)
    controller = Controller(handler, hostname="127.0.0.1", port=args.port)
    controller.start()

    async def forever() -> None:
        await asyncio.Event().wait()

    try:
        asyncio.run(forever())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
