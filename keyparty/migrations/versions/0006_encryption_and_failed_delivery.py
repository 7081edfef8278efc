"""Key.can_encrypt, Certification.delivery_failed_at and delivery_error

A key that cannot receive encrypted mail is warned about at registration and
offered no `email` context; existing keys are taken to encrypt (as before).
A mail that can never go out is marked failed once, with why, and not retried.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery_failed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("delivery_error", sa.Text(), nullable=True))
    with op.batch_alter_table("key", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("can_encrypt", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("key", schema=None) as batch_op:
        batch_op.drop_column("can_encrypt")
    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.drop_column("delivery_error")
        batch_op.drop_column("delivery_failed_at")
