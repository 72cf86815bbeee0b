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
    "recs": (
        "workers.recs_cli:main",
        "the feed's ranker: `recs precompute|train|models|rollback`, and `recs eval`",
    ),
    "demo": ("tooling.demo:main", "seed a small world to explore and print two logins"),
}


# Subcommands served by another module than their command's: `recs eval` is a
# development tool (tooling/), the other `recs` commands ship with the workers.
SUBCOMMANDS: dict[tuple[str, str], str] = {("recs", "eval"): "tooling.recs_cli:run_eval"}


def _resolve(target: str) -> Callable[..., Any]:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def migrate(settings: Settings, argv: list[str]) -> int:
    from core import migrations
    from core.logs import configure_logging
    from core.mongo import INDEXES, ensure_indexes, make_client

    parser = argparse.ArgumentParser(
        prog="devconnect migrate",
        description="Create missing indexes, then apply data migrations not yet applied. "
        "Idempotent: safe to run on every deploy and on a populated database.",
    )
    parser.add_argument(
        "--recount-unread",
        action="store_true",
        help="also recompute every unread counter from the unread messages "
        "(repairs counts a killed node left short; costs the unread messages, not all)",
    )
    args = parser.parse_args(argv)
    configure_logging("migrate", settings.log_level, settings.log_format)
    if not settings.mongo_url:
        print(
            "DEVCONNECT_MONGO_URL is not set (`devconnect up` starts an embedded one)",
            file=sys.stderr,
        )
        return 2

    async def run() -> tuple[dict[str, list[str]], list[str], dict[str, int] | None]:
        client = make_client(settings.mongo_url or "")
        db = client[settings.mongo_db]
        try:
            created = await ensure_indexes(db)
            applied = await migrations.apply_all(db)
            recounted = await migrations.recount_unread(db) if args.recount_unread else None
            return created, applied, recounted
        finally:
            await client.close()

    # Only what is missing is created, so a second run reports 0 created.
    created, applied, recounted = asyncio.run(run())
    total = sum(len(v) for v in created.values())
    wanted = sum(len(models) for models in INDEXES.values())
    print(
        f"migrate: {total} created, {wanted - total} already present, of {wanted} indexes "
        f"on {len(created)} collections in {settings.mongo_db}"
    )
    print(f"migrate: data migrations applied: {', '.join(applied) or 'none pending'}")
    if recounted is not None:
        print(f"migrate: unread counters recounted: {recounted}")
    return 0


# Commands that take no options of their own: everything is a DEVCONNECT_* setting.
NO_OPTIONS = ("up", "chatd", "restd", "beat")
SETTINGS_EPILOG = (
    "Configured by DEVCONNECT_* environment variables (or a .env file); "
    "see the README's configuration table."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="devconnect", description="DevConnect services", epilog=SETTINGS_EPILOG
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command in NO_OPTIONS:
        # `devconnect up --help` prints this and exits; it never starts anything,
        # and an option it does not know is an error, not silently ignored.
        argparse.ArgumentParser(
            prog=f"devconnect {args.command}",
            description=COMMANDS[args.command][1],
            epilog=SETTINGS_EPILOG,
        ).parse_args(rest)
        rest = []
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"devconnect: refusing to start: {exc}", file=sys.stderr)
        return 2
    # Each command parses its own options from `rest`.
    target = COMMANDS[args.command][0]
    if rest and (args.command, rest[0]) in SUBCOMMANDS:
        target, rest = SUBCOMMANDS[(args.command, rest[0])], rest[1:]
    try:
        command = _resolve(target)
    except ModuleNotFoundError as exc:
        if exc.name != "tooling":
            raise
        # The production image ships no development tools (Dockerfile).
        print(
            f"devconnect: `{args.command}` is a development tool; run it from a checkout",
            file=sys.stderr,
        )
        return 2
    result = command(settings, rest)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
