"""Staging safety, second pass: tombstones for deleted runs and per-client daily byte usage.

- ``activation_run_tombstones``: a run its owner deleted. The id stays its deleter's (a claim
  needs the deleter's token; a stranger gets 409 ``run_owned``), and a run still generating
  when it was deleted is dropped at its write instead of coming back without an owner
  (backend/db/tombstones.py). A row is ~100 bytes; kept as long as the runs' retention.
- ``client_byte_usage``: stored bytes per client key and UTC day, against the daily quota
  (backend/limits/quota.py).

Revision ID: 0019_tombstones_and_quotas
Revises: 0018_steering_pairs
"""

from alembic import op

revision = "0019_tombstones_and_quotas"
down_revision = "0018_steering_pairs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE activation_run_tombstones (
          request_id TEXT PRIMARY KEY,
          owner_hash BYTEA NOT NULL CHECK (octet_length(owner_hash) = 32),
          deleted_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE client_byte_usage (
          client_key TEXT NOT NULL,
          day DATE NOT NULL,
          bytes BIGINT NOT NULL DEFAULT 0 CHECK (bytes >= 0),
          PRIMARY KEY (client_key, day)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS client_byte_usage")
    op.execute("DROP TABLE IF EXISTS activation_run_tombstones")
