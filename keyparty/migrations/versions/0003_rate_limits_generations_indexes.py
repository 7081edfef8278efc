"""Rate limits in the database, home generations, indexes for bounded requests

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 18:43:51.011800
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.Double(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_certification_key_id"), ["key_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_certification_signer_id"), ["signer_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_certification_user_id_id"), ["user_id_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_certification_verification_id"), ["verification_id"], unique=False
        )

    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("keys_generation", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("published_generation", sa.Integer(), server_default="0", nullable=False)
        )

    with op.batch_alter_table("key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_key_attendee_id"), ["attendee_id"], unique=False)

    with op.batch_alter_table("verification", schema=None) as batch_op:
        batch_op.create_index(
            "ix_verification_signer_recorded", ["signer_id", "recorded_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_verification_user_id_id"), ["user_id_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("verification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verification_user_id_id"))
        batch_op.drop_index("ix_verification_signer_recorded")

    with op.batch_alter_table("key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_key_attendee_id"))

    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_column("published_generation")
        batch_op.drop_column("keys_generation")

    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certification_verification_id"))
        batch_op.drop_index(batch_op.f("ix_certification_user_id_id"))
        batch_op.drop_index(batch_op.f("ix_certification_signer_id"))
        batch_op.drop_index(batch_op.f("ix_certification_key_id"))

    op.drop_table("rate_limit")
