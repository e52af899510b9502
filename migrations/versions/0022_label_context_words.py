"""Label search matches the words of a feature's examples too: ``feature_labels.context_words``
(filled from the SAE service's ``GET /saes/{sae_id}/{layer}/labels`` ``words``; empty for
imported labels), and the ``search`` vector becomes label + context words. A generated column's
expression cannot be altered on Postgres 15, so ``search`` (and its index) is dropped and added
again. Labels loaded from the SAE service are marked stale so the next refresh fills the words.

Revision ID: 0022_label_context_words
Revises: 0021_run_trace_id
"""

from alembic import op

revision = "0022_label_context_words"
down_revision = "0021_run_trace_id"
branch_labels = None
depends_on = None


def _search(expression: str) -> None:
    op.execute("ALTER TABLE feature_labels DROP COLUMN search")  # drops its index
    op.execute(
        "ALTER TABLE feature_labels ADD COLUMN search TSVECTOR "
        f"GENERATED ALWAYS AS (to_tsvector('simple', {expression})) STORED"
    )
    op.execute("CREATE INDEX feature_labels_search_idx ON feature_labels USING gin (search)")


def upgrade() -> None:
    op.execute("ALTER TABLE feature_labels ADD COLUMN context_words text NOT NULL DEFAULT ''")
    _search("label || ' ' || context_words")
    op.execute(
        "UPDATE feature_saes SET labels_loaded_at = NULL WHERE labels_source = 'sae_service'"
    )


def downgrade() -> None:
    _search("label")
    op.execute("ALTER TABLE feature_labels DROP COLUMN context_words")
