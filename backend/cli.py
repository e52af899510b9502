"""`playground backend`, `playground migrate`, `playground prune`, `playground import-labels`."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration like 7d/12h/30m/90s: {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=None,
        help="Postgres URL (default: $DATABASE_URL, else the embedded server in "
        "$PLAYGROUND_DATA_DIR/pg)",
    )


@contextmanager
def _database(database_url: str | None) -> Iterator[tuple[str, bool]]:
    """Yield (url, embedded): the given/env URL, or the embedded server started for us."""
    from backend.settings import Settings
    from common.pgembed import embedded_postgres

    settings = Settings()
    url = database_url or settings.database_url
    if url:
        yield url, False
        return
    with embedded_postgres(settings.playground_data_dir / "pg") as uri:
        yield uri, True


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    _add_database_argument(parser)
    parser.add_argument(
        "--migrate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run migrations before serving (default: only for the embedded Postgres)",
    )
    parser.add_argument("--log-level", default="info")


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from backend.app import create_app
    from backend.db.migrate import upgrade
    from backend.settings import Settings
    from common.logging_setup import configure_logging
    from common.pgembed import exit_cleanly_on_sigterm

    exit_cleanly_on_sigterm()
    configure_logging("backend", args.log_level)
    with _database(args.database_url) as (url, embedded):
        if args.migrate if args.migrate is not None else embedded:
            upgrade(url)
        settings = Settings(database_url=url)
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default; here only when configured.
        trusted = settings.playground_forwarded_allow_ips
        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            proxy_headers=trusted is not None,
            forwarded_allow_ips=trusted,
            log_config=None,  # uvicorn's loggers go through ours (request id, format)
        )
    return 0


def add_migrate_arguments(parser: argparse.ArgumentParser) -> None:
    _add_database_argument(parser)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--revision", default="head", help="upgrade to this revision (head)")
    group.add_argument(
        "--downgrade",
        metavar="REVISION",
        help="downgrade to REVISION (or base); drops data, so it needs --confirm-downgrade",
    )
    parser.add_argument(
        "--confirm-downgrade",
        action="store_true",
        help="confirm that --downgrade may drop tables and columns with their data",
    )
    parser.add_argument(
        "--drop-run-index",
        action="store_true",
        help="with --downgrade past 0013: also drop activation_run_index (0013 may have "
        "adopted it with older data; refused without this flag)",
    )


def migrate(args: argparse.Namespace) -> int:
    from backend.db.migrate import current_revision, downgrade, upgrade
    from common.pgembed import exit_cleanly_on_sigterm

    if args.downgrade and not args.confirm_downgrade:
        print(
            f"refusing to downgrade to {args.downgrade}: a downgrade drops tables and columns "
            "with their data; pass --confirm-downgrade",
            file=sys.stderr,
        )
        return 2
    exit_cleanly_on_sigterm()
    with _database(args.database_url) as (url, _):
        if args.downgrade:
            downgrade(url, args.downgrade, drop_run_index=args.drop_run_index)
        else:
            upgrade(url, args.revision)
        print(f"database at revision {asyncio.run(current_revision(url))}")
    return 0


def _batch_size(text: str) -> int:
    from backend.db.prune import MAX_BATCH

    value = int(text)
    if not 1 <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"batch size must be within 1..{MAX_BATCH}")
    return value


def add_prune_arguments(parser: argparse.ArgumentParser) -> None:
    _add_database_argument(parser)
    parser.add_argument(
        "--older-than",
        type=parse_duration,
        default=parse_duration("7d"),
        help="delete previews older than this (7d, 12h, 30m, 90s, 2w; default 7d)",
    )
    parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=100,
        help="previews per transaction (default 100); stop any time, the next prune resumes",
    )


def prune(args: argparse.Namespace) -> int:
    import time

    from common.pgembed import exit_cleanly_on_sigterm

    last = [time.monotonic()]

    def report(progress) -> None:
        """Progress to stderr, at most once a second."""
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            print(
                f"pruned {progress.pruned} so far ({progress.batches} batches, "
                f"{progress.per_s:.0f}/s)",
                file=sys.stderr,
                flush=True,
            )

    exit_cleanly_on_sigterm()
    with _database(args.database_url) as (url, _):
        done = asyncio.run(prune_database(url, args.older_than, args.batch_size, report))
    print(
        f"pruned {done.pruned} previews older than {args.older_than} "
        f"({done.batches} batches, {done.elapsed_s:.1f} s, {done.per_s:.0f}/s)"
    )
    return 0


async def prune_database(
    url: str,
    older_than: timedelta,
    batch_size: int = 100,
    on_batch=None,
    max_seconds: float | None = None,
):
    """Prune previews older than ``older_than`` in batches (the CLI, Modal's cron), stopping
    after ``max_seconds`` if given; returns the totals (``backend.db.prune.PruneProgress``)."""
    import asyncpg

    from backend.db.prune import prune_previews

    conn = await asyncpg.connect(url)
    try:
        return await prune_previews(
            conn, older_than, batch_size=batch_size, on_batch=on_batch, max_seconds=max_seconds
        )
    finally:
        await conn.close()


def add_import_labels_arguments(parser: argparse.ArgumentParser) -> None:
    _add_database_argument(parser)
    parser.add_argument("file", type=Path, help="labels file: JSON, JSON lines, optionally .gz")
    parser.add_argument("--sae-id", required=True, help="e.g. llama_scope_lxr_8x")
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument(
        "--d-sae",
        type=int,
        default=None,
        help="the SAE's feature count, when the SAE service has not listed it yet",
    )


def import_labels(args: argparse.Namespace) -> int:
    """Replace an SAE's cached labels with a file's (the SAE service's labels never replace
    imported ones)."""
    from backend.features.labels_file import LabelsFileError, read_labels
    from common.pgembed import exit_cleanly_on_sigterm

    exit_cleanly_on_sigterm()
    try:
        labels = read_labels(args.file)
    except (OSError, LabelsFileError) as exc:
        print(f"cannot read {args.file}: {exc}")
        return 2
    with _database(args.database_url) as (url, _):
        count = asyncio.run(_import_labels(url, args, labels))
    print(f"imported {count} labels for {args.sae_id} layer {args.layer} ({len(labels)} read)")
    return 0


async def _import_labels(url: str, args: argparse.Namespace, labels: dict[int, str]) -> int:
    import asyncpg

    from backend.features.catalog import import_labels as import_into

    conn = await asyncpg.connect(url)
    try:
        return await import_into(conn, args.sae_id, args.layer, labels, args.d_sae)
    finally:
        await conn.close()
