"""Adopting a legacy ``activation_run_index`` (the Rust backend's table on staging), whose DDL
the repository does not have: normalise what revision 0013 expects but did not enforce on an
existing table.

Idempotent, and a no-op on a table this project created. Run by 0013 (before it adds the status
check, which legacy statuses would break) and by 0017 (before its count backfill, which NULLs
in the counted columns would break; this also gives a database that ran the earlier 0013 on a
legacy table the same schema as a fresh adoption).

- A status outside ok/failed becomes ``failed`` with ``error_code`` ``legacy_status`` and the old
  status kept in ``error_message`` (nothing says such a run succeeded; its row stays listed).
- NULLs in the columns 0013 declares NOT NULL get 0013's default (``created_at``: the epoch, so
  a run of unknown time lists last rather than first), then the column becomes NOT NULL with
  that default.
- An index already named ``activation_run_index_created_at_idx`` that is not 0013's keyset index
  is renamed ``..._legacy`` (kept: it may serve something else) and 0013's index is built.
"""

from __future__ import annotations

from alembic import op

CREATED_AT_INDEX = "activation_run_index_created_at_idx"
CREATED_AT_INDEX_DEF = "(created_at DESC, request_id DESC)"
STATUS_CHECK = "activation_run_index_status_check"

# Column -> (value for NULLs, column default): 0013's NOT NULL columns.
NOT_NULL = {
    "created_at": ("'epoch'::timestamptz", "now()"),
    "updated_at": ("created_at", "now()"),
    "model_id": ("''", "''"),
    "prompt_preview": ("''", "''"),
    "status": ("'failed'", "'ok'"),
    "has_preview": ("false", "false"),
}


def normalise() -> None:
    """Bring an adopted table to 0013's schema (see the module doc)."""
    op.execute(
        """
        UPDATE activation_run_index
        SET error_code = coalesce(error_code, 'legacy_status'),
            error_message = coalesce(error_message, 'legacy status: ' || status),
            status = 'failed'
        WHERE status IS NOT NULL AND status NOT IN ('ok', 'failed')
        """
    )
    op.execute(
        "UPDATE activation_run_index SET error_code = coalesce(error_code, 'legacy_status'), "
        "error_message = coalesce(error_message, 'legacy status: none') WHERE status IS NULL"
    )
    for column, (fill, default) in NOT_NULL.items():
        op.execute(f"UPDATE activation_run_index SET {column} = {fill} WHERE {column} IS NULL")
        op.execute(f"ALTER TABLE activation_run_index ALTER COLUMN {column} SET DEFAULT {default}")
        op.execute(f"ALTER TABLE activation_run_index ALTER COLUMN {column} SET NOT NULL")
    op.execute(
        f"""
        DO $$
        DECLARE
          found regclass := to_regclass('{CREATED_AT_INDEX}');
        BEGIN
          IF found IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_index x
            WHERE x.indexrelid = found
              AND x.indrelid = 'activation_run_index'::regclass
              AND pg_get_indexdef(found) LIKE '%USING btree {CREATED_AT_INDEX_DEF}'
          ) THEN
            ALTER INDEX {CREATED_AT_INDEX} RENAME TO {CREATED_AT_INDEX}_legacy;
          END IF;
        END $$
        """
    )
    op.execute(
        f"CREATE INDEX IF NOT EXISTS {CREATED_AT_INDEX} "
        f"ON activation_run_index {CREATED_AT_INDEX_DEF}"
    )
