"""activation_run_index: one small row per run, for listing and metadata.

Staging already has this table (from the Rust backend's 0013 SQL), so this revision adopts an
existing table: it creates it only if missing, then adds any missing columns and indexes.

Revision ID: 0013_add_activation_run_index
Revises:
"""

from alembic import context, op

revision = "0013_add_activation_run_index"
down_revision = None
branch_labels = None
depends_on = None

COLUMNS = [
    "created_at TIMESTAMPTZ NOT NULL DEFAULT now()",
    "updated_at TIMESTAMPTZ NOT NULL DEFAULT now()",
    "model_id TEXT NOT NULL DEFAULT ''",
    "prompt_preview TEXT NOT NULL DEFAULT ''",
    "status TEXT NOT NULL DEFAULT 'ok'",
    "error_code TEXT",
    "error_message TEXT",
    "error_upstream TEXT",
    "prompt_tokens INTEGER",
    "output_tokens INTEGER",
    "finish_reason TEXT",
    "sae_id TEXT",
    "sae_layer INTEGER",
    "sae_top_k INTEGER",
    "has_preview BOOLEAN NOT NULL DEFAULT false",
    "pruned_at TIMESTAMPTZ",
    "engine_ms DOUBLE PRECISION",
    "sae_ms DOUBLE PRECISION",
    "total_ms DOUBLE PRECISION",
]


def upgrade() -> None:
    op.execute("CREATE TABLE IF NOT EXISTS activation_run_index (request_id TEXT PRIMARY KEY)")
    for column in COLUMNS:
        op.execute(f"ALTER TABLE activation_run_index ADD COLUMN IF NOT EXISTS {column}")
    op.execute(
        """
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_constraint
                         WHERE conname = 'activation_run_index_status_check') THEN
            ALTER TABLE activation_run_index ADD CONSTRAINT activation_run_index_status_check
              CHECK (status IN ('ok', 'failed'));
          END IF;
        END $$
        """
    )
    # Keyset pagination of the listing: newest first, request_id breaks ties.
    op.execute(
        "CREATE INDEX IF NOT EXISTS activation_run_index_created_at_idx "
        "ON activation_run_index (created_at DESC, request_id DESC)"
    )


# Dropping the index is allowed only when asked for by name: `playground migrate --downgrade base
# --confirm-downgrade --drop-run-index`, or alembic's `-x drop_run_index=yes`.
DROP_FLAG = "drop_run_index"


def _drop_allowed() -> bool:
    if context.config.attributes.get(DROP_FLAG):
        return True
    return context.get_x_argument(as_dictionary=True).get(DROP_FLAG) == "yes"


def downgrade() -> None:
    # This revision may have adopted a table it did not create (staging's, with its history):
    # it never drops it unasked.
    if not _drop_allowed():
        raise RuntimeError(
            "0013 downgrade refused: activation_run_index may be an adopted table with data "
            "this revision did not create; pass --drop-run-index (alembic: -x drop_run_index=yes) "
            "to drop it"
        )
    op.execute("DROP TABLE IF EXISTS activation_run_index")
