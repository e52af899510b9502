"""activation_run_previews: the preview payload of a run (tokens + SAE feature timeline).

Kept apart from the index so listings stay small. ``timeline_packed``/``timeline_tokens`` are
a columnar copy of ``feature_timeline`` that the rows/top-features endpoints read instead of
parsing the JSON (see backend/activations/packed.py); ``feature_timeline`` stays the source of
truth.

Revision ID: 0014_add_activation_run_previews
Revises: 0013_add_activation_run_index
"""

from alembic import op

revision = "0014_add_activation_run_previews"
down_revision = "0013_add_activation_run_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE activation_run_previews (
          request_id TEXT PRIMARY KEY
            REFERENCES activation_run_index (request_id) ON DELETE CASCADE,
          created_at TIMESTAMPTZ NOT NULL,
          updated_at TIMESTAMPTZ NOT NULL,
          model_id TEXT NOT NULL,
          prompt TEXT NOT NULL,
          output_text TEXT NOT NULL,
          output_token_ids BIGINT[] NOT NULL,
          prompt_token_ids BIGINT[] NOT NULL DEFAULT '{}',
          finish_reason TEXT,
          sae_id TEXT NULL,
          sae_layer INT NULL,
          sae_top_k INT NULL,
          feature_timeline JSONB NOT NULL,
          timeline_packed BYTEA,
          timeline_tokens TEXT[]
        )
        """
    )
    # Stored out of line but uncompressed: pglz on a large timeline costs more on every write
    # and read (several ms at 64 positions) than the disk it saves on prunable preview data.
    op.execute(
        "ALTER TABLE activation_run_previews "
        "ALTER COLUMN feature_timeline SET STORAGE EXTERNAL, "
        "ALTER COLUMN timeline_packed SET STORAGE EXTERNAL"
    )
    op.execute(
        "CREATE INDEX activation_run_previews_created_at_idx "
        "ON activation_run_previews (created_at DESC)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS activation_run_previews")
