"""A run stopped by its client has a status of its own: ``stopped``.

A streamed run whose client stops it keeps its partial answer and the features computed so far
(its preview and feature aggregate are written as a successful run's), listed as ``stopped``
rather than ``failed``. This widens the status check of 0013 to ``ok | failed | stopped``.

Downgrade: stopped runs become failed runs (``client_closed``, as they were recorded before
this revision), without their previews (a failed run keeps none), then the check narrows back.

Revision ID: 0020_stopped_status
Revises: 0019_tombstones_and_quotas
"""

from alembic import op

from backend.db.legacy_index import STATUS_CHECK

revision = "0020_stopped_status"
down_revision = "0019_tombstones_and_quotas"
branch_labels = None
depends_on = None


def _check(statuses: str) -> None:
    op.execute(f"ALTER TABLE activation_run_index DROP CONSTRAINT IF EXISTS {STATUS_CHECK}")
    op.execute(
        f"ALTER TABLE activation_run_index ADD CONSTRAINT {STATUS_CHECK} "
        f"CHECK (status IN ({statuses}))"
    )


def upgrade() -> None:
    _check("'ok', 'failed', 'stopped'")


def downgrade() -> None:
    op.execute(
        "DELETE FROM activation_run_previews p USING activation_run_index i "
        "WHERE p.request_id = i.request_id AND i.status = 'stopped'"
    )
    op.execute(
        "UPDATE activation_run_index SET status = 'failed', has_preview = false, "
        "sae_id = NULL, sae_layer = NULL, sae_top_k = NULL, "
        "error_code = coalesce(error_code, 'client_closed') WHERE status = 'stopped'"
    )
    _check("'ok', 'failed'")
