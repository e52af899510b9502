"""Steering pairs: a steered run, the default (unsteered) run generated beside it, and the
steering spec.

- ``activation_run_pairs``: one row per run that took part in steering. ``role`` is the run's
  own (``steered`` or ``default``); ``pair_request_id`` the other run of its pair (NULL for a
  steered run without a default, or once the other run was deleted); ``steering`` the spec and
  its read-back figures, on the steered run only. Both rows of a pair are written in the
  transaction that writes both runs (backend/db/pairs.py), so a pair is never half-stored.
  A run's row goes with the run (ON DELETE CASCADE).

Revision ID: 0018_steering_pairs
Revises: 0017_maintain_run_counts
"""

from alembic import op

revision = "0018_steering_pairs"
down_revision = "0017_maintain_run_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE activation_run_pairs (
          request_id TEXT PRIMARY KEY
            REFERENCES activation_run_index (request_id) ON DELETE CASCADE,
          role TEXT NOT NULL CHECK (role IN ('steered', 'default')),
          pair_request_id TEXT
            REFERENCES activation_run_index (request_id) ON DELETE SET NULL,
          steering JSONB,
          CHECK ((role = 'steered') = (steering IS NOT NULL)),
          CHECK (pair_request_id IS DISTINCT FROM request_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX activation_run_pairs_pair_idx ON activation_run_pairs (pair_request_id)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS activation_run_pairs")
