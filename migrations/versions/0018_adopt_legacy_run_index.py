"""Legacy activation_run_index shapes, for a database that already ran 0013-0017.

0013 and 0017 now normalise an adopted legacy table before the steps that its values would
break (backend/db/legacy_index.py). A database that ran the earlier 0013 on a legacy table may
still have nullable columns that 0013 declares NOT NULL, or a legacy index under the name of
0013's keyset index; this revision gives it the same schema as a fresh adoption. It is a no-op
on a table this project created.

Revision ID: 0018_adopt_legacy_run_index
Revises: 0017_maintain_run_counts
"""

from backend.db.legacy_index import normalise

revision = "0018_adopt_legacy_run_index"
down_revision = "0017_maintain_run_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    normalise()


def downgrade() -> None:
    # Nothing to undo that a downgrade should: the normalised values and NOT NULLs are what
    # 0013 declares; a renamed legacy index keeps its new name.
    pass
