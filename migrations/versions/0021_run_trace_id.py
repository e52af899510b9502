"""The request id beside a run: ``activation_run_index.trace_id``, the ``X-Request-ID`` of the
request that made it (the id its log lines carry in the backend, the engine and the SAE
service). Nullable: runs stored before this revision, and rows written outside a request
(seeders), have none. Adding a nullable column rewrites nothing; the length check is NOT VALID
(old rows are all NULL, so there is nothing to scan).

Revision ID: 0021_run_trace_id
Revises: 0020_stopped_status
"""

from alembic import op

revision = "0021_run_trace_id"
down_revision = "0020_stopped_status"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE activation_run_index ADD COLUMN trace_id text")
    op.execute(
        "ALTER TABLE activation_run_index ADD CONSTRAINT activation_run_index_trace_id_len "
        "CHECK (length(trace_id) <= 64) NOT VALID"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE activation_run_index DROP COLUMN trace_id")
