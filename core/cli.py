"""The ``devconnect`` command: the composition root of every process.

Each subcommand builds the settings once and hands them to its package's
``main``. Packages are reached by module name, so ``core`` keeps importing
nothing from chatd, restd or workers (STYLE 1).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable
from typing import Any

from core.settings import Settings, SettingsError, load_settings

# subcommand -> ("module:function", help). The function takes (settings, remaining argv).
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("core.supervisor:run_cli", "start the whole stack on embedded defaults"),
    "chatd": ("chatd.app:main", "run the realtime websocket daemon"),
    "restd": ("restd.app:main", "run the REST service"),
    "worker": ("workers.app:run_worker", "run a Celery worker"),
    "beat": ("workers.app:run_beat", "run the Celery beat scheduler"),
    "migrate": ("core.cli:migrate", "create collections and indexes (idempotent)"),
    "recs": ("restd.recs_cli:main", "feed ranking: `recs eval`, `recs precompute`"),
}


def _resolve(target: str) -> Callable[..., Any]:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def migrate(settings: Settings, _argv: list[str]) -> int:
    from core.logs import configure_logging
    from core.mongo import ensure_indexes, make_client

    configure_logging("migrate", settings.log_level, settings.log_format)
    if not settings.mongo_url:
        print(
            "DEVCONNECT_MONGO_URL is not set (`devconnect up` starts an embedded one)",
            file=sys.stderr,
        )
        return 2

    async def run() -> dict[str, list[str]]:
        client = make_client(settings.mongo_url or "")
        try:
            return await ensure_indexes(client[settings.mongo_db])
        finally:
            await client.close()

    created = asyncio.run(run())
    total = sum(len(v) for v in created.values())
    print(f"migrate: {total} indexes on {len(created)} collections in {settings.mongo_db}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devconnect", description="DevConnect services")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"devconnect: refusing to start: {exc}", file=sys.stderr)
        return 2
    # Each command parses its own options from `rest`.
    result = _resolve(COMMANDS[args.command][0])(settings, rest)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
