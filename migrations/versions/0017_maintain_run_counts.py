"""Reads that stay flat as runs grow: maintained run counts and a status listing index.

- ``activation_run_counts``: runs per (model_id, status, has_preview, pruned), and
  ``activation_run_hours``: runs per UTC hour of ``created_at``. ``summary`` sums these small
  tables instead of counting ``activation_run_index``.
- Triggers on ``activation_run_index`` keep both exact in the same transaction as every
  write, whoever writes (this backend, an older one after a rollback, plain SQL, COPY):
  statement-level, reading the statement's transition tables, so a batch of N rows costs one
  grouped upsert, not N. Each writing session adds to its own shard row (backend pid mod 8),
  so concurrent runs do not queue on one counter row; readers sum the shards.
- ``(status, created_at DESC, request_id DESC)`` serves ``runs?status=``.

The index table is locked against writes for the backfill, so the counts start exact: the
lock lasts as long as one pass over the table (about a second per million runs).

Revision ID: 0017_maintain_run_counts
Revises: 0016_feature_explorer (nothing here depends on 0015's or 0016's contents)
"""

from alembic import op

revision = "0017_maintain_run_counts"
down_revision = "0016_feature_explorer"
branch_labels = None
depends_on = None

SHARDS = 8
_KEY = "model_id, status, has_preview, pruned"


def _apply(rows: str) -> str:
    """Upsert the grouped deltas of ``rows`` (columns: the count key, hour, n) into both tables.

    Keys are grouped (one upsert per key per statement) and sorted (two statements lock
    counter rows in one order, so they cannot deadlock on each other)."""
    return f"""
    INSERT INTO activation_run_counts AS c ({_KEY}, shard, runs)
    SELECT {_KEY}, my_shard, sum(n) FROM ({rows}) d
    GROUP BY {_KEY} HAVING sum(n) <> 0 ORDER BY {_KEY}
    ON CONFLICT ({_KEY}, shard) DO UPDATE SET runs = c.runs + EXCLUDED.runs;
    INSERT INTO activation_run_hours AS h (hour, shard, runs)
    SELECT hour, my_shard, sum(n) FROM ({rows}) d
    GROUP BY hour HAVING sum(n) <> 0 ORDER BY hour
    ON CONFLICT (hour, shard) DO UPDATE SET runs = h.runs + EXCLUDED.runs;
    """


def _rows(table: str, n: int) -> str:
    return (
        f"SELECT model_id, status, has_preview, pruned_at IS NOT NULL AS pruned, "
        f"date_trunc('hour', created_at AT TIME ZONE 'UTC') AS hour, {n} AS n FROM {table}"
    )


COUNT_FUNCTION = f"""
CREATE FUNCTION activation_run_index_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  my_shard smallint := (pg_backend_pid() % {SHARDS})::smallint;
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_apply(_rows("new_rows", 1))}
  ELSIF TG_OP = 'DELETE' THEN
    {_apply(_rows("old_rows", -1))}
  ELSE
    -- INSERT ... ON CONFLICT fires this for every statement, mostly with no row updated.
    IF NOT EXISTS (SELECT FROM new_rows) THEN
      RETURN NULL;
    END IF;
    {_apply(_rows("old_rows", -1) + " UNION ALL " + _rows("new_rows", 1))}
  END IF;
  RETURN NULL;
END $$
"""

TRUNCATE_FUNCTION = """
CREATE FUNCTION activation_run_index_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM activation_run_counts;
  DELETE FROM activation_run_hours;
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    # Writers wait from here to commit: the backfill below and the triggers start together.
    op.execute("LOCK TABLE activation_run_index IN SHARE ROW EXCLUSIVE MODE")
    # IF NOT EXISTS: on a big table, build it beforehand with CREATE INDEX CONCURRENTLY
    # under this name (docs/scale.md) and this is a no-op.
    op.execute(
        "CREATE INDEX IF NOT EXISTS activation_run_index_status_created_at_idx "
        "ON activation_run_index (status, created_at DESC, request_id DESC)"
    )
    op.execute(
        """
        CREATE TABLE activation_run_counts (
          model_id TEXT NOT NULL,
          status TEXT NOT NULL,
          has_preview BOOLEAN NOT NULL,
          pruned BOOLEAN NOT NULL,
          shard SMALLINT NOT NULL,
          runs BIGINT NOT NULL,
          PRIMARY KEY (model_id, status, has_preview, pruned, shard)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE activation_run_hours (
          hour TIMESTAMP NOT NULL,
          shard SMALLINT NOT NULL,
          runs BIGINT NOT NULL,
          PRIMARY KEY (hour, shard)
        )
        """
    )
    op.execute(COUNT_FUNCTION)
    op.execute(TRUNCATE_FUNCTION)
    # One event per trigger: Postgres allows transition tables only on single-event triggers.
    for event, referencing in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
    ):
        op.execute(
            f"CREATE TRIGGER activation_run_index_count_{event.lower()} "
            f"AFTER {event} ON activation_run_index REFERENCING {referencing} "
            "FOR EACH STATEMENT EXECUTE FUNCTION activation_run_index_count()"
        )
    op.execute(
        "CREATE TRIGGER activation_run_index_count_truncate AFTER TRUNCATE "
        "ON activation_run_index FOR EACH STATEMENT "
        "EXECUTE FUNCTION activation_run_index_count_truncate()"
    )
    op.execute(
        f"""
        INSERT INTO activation_run_counts ({_KEY}, shard, runs)
        SELECT model_id, status, has_preview, pruned_at IS NOT NULL, 0, count(*)
        FROM activation_run_index GROUP BY 1, 2, 3, 4
        """
    )
    op.execute(
        """
        INSERT INTO activation_run_hours (hour, shard, runs)
        SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC'), 0, count(*)
        FROM activation_run_index GROUP BY 1
        """
    )


def downgrade() -> None:
    for event in ("insert", "update", "delete", "truncate"):
        op.execute(
            f"DROP TRIGGER IF EXISTS activation_run_index_count_{event} ON activation_run_index"
        )
    op.execute("DROP FUNCTION IF EXISTS activation_run_index_count()")
    op.execute("DROP FUNCTION IF EXISTS activation_run_index_count_truncate()")
    op.execute("DROP TABLE IF EXISTS activation_run_hours")
    op.execute("DROP TABLE IF EXISTS activation_run_counts")
    op.execute("DROP INDEX IF EXISTS activation_run_index_status_created_at_idx")
