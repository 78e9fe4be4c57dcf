"""The PostgreSQL inbox's schema as numbered migrations, applied at start under an advisory lock.

Replicas that start together serialize on :data:`MIGRATION_LOCK` (``pg_advisory_lock``); each
applies only the versions ``schema_migrations`` lacks, each in its own transaction. A database
written by a newer version (a version this one does not know) is refused rather than guessed at.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x5EC0_0001
"""Advisory lock key held while migrations run (any 64-bit number no other tool on the database uses)."""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE inbox (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            alert_id TEXT NOT NULL,
            monitor_condition TEXT NOT NULL,
            body BYTEA NOT NULL,
            received_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'done', 'parked', 'discarded')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            next_attempt_at DOUBLE PRECISION,
            done_at TEXT,
            parked_at TEXT,
            work_item TEXT,
            work_item_url TEXT,
            replays INTEGER NOT NULL DEFAULT 0,
            replayed_at TEXT,
            replayed_by TEXT,
            discarded_at TEXT,
            discarded_by TEXT,
            discard_reason TEXT,
            CONSTRAINT inbox_delivery UNIQUE (alert_id, monitor_condition)
        );
        CREATE INDEX inbox_pending ON inbox (id) WHERE state = 'pending';
        CREATE INDEX inbox_parked ON inbox (id) WHERE state = 'parked';
        CREATE INDEX inbox_done_at ON inbox (done_at) WHERE state = 'done';
        CREATE INDEX inbox_discarded_at ON inbox (discarded_at) WHERE state = 'discarded';
        CREATE TABLE inbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    (
        2,
        """
        -- The embedded ITSM backend (receiver.itsm.embedded.postgres); same tables as on SQLite.
        CREATE TABLE work_items (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            number TEXT UNIQUE GENERATED ALWAYS AS (
                'INC' || CASE WHEN id < 10000000 THEN lpad(id::text, 7, '0') ELSE id::text END) STORED,
            correlation_key TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('New', 'Resolved', 'Closed')),
            severity TEXT,
            priority INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 5),
            title TEXT NOT NULL,
            description TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            resolved_at TEXT,
            occurrences INTEGER NOT NULL DEFAULT 1,
            closed_at TEXT
        );
        CREATE UNIQUE INDEX work_items_one_open_per_key ON work_items (correlation_key) WHERE state = 'New';
        CREATE TABLE work_item_alerts (
            work_item_id BIGINT NOT NULL REFERENCES work_items (id) ON DELETE CASCADE,
            alert_id TEXT NOT NULL UNIQUE,
            fired_at TEXT NOT NULL,
            resolved_at TEXT,
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            PRIMARY KEY (work_item_id, alert_id)
        );
        CREATE TABLE work_item_notes (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            work_item_id BIGINT NOT NULL REFERENCES work_items (id) ON DELETE CASCADE,
            at TEXT NOT NULL,
            text TEXT NOT NULL
        );
        CREATE TABLE configuration_items (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,
            azure_resource_id TEXT,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL
        );
        CREATE TABLE work_item_cis (
            work_item_id BIGINT NOT NULL REFERENCES work_items (id) ON DELETE CASCADE,
            ci_id BIGINT NOT NULL REFERENCES configuration_items (id),
            PRIMARY KEY (work_item_id, ci_id)
        );
        CREATE TABLE applied_events (
            alert_id TEXT NOT NULL,
            condition TEXT NOT NULL,
            work_item_id BIGINT,
            event_at TEXT NOT NULL,
            applied_at TEXT NOT NULL,
            PRIMARY KEY (alert_id, condition)
        );
        """,
    ),
    (
        3,
        """
        -- The routed fields of issue #13 (docs/routing.md), as on SQLite; reopened stays 0 here
        -- (the reopen window is not run by this backend yet: docs/postgresql.md, "Lifecycle rules").
        ALTER TABLE work_items
            ADD COLUMN assignment_group TEXT,
            ADD COLUMN category TEXT,
            ADD COLUMN subcategory TEXT,
            ADD COLUMN impact INTEGER,
            ADD COLUMN urgency INTEGER,
            ADD COLUMN reopened INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        4,
        """
        -- The lifecycle rules' state (receiver.storage.postgres.lifecycle), the same tables as on SQLite.
        CREATE TABLE lifecycle_timers (
            correlation_key TEXT NOT NULL,
            reason TEXT NOT NULL CHECK (reason IN ('stateless-ttl', 'flap-quiet')),
            due_at DOUBLE PRECISION NOT NULL,
            after_seconds DOUBLE PRECISION NOT NULL,
            essentials TEXT NOT NULL,
            PRIMARY KEY (correlation_key, reason)
        );
        CREATE INDEX lifecycle_timers_due ON lifecycle_timers (due_at);
        CREATE TABLE lifecycle_firing (
            lifecycle_key TEXT NOT NULL,
            alert_id TEXT NOT NULL,
            fired_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (lifecycle_key, alert_id)
        );
        CREATE TABLE lifecycle_clear (
            lifecycle_key TEXT PRIMARY KEY,
            cleared_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE lifecycle_refires (
            lifecycle_key TEXT NOT NULL,
            alert_id TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (lifecycle_key, alert_id)
        );
        """,
    ),
    (
        5,
        """
        -- The embedded backend's lifecycle rules (receiver.itsm.embedded.lifecycle_postgres), as on
        -- SQLite: the rule-and-targets key an item is found by for the reopen window, flap damping
        -- and recoveries, and who resolved it. Items written before keep NULL (never reopened).
        ALTER TABLE work_items
            ADD COLUMN lifecycle_key TEXT,
            ADD COLUMN resolved_by TEXT;
        CREATE INDEX work_items_lifecycle ON work_items (lifecycle_key, id);
        """,
    ),
)


class SchemaTooNew(RuntimeError):
    """The database has migrations this version does not know: an older receiver must not write it."""


async def migrate(conn: Any) -> list[int]:
    """Bring the schema up to date; returns the versions applied now (empty when it was current)."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        known = {version for version, _ in MIGRATIONS}
        if done - known:
            raise SchemaTooNew(
                f"the database has schema version(s) {sorted(done - known)} that this receiver does not know; "
                "run the newer receiver version (or a fresh database)"
            )
        applied = []
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
            log.info("database schema migrated", extra={"event": "schema_migrated", "version": version})
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
