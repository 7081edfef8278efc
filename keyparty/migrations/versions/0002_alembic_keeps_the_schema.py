"""Alembic keeps the schema from here on: keyparty_schema version 2

Releases before the migrations refuse any keyparty_schema version but 1,
with a message telling the host to use the keyparty that made the database:
a database upgraded past the baseline says 2, so an older keyparty started
on it by mistake refuses it instead of failing on a missing column.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE keyparty_schema SET version = 2")


def downgrade() -> None:
    op.execute("UPDATE keyparty_schema SET version = 1")
