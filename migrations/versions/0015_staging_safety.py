"""Staging safety: run ownership, the stored special-token switch, rate-limit counters and
work leases.

- ``activation_run_owners``: the claim a run takes on its ``request_id`` before any GPU work,
  with the SHA-256 of its owner token (the token itself is never stored). Index rows without an
  owner row (adopted legacy rows) are read-only.
- ``activation_run_index.parse_special_tokens``: how the run's raw prompt was tokenized.
- ``rate_limit_windows``: per-client request counters in fixed windows, shared by every backend
  process.
- ``work_leases``: concurrency slots (per client, and the deployment's GPU ceiling) as leases
  that expire unless their process renews them, so a dead process frees its slots.

Revision ID: 0015_staging_safety
Revises: 0014_add_activation_run_previews
"""

from alembic import op

revision = "0015_staging_safety"
down_revision = "0014_add_activation_run_previews"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE activation_run_owners (
          request_id TEXT PRIMARY KEY,
          owner_hash BYTEA NOT NULL CHECK (octet_length(owner_hash) = 32),
          created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "ALTER TABLE activation_run_index "
        "ADD COLUMN parse_special_tokens BOOLEAN NOT NULL DEFAULT false"
    )
    op.execute(
        """
        CREATE UNLOGGED TABLE rate_limit_windows (
          client_key TEXT NOT NULL,
          route_class TEXT NOT NULL,
          window_start TIMESTAMPTZ NOT NULL,
          hits INTEGER NOT NULL,
          PRIMARY KEY (client_key, route_class, window_start)
        )
        """
    )
    op.execute(
        """
        CREATE UNLOGGED TABLE work_leases (
          lease_id UUID PRIMARY KEY,
          client_key TEXT NOT NULL,
          route_class TEXT NOT NULL,
          expires_at TIMESTAMPTZ NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX work_leases_client_idx ON work_leases (client_key, route_class)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS work_leases")
    op.execute("DROP TABLE IF EXISTS rate_limit_windows")
    op.execute("ALTER TABLE activation_run_index DROP COLUMN IF EXISTS parse_special_tokens")
    op.execute("DROP TABLE IF EXISTS activation_run_owners")
