"""What every receiver command shares: argument parsing and the ``--db`` option and its checks."""

from __future__ import annotations

import argparse
import os
import sys

from secure_export.contract import ENV_DB, ENV_DB_AUTH, LOCAL_DB_PATH

DEFAULT_HOST = "127.0.0.1"


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """Parse, turning argparse's ``SystemExit`` (``--help`` → 0, bad usage → 2) into a status."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def listing_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every listing command shares: ``--json`` and ``--db``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help=f"database to read: a SQLite file or a postgresql:// URL (default: ${ENV_DB}, else {LOCAL_DB_PATH})",
    )
    return parser


def db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help=f"the receiver's SQLite file or postgresql:// URL (default: ${ENV_DB}, else {LOCAL_DB_PATH})",
    )


def resolve_db(value: str | None) -> str:
    return value or os.environ.get(ENV_DB) or LOCAL_DB_PATH


def checked_db(prog: str, value: str, *, new_file: bool = False, source: str = f"--db / ${ENV_DB}") -> str | int:
    """``value`` as the store's location (a SQLite path or a PostgreSQL URL), or exit status 2 and one line why.

    The same rules as ``serve``'s ``SECURE_EXPORT_DB`` (:mod:`receiver.storage.location`) and, for a
    PostgreSQL URL, ``SECURE_EXPORT_DB_AUTH``; ``new_file`` also requires the directory the file is
    to be created in.
    """
    from typing import get_args

    from receiver.storage.location import PostgresDatabase, database_location
    from receiver.storage.postgres.connect import DbAuth

    try:
        location = database_location(value)
        if new_file:
            if isinstance(location, PostgresDatabase):
                raise ValueError("this command keeps its data in a SQLite file; give a file path such as ./demo.db")
            location.require_directory()
    except ValueError as error:
        sys.stderr.write(f"{prog}: {source}: {error}\n")
        return 2
    auth = os.environ.get(ENV_DB_AUTH)
    modes = get_args(DbAuth)
    if isinstance(location, PostgresDatabase) and auth is not None and auth.strip().lower() not in modes:
        # serve refuses the same value at start (receiver.settings); here before any connection is tried.
        sys.stderr.write(f"{prog}: ${ENV_DB_AUTH}: must be {' or '.join(modes)} (got {auth!r})\n")
        return 2
    return location.path


def database_argument(prog: str, value: str | None) -> str | int:
    """``--db`` (else ``$SECURE_EXPORT_DB``, else the default), checked: the location, or exit status 2."""
    return checked_db(prog, resolve_db(value))


def parse_with_database(
    prog: str, parser: argparse.ArgumentParser, argv: list[str]
) -> tuple[argparse.Namespace, str] | int:
    """Parse ``argv`` and check its ``--db``: the arguments and the database, or an exit status."""
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    db = database_argument(prog, args.db)
    if isinstance(db, int):
        return db
    return args, db
